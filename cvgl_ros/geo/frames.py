"""Sensor mounting geometry (ROS-free): the camera's tilt, as REP-103 defines the angles.

The pose network was trained on a level camera (optical axis horizontal, no roll) at the
card's height. A camera mounted with roll phi and pitch theta (base_link REP-103 angles:
pitch > 0 looks down, roll > 0 turns the image clockwise as the camera sees it) sees the
same rays in another orientation; since both share the optical centre, one image maps onto
the other by the homography of a pure rotation:

    u_level ~ H u_actual,   H = K R^T K^-1,

with R the rotation from the level camera's optical frame (x right, y down, z forward) to
the actual one's. Pitching down by theta turns the optical axis toward +y (down):
    R_pitch = [[1, 0, 0], [0, cos theta, -sin theta], [0, sin theta, cos theta]]
(rows: the actual camera's axes in the level frame), and roll phi about the optical axis:
    R_roll = [[cos phi, sin phi, 0], [-sin phi, cos phi, 0], [0, 0, 1]],   R = R_roll R_pitch.
Warping the image by H (same K) gives what a level camera at the same place would see;
the camera's height goes to the network as its `camera_height_m` input.
"""
from __future__ import annotations

import math

import numpy as np

from cvgl_ros.errors import InputError


def camera_tilt_rotation(roll_rad: float, pitch_rad: float) -> np.ndarray:
    """R: level optical frame -> the tilted camera's optical frame (module docstring)."""
    if not (math.isfinite(roll_rad) and math.isfinite(pitch_rad)):
        raise InputError(f"camera roll/pitch must be finite, got {roll_rad}, {pitch_rad}")
    if abs(pitch_rad) >= math.radians(60) or abs(roll_rad) >= math.radians(60):
        raise InputError("camera roll/pitch beyond 60 deg: not a road-facing camera")
    ct, st = math.cos(pitch_rad), math.sin(pitch_rad)
    cp, sp = math.cos(roll_rad), math.sin(roll_rad)
    r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, ct, -st], [0.0, st, ct]])
    r_roll = np.array([[cp, sp, 0.0], [-sp, cp, 0.0], [0.0, 0.0, 1.0]])
    return r_roll @ r_pitch


def level_camera_homography(k: np.ndarray, roll_rad: float, pitch_rad: float) -> np.ndarray:
    """H = K R^T K^-1: pixels of the tilted camera -> pixels of a level camera (same K)."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    r = camera_tilt_rotation(roll_rad, pitch_rad)
    return k @ r.T @ np.linalg.inv(k)
