"""State estimation on the vehicle: the particle filter of "Cross-View Matching for Vehicle
Localization by Learning Geographically Local Representations" (Sec. III-D), which fuses
cross-view likelihood volumes with GNSS (and IMU and wheel odometry when present), and the constant-velocity Kalman filter baseline.

- `particle_filter`: `ParticleFilter`, `ParticleFilterConfig`, `PoseEstimate` (the Bayes filter).
- `motion`: the motion models (constant velocity; measured yaw rate and wheel speed).
- `gnss_gate`: `GnssDecision` and the gate with its integrity monitor (the sequence test).
- `history`: out-of-order measurements applied at their own stamps.
- `resampling`: systematic resampling and the effective sample size.
- `kalman_baseline`: a constant-velocity Kalman filter on GNSS (filterpy), for comparison.
"""
