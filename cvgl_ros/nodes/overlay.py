"""The cross-view node's debug overlay: the camera image projected to a bird's-eye view on the
flat ground (camera `camera_height_m` above it, looking forward, level) at the estimated
pose, blended over the satellite patch and outlined in yellow, with the estimate drawn as a
red arrow. ROS-free.

If the estimate is right, the road edges and markings of the projected camera image line up
with the satellite patch beneath.
"""
from __future__ import annotations

import math

import numpy as np

from cvgl_ros.geo.grid import en_to_grid, grid_to_en


def bev_overlay(patch_rgb: np.ndarray, patch_mpp: float, patch_center_e_m: float, patch_center_n_m: float,
                image_rgb: np.ndarray, k: np.ndarray, camera_height_m: float, east_m: float, north_m: float,
                yaw_enu_rad: float, max_range_m: float = 40.0, alpha: float = 0.55) -> np.ndarray:
    """HxWx3 uint8: the patch with the ground view's BEV at (east, north, yaw) blended in."""
    import cv2

    size_r, size_c = patch_rgb.shape[:2]
    cols, rows = np.meshgrid(np.arange(size_c, dtype=np.float64), np.arange(size_r, dtype=np.float64))
    east, north = grid_to_en(cols, rows, patch_center_e_m, patch_center_n_m, size_c, size_r, patch_mpp)
    dx, dy = east - east_m, north - north_m
    cos_y, sin_y = math.cos(yaw_enu_rad), math.sin(yaw_enu_rad)
    forward = cos_y * dx + sin_y * dy   # base_link x
    left = -sin_y * dx + cos_y * dy     # base_link y
    ahead = (forward > 1.0) & (forward < max_range_m)
    safe = np.where(ahead, forward, 1.0)
    # optical frame: z forward, x right (= -left), y down (the ground is camera_height_m below)
    u = k[0, 0] * (-left / safe) + k[0, 2]
    v = k[1, 1] * (camera_height_m / safe) + k[1, 2]
    h, w = image_rgb.shape[:2]
    inside = ahead & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    map_x = np.where(inside, u, -1).astype(np.float32)
    map_y = np.where(inside, v, -1).astype(np.float32)
    bev = cv2.remap(np.ascontiguousarray(image_rgb), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    out = patch_rgb.copy()
    blend = (alpha * bev[inside].astype(np.float32) + (1 - alpha) * patch_rgb[inside].astype(np.float32))
    out[inside] = np.clip(blend, 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 220, 0), 1)  # the camera's ground footprint, outlined
    c, r = en_to_grid(east_m, north_m, patch_center_e_m, patch_center_n_m, size_c, size_r, patch_mpp)
    tip_c = c + (3.0 / patch_mpp) * cos_y
    tip_r = r - (3.0 / patch_mpp) * sin_y
    if np.isfinite([c, r, tip_c, tip_r]).all():
        cv2.arrowedLine(out, (int(round(float(c))), int(round(float(r)))), (int(round(float(tip_c))), int(round(float(tip_r)))),
                        (255, 40, 40), 2, tipLength=0.35)
    return out
