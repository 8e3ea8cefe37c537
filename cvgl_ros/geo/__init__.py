"""Frames and conventions used everywhere in cvgl_ros (the one source of truth).

- `Datum`: WGS84 <-> local ENU (`map` frame, REP-103/105).
- `mercator`: Web Mercator tiles, global pixels, ground resolution.
- `yaw`: ENU yaw vs compass heading, quaternions, angle wrapping.
- `vehicle_errors`: lateral/longitudinal split of position errors.
- `pinhole`: pixel centres at integer coordinates; `scale_intrinsics`, K of a resized image.
- `transforms`: rigid transforms (SE(3)) as tf2 holds them: compose, invert, interpolate.
"""
from cvgl_ros.geo.datum import Datum, check_lat_lon
from cvgl_ros.geo.mercator import (
    ground_resolution_m_per_px,
    global_px_to_lonlat,
    lonlat_to_global_px,
    mercator_px_per_m,
    Tile,
    tile_at,
    tile_ul,
    tiles_covering,
    xyz_to_tms_row,
    zoom_for_resolution,
)
from cvgl_ros.geo.transforms import RigidTransform
from cvgl_ros.geo.vehicle_errors import lateral_longitudinal
from cvgl_ros.geo.yaw import (
    angle_diff,
    heading_deg_to_yaw_enu,
    quaternion_to_yaw,
    wrap_angle,
    yaw_enu_to_heading_deg,
    yaw_to_quaternion,
)

__all__ = [
    "Datum", "check_lat_lon", "ground_resolution_m_per_px", "global_px_to_lonlat",
    "lonlat_to_global_px", "mercator_px_per_m", "Tile", "tile_at", "tile_ul", "tiles_covering", "xyz_to_tms_row",
    "zoom_for_resolution", "RigidTransform", "lateral_longitudinal", "angle_diff",
    "heading_deg_to_yaw_enu", "quaternion_to_yaw", "wrap_angle", "yaw_enu_to_heading_deg",
    "yaw_to_quaternion",
]
