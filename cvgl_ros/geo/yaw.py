"""Yaw conventions, in one place.

* `yaw_enu_rad`: REP-103 yaw in the ENU `map` frame, counter-clockwise from east, radians,
  wrapped to [-pi, pi). This is what poses, the filter and the network use.
* `heading_deg`: compass heading, clockwise from north, degrees in [0, 360): what GNSS/INS
  receivers and people report (OXTS and RobotCar INS give yaw/heading this way).
"""
from __future__ import annotations

import math

import numpy as np


def wrap_angle(angle_rad):
    """Wrap radians to [-pi, pi)."""
    return (np.asarray(angle_rad, dtype=float) + math.pi) % (2.0 * math.pi) - math.pi


def angle_diff(a_rad, b_rad):
    """Signed smallest difference a - b in [-pi, pi)."""
    return wrap_angle(np.asarray(a_rad, dtype=float) - np.asarray(b_rad, dtype=float))


def heading_deg_to_yaw_enu(heading_deg):
    """Compass heading (deg, clockwise from north) -> ENU yaw (rad, counter-clockwise from east)."""
    return wrap_angle(math.pi / 2.0 - np.radians(np.asarray(heading_deg, dtype=float)))


def yaw_enu_to_heading_deg(yaw_enu_rad):
    """ENU yaw (rad) -> compass heading (deg in [0, 360))."""
    return np.degrees(math.pi / 2.0 - np.asarray(yaw_enu_rad, dtype=float)) % 360.0


def yaw_to_quaternion(yaw_rad):
    """Planar yaw -> quaternion (x, y, z, w) about +z, as geometry_msgs/Quaternion holds it."""
    half = 0.5 * np.asarray(yaw_rad, dtype=float)
    zeros = np.zeros_like(half)
    return zeros, zeros, np.sin(half), np.cos(half)


def quaternion_to_yaw(x, y, z, w):
    """Yaw (rotation about +z) of a quaternion, in [-pi, pi)."""
    x, y, z, w = (np.asarray(v, dtype=float) for v in (x, y, z, w))
    return wrap_angle(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))
