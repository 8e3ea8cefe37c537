"""The geometry that lines a camera frame's descriptor up with a north-up satellite patch (no torch).

Seed 001's SAFA matches polar-transformed aerial images with ground panoramas, whose columns
are azimuths; on RobotCar's forward camera it learns the correspondence from data. Trained from
scratch on a few thousand pairs, that measured at chance here (recall@1 within r of 2-3 %
against 2 % by chance, geo-local and geo-global alike). What the vehicle knows and the paper's
RobotCar setting does not use is the heading: the particle filter's yaw (a few degrees even
while the position is 150 m off, from IMU and the motion model). So both encoders describe
*absolute azimuth sectors*:

* Satellite: the north-up patch is resampled to polar coordinates (`polar_maps`): row i is the
  range (i + 0.5) / R * half-side from the centre, column j the ENU bearing (j + 0.5) / P * 2 pi
  (counter-clockwise from east, REP-103). After the encoder's stride each output column is one
  sector of 2 pi / A. A rotation of the world by k * 90 deg is a roll of the columns by k * P / 4.
* Ground: each column u of the camera image looks along the bearing
  yaw - atan2(u - c_x, f_x) (a pinhole, level camera); the encoder's feature column w (centre
  pixel (w + 0.5) * stride) is split between the two sectors whose centres bracket its bearing
  (`sector_weights`, linear in the bearing). Sectors no column falls in are marked invisible.

The distance of seed 001 stays d = || f - g ||^2 of unit vectors: the satellite descriptor
is the A per-sector unit vectors over sqrt(A), the ground one its visible sectors' unit vectors
over sqrt(V), so f.g = mean cosine of the visible sectors * sqrt(V / A).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from cvgl_ros.errors import InputError

VISIBLE_WEIGHT = 0.25  # a sector with less than a quarter column of weight is not seen


def polar_maps(patch_px: int, polar_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (rows R, cols P) from a north-up patch of `patch_px` to its polar image."""
    rows, cols = int(polar_hw[0]), int(polar_hw[1])
    half = patch_px / 2.0
    rho = (np.arange(rows) + 0.5) / rows * half
    theta = (np.arange(cols) + 0.5) / cols * 2.0 * math.pi
    map_x = half + rho[:, None] * np.cos(theta)[None] - 0.5
    map_y = half - rho[:, None] * np.sin(theta)[None] - 0.5
    return map_x.astype(np.float32), map_y.astype(np.float32)


def polar_patch(patch_rgb: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The polar image (R, P, 3) of a square north-up patch (S, S, 3) uint8, S the maps' patch_px."""
    return cv2.remap(np.ascontiguousarray(patch_rgb), maps[0], maps[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def sector_weights(yaw_enu_rad, k: np.ndarray, image_width: int, stride: int, sectors: int) -> np.ndarray:
    """(B, W', A) float32: the weight of the encoder's feature column w in sector a, for frames of
    yaw `yaw_enu_rad` (B,) and intrinsics `k` (B, 3, 3) or (3, 3) of the image as encoded."""
    yaw = np.atleast_1d(np.asarray(yaw_enu_rad, dtype=np.float64))
    k = np.asarray(k, dtype=np.float64)
    k = np.broadcast_to(k, (len(yaw), 3, 3)) if k.ndim == 2 else k
    if not (np.isfinite(yaw).all() and np.isfinite(k).all()) or k.shape != (len(yaw), 3, 3) or (k[:, 0, 0] <= 0).any():
        raise InputError(f"sector weights need finite yaws and intrinsics with f_x > 0, got yaw {yaw[:3]} and K "
                         f"of shape {k.shape}")
    columns = image_width // stride
    u = (np.arange(columns) + 0.5) * stride
    bearing = yaw[:, None] - np.arctan2(u[None] - k[:, 0, 2][:, None], k[:, 0, 0][:, None])
    position = np.mod(bearing / (2.0 * math.pi / sectors) - 0.5, sectors)
    low = np.floor(position).astype(np.int64)
    frac = position - low
    weights = np.zeros((len(yaw), columns, sectors), np.float32)
    b, w = np.arange(len(yaw))[:, None], np.arange(columns)[None]
    np.add.at(weights, (b, w, low % sectors), (1.0 - frac).astype(np.float32))
    np.add.at(weights, (b, w, (low + 1) % sectors), frac.astype(np.float32))
    return weights
