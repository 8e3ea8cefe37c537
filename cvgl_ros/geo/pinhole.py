"""The pinhole camera's pixel convention, and its intrinsics when an image is resized (ROS-free).

Pixel centres are at integer coordinates (ROS `CameraInfo`, OpenCV): pixel (0, 0) covers
[-0.5, 0.5] x [-0.5, 0.5], and an image W px wide spans u in [-0.5, W - 0.5]. Resizing it to
W' px (OpenCV's `cv2.resize`, or rendering the same view at another size) scales the image
edges, not the pixel centres: with sx = W' / W,

    u' + 0.5 = (u + 0.5) * sx,   so   fx' = fx * sx,   s' = s * sx,   cx' = (cx + 0.5) * sx - 0.5,

and likewise fy' = fy * sy, cy' = (cy + 0.5) * sy - 0.5. Scaling the principal point as
cx * sx instead puts it 0.5 * (1 - sx) px off: 0.25 px on a 2x down-sampling.
"""
from __future__ import annotations

import math

import numpy as np

from cvgl_ros.errors import InputError


def scale_intrinsics(k: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """The 3x3 K of an image resized by (sx, sy) (new size / old size per axis), as float64."""
    if not (math.isfinite(sx) and math.isfinite(sy) and sx > 0 and sy > 0):
        raise InputError(f"image scale factors must be finite and positive, got {sx}, {sy}")
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    out = k.copy()
    out[0, 0], out[0, 1], out[0, 2] = k[0, 0] * sx, k[0, 1] * sx, (k[0, 2] + 0.5) * sx - 0.5
    out[1, 1], out[1, 2] = k[1, 1] * sy, (k[1, 2] + 0.5) * sy - 0.5
    return out
