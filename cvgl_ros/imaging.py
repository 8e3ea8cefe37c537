"""Camera image decoding without ROS: `sensor_msgs/Image` and `CompressedImage` payloads -> RGB.

The cross-view node hands the fields of an incoming message to these functions and gets an
H x W x 3 uint8 RGB array back, or an `InputError` whose one line says what is wrong
(empty data, an unknown encoding, a width/height/step that does not match the data). No
cv_bridge: numpy views of the buffer plus OpenCV for demosaicing and JPEG/PNG decoding.

Uncompressed encodings (the names of ROS `sensor_msgs/image_encodings.hpp`):
  rgb8, bgr8, rgba8, bgra8, mono8, mono16, bayer_{rggb,bggr,gbrg,grbg}8 and ...16.
16-bit data is reduced to 8 bits by keeping the high byte (`is_bigendian` honoured).
Compressed formats: the `format` string of `CompressedImage` ("jpeg", "png", or the
image_transport form "rgb8; jpeg compressed bgr8"); the bytes themselves must carry the
matching JPEG or PNG signature.
"""
from __future__ import annotations

import numpy as np

from cvgl_ros.errors import InputError

# encoding -> (channels, bytes per channel)
_LAYOUT = {
    "rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "mono8": (1, 1), "mono16": (1, 2),
    "bayer_rggb8": (1, 1), "bayer_bggr8": (1, 1), "bayer_gbrg8": (1, 1), "bayer_grbg8": (1, 1),
    "bayer_rggb16": (1, 2), "bayer_bggr16": (1, 2), "bayer_gbrg16": (1, 2), "bayer_grbg16": (1, 2),
}
SUPPORTED_ENCODINGS = tuple(_LAYOUT)
SUPPORTED_COMPRESSED_FORMATS = ("jpeg", "png")

# OpenCV names a Bayer pattern by the second row's first two pixels, ROS by the first row's:
# ROS bayer_rggb is OpenCV's BayerBG (the mapping cv_bridge uses).
_BAYER_TO_CV = {"rggb": "COLOR_BayerBG2RGB", "bggr": "COLOR_BayerRG2RGB",
                "gbrg": "COLOR_BayerGR2RGB", "grbg": "COLOR_BayerGB2RGB"}

_MAX_PIXELS = 64_000_000  # a 8K x 8K frame: anything larger is a corrupt header, not a camera

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _as_bytes(data) -> np.ndarray:
    """The message's data field (bytes, array.array, list or ndarray) as a flat uint8 array."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype != np.uint8 else data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def decode_image(encoding: str, height: int, width: int, step: int, data, is_bigendian: int = 0) -> np.ndarray:
    """An uncompressed `sensor_msgs/Image` payload -> H x W x 3 uint8 RGB (a new array).

    Raises InputError for empty data, an unknown encoding, non-positive or absurd sizes, a
    step shorter than one row, or a data length other than step * height.
    """
    enc = str(encoding).strip().lower()
    if enc not in _LAYOUT:
        raise InputError(f"unknown image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    height, width, step = int(height), int(width), int(step)
    buf = _as_bytes(data)
    if buf.size == 0:
        raise InputError(f"empty image ({width}x{height} {enc} with no data)")
    if height <= 0 or width <= 0:
        raise InputError(f"image size {width}x{height} must be positive")
    if height * width > _MAX_PIXELS:
        raise InputError(f"image size {width}x{height} exceeds {_MAX_PIXELS} pixels")
    channels, depth = _LAYOUT[enc]
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise InputError(f"image step {step} is shorter than one {enc} row of width {width} ({row_bytes} bytes)")
    if buf.size != step * height:
        raise InputError(f"image data holds {buf.size} bytes, expected step*height = {step}*{height} = {step * height}")

    rows = buf.reshape(height, step)[:, :row_bytes]
    if depth == 2:
        # keep the most significant byte of each 16-bit sample
        pairs = rows.reshape(height, width * channels, 2)
        pixels = np.ascontiguousarray(pairs[:, :, 0 if is_bigendian else 1])
    else:
        pixels = rows
    pixels = pixels.reshape(height, width, channels)

    if enc.startswith("bayer_"):
        import cv2

        code = getattr(cv2, _BAYER_TO_CV[enc[6:10]])
        return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), code)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if enc.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def decode_compressed(fmt: str, data) -> np.ndarray:
    """A `sensor_msgs/CompressedImage` payload (JPEG or PNG) -> H x W x 3 uint8 RGB.

    Raises InputError for empty data, a format other than JPEG/PNG, bytes that do not carry
    the signature the format names, or bytes that do not decode.
    """
    import cv2

    text = str(fmt).strip().lower()
    if "jpeg" in text or "jpg" in text:
        kind, magic = "jpeg", _JPEG_MAGIC
    elif "png" in text:
        kind, magic = "png", _PNG_MAGIC
    else:
        raise InputError(f"unknown compressed image format {fmt!r}; supported: jpeg, png")
    buf = _as_bytes(data)
    if buf.size == 0:
        raise InputError(f"empty {kind} image (no data)")
    if bytes(buf[: len(magic)]) != magic:
        raise InputError(f"compressed image says {kind} but its data does not start with the {kind} signature")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise InputError(f"{kind} image of {buf.size} bytes could not be decoded (truncated or corrupt)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_rgb(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[int, int, int, bytes]:
    """H x W x 3 uint8 RGB -> (height, width, step, data) of an Image in `encoding`.

    The inverse of `decode_image` for rgb8, bgr8 and mono8 (mono8 takes the luma); used to
    publish debug images and to build test frames.
    """
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"expected an HxWx3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    if encoding == "rgb8":
        out = arr
    elif encoding == "bgr8":
        out = arr[:, :, ::-1]
    elif encoding == "mono8":
        import cv2

        out = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)
    else:
        raise InputError(f"cannot encode to {encoding!r}; use rgb8, bgr8 or mono8")
    out = np.ascontiguousarray(out)
    h, w = out.shape[:2]
    channels = 1 if out.ndim == 2 else out.shape[2]
    return h, w, w * channels, out.tobytes()
