"""The simulator: synthetic georeferenced worlds, their orthophotos, a ground camera, drives,
GNSS error models and training pairs.

- `world.World`: generate / save / load a world (roads, buildings, trees, parking, fields),
  `route()` drives along its road graph, `sky_openness()` for the GNSS model.
- `ortho`: the satellite-look orthophoto and its MBTiles pyramid.
- `ground_camera`: `CameraModel`, `default_camera`, `GroundRenderer` (ray casting with Embree).
- `pairs`: cross-view training pairs (KITTI protocol); `preview`: ground view beside satellite patch.
- `trajectory`, `gnss`, `motion_sensors`, `drive`: speed profiles, GNSS error models, the IMU and
  wheel-odometry error models, recorded drives (rosbag2).

Modules are imported on use; this package imports nothing heavy.
"""
