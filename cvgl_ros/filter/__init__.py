"""State estimation on the vehicle: the particle filter of "Cross-View Matching for Vehicle
Localization by Learning Geographically Local Representations" (Sec. III-D), which fuses
cross-view likelihood volumes with GNSS, and the constant-velocity Kalman filter baseline.

- `particle_filter`: `ParticleFilter`, `ParticleFilterConfig`, `GnssDecision`, `PoseEstimate`.
- `resampling`: systematic resampling and the effective sample size.
- `kalman_baseline`: a constant-velocity Kalman filter on GNSS (filterpy), for comparison.
- `simulated_run`: drive a filter through a simulated drive in-process (tests, benchmarks).
"""
