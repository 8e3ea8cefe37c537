"""Bring a camera image and a satellite patch to the sizes a model card promises (numpy/OpenCV).

Shared by the runtime and the training data pipeline so both see identical inputs.
A resized image's intrinsics follow the pixel-centre convention of `cvgl_ros.geo.pinhole`.
"""
from __future__ import annotations

import cv2
import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.pinhole import scale_intrinsics


def resize_ground(image: np.ndarray, k: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize an HxWx3 image to `image_hw` (rows, cols); returns (image, scaled K)."""
    h, w = image.shape[:2]
    th, tw = int(image_hw[0]), int(image_hw[1])
    if (h, w) == (th, tw):
        return image, np.asarray(k, dtype=np.float64)
    interp = cv2.INTER_AREA if (th < h and tw < w) else cv2.INTER_LINEAR
    resized = cv2.resize(image, (tw, th), interpolation=interp)
    return resized, scale_intrinsics(k, tw / w, th / h)


def resample_patch(patch: np.ndarray, mpp_in: float, size_out: int, mpp_out: float,
                   interpolation: int | None = None) -> np.ndarray:
    """Resample a square north-up patch centred on its centre to `size_out` px of `mpp_out`.

    The output covers size_out * mpp_out metres around the same centre (grid convention);
    parts beyond the input are filled by replicating its border.
    """
    size_in = patch.shape[0]
    if size_in == size_out and abs(mpp_in - mpp_out) < 1e-9:
        return patch
    ratio = mpp_out / mpp_in
    if abs(size_in * mpp_in - size_out * mpp_out) < 1e-6 * size_in * mpp_in:
        interp = interpolation if interpolation is not None else (cv2.INTER_AREA if ratio > 1 else cv2.INTER_LINEAR)
        return cv2.resize(patch, (size_out, size_out), interpolation=interp)
    # General case: output pixel c -> input pixel (c - (So-1)/2) * ratio + (Si-1)/2.
    offset = (size_in - 1) / 2.0 - (size_out - 1) / 2.0 * ratio
    m = np.array([[ratio, 0.0, offset], [0.0, ratio, offset]])
    interp = interpolation if interpolation is not None else cv2.INTER_LINEAR
    if ratio > 1.5:  # blur first so down-sampling does not alias
        patch = cv2.GaussianBlur(patch, (0, 0), sigmaX=0.5 * ratio)
    return cv2.warpAffine(patch, m, (size_out, size_out), flags=interp | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def to_nchw_float(images: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """HxWx3 uint8 image(s) -> (N, 3, H, W) float32 in [0, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8:
        raise InputError(f"images must be uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1.0 / 255.0)


def level_ground_image(image: np.ndarray, k: np.ndarray, roll_rad: float, pitch_rad: float) -> np.ndarray:
    """The image a level camera with the same K would see (`cvgl_ros.geo.frames`); the
    camera as mounted has roll and pitch (REP-103). Pixels from outside the view are black."""
    import cv2

    from cvgl_ros.geo.frames import level_camera_homography

    if roll_rad == 0.0 and pitch_rad == 0.0:
        return image
    h, w = image.shape[:2]
    homography = level_camera_homography(k, roll_rad, pitch_rad)
    return cv2.warpPerspective(image, homography, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
