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

A camera's frame on /tf_static is either a body frame (x forward, y left, z up) or REP-103's
optical frame (x right, y down, z forward); `camera_body_rotation` tells them apart by the
rotation (`is_optical_frame`) and `roll_pitch_yaw` gives the angles above.
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


# -- a camera frame's convention and its angles in base_link (REP-103) -----------------------

# T_camera_optical's rotation: REP-103's `*_optical_frame` (x right, y down, z forward) in the
# camera's body frame (x forward, y left, z up); its columns are the optical axes.
OPTICAL_IN_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def is_optical_frame(r_base_camera: np.ndarray) -> bool:
    """Whether a camera frame (its rotation in base_link) is an optical frame, told by its axes,
    not its name: a road-facing camera's vertical axis is its z (up) in a body frame and its
    y (down) in an optical frame, so the axis nearer to base_link's z says which. InputError
    when neither is near vertical (a camera looking straight up or down, or on its side)."""
    r = np.asarray(r_base_camera, dtype=np.float64).reshape(3, 3)
    body_up, optical_down = r[2, 2], -r[2, 1]  # base_link z of the camera's z axis and of its -y axis
    if max(body_up, optical_down) < math.cos(math.radians(60)):
        raise InputError("the camera frame has no axis within 60 deg of vertical (body z up or optical y down): "
                         "not a road-facing camera")
    return bool(optical_down > body_up)


def roll_pitch_yaw(r_base_body: np.ndarray) -> tuple[float, float, float]:
    """(roll, pitch, yaw) rad of a body-convention rotation in base_link, as tf2's getRPY
    (R = Rz(yaw) Ry(pitch) Rx(roll); REP-103: pitch > 0 looks down). These are the angles
    `camera_tilt_rotation` takes."""
    r = np.asarray(r_base_body, dtype=np.float64).reshape(3, 3)
    pitch = math.atan2(-r[2, 0], math.hypot(r[2, 1], r[2, 2]))
    return math.atan2(r[2, 1], r[2, 2]), pitch, math.atan2(r[1, 0], r[0, 0])


def camera_body_rotation(r_base_camera: np.ndarray) -> tuple[np.ndarray, bool]:
    """(the camera's rotation in base_link in the body convention, whether its frame was an
    optical one): an optical frame's R_base_optical = R_base_body OPTICAL_IN_BODY."""
    r = np.asarray(r_base_camera, dtype=np.float64).reshape(3, 3)
    optical = is_optical_frame(r)
    return (r @ OPTICAL_IN_BODY.T if optical else r), optical
