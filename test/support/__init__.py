"""Helpers only the tests use (never shipped: `find_packages` excludes `test`).

- `simulated_run`: a ParticleFilter driven through a simulated drive in-process, with faults.
- `federated_fixtures`: a tiny pair set and pose-network config for federations in seconds.
- `flat_pairs`: flat-ground pair sets the pose network can learn from.
- `waiting`: `wait_until`, polling a condition under a lock until a timeout.

Test modules import them as `support.NAME` (pytest puts `test/` on `sys.path`).
"""
