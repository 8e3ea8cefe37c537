"""Image decoding of the cross-view node's inputs: every encoding, and a clear error for bad frames."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.errors import InputError
from cvgl_ros.imaging import SUPPORTED_ENCODINGS, decode_compressed, decode_image, encode_rgb

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)


def _rgb(h=6, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), pad=st.integers(0, 5), seed=st.integers(0, 1000),
       encoding=st.sampled_from(["rgb8", "bgr8"]))
def test_rgb_and_bgr_round_trip_with_row_padding(h, w, pad, seed, encoding):
    rgb = _rgb(h, w, seed)
    src = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    step = w * 3 + pad
    padded = np.full((h, step), 77, dtype=np.uint8)
    padded[:, : w * 3] = src.reshape(h, w * 3)
    out = decode_image(encoding, h, w, step, padded.tobytes())
    assert out.dtype == np.uint8 and out.shape == (h, w, 3)
    np.testing.assert_array_equal(out, rgb)


def test_alpha_encodings_drop_alpha():
    rgb = _rgb()
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(decode_image("rgba8", 6, 10, 40, rgba.tobytes()), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], rgba[:, :, 3:]], axis=2)
    np.testing.assert_array_equal(decode_image("bgra8", 6, 10, 40, bgra.tobytes()), rgb)


def test_mono8_and_mono16_give_grey_rgb():
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10)
    out = decode_image("mono8", 6, 10, 10, grey.tobytes())
    assert out.shape == (6, 10, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)
    wide = grey.astype(np.uint16) * 256 + 17
    np.testing.assert_array_equal(decode_image("mono16", 6, 10, 20, wide.astype("<u2").tobytes())[:, :, 0], grey)
    np.testing.assert_array_equal(
        decode_image("mono16", 6, 10, 20, wide.astype(">u2").tobytes(), is_bigendian=1)[:, :, 0], grey)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_right_colour(pattern):
    colour = {"r": 200, "g": 100, "b": 30}
    mosaic = np.zeros((16, 16), np.uint8)
    mosaic[0::2, 0::2] = colour[pattern[0]]
    mosaic[0::2, 1::2] = colour[pattern[1]]
    mosaic[1::2, 0::2] = colour[pattern[2]]
    mosaic[1::2, 1::2] = colour[pattern[3]]
    out = decode_image(f"bayer_{pattern}8", 16, 16, 16, mosaic.tobytes())
    np.testing.assert_array_equal(out[4:12, 4:12].reshape(-1, 3), np.tile([200, 100, 30], (64, 1)))
    out16 = decode_image(f"bayer_{pattern}16", 16, 16, 32, (mosaic.astype("<u2") * 256).tobytes())
    np.testing.assert_array_equal(out16[8, 8], [200, 100, 30])


@pytest.mark.parametrize("fmt,ext", [("jpeg", ".jpg"), ("png", ".png"), ("rgb8; jpeg compressed bgr8", ".jpg")])
def test_compressed_images_decode_to_rgb(fmt, ext):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :, 0] = 220  # red: a swapped channel order would show as blue
    rgb[:, :, 2] = 20
    ok, data = cv2.imencode(ext, rgb[:, :, ::-1])
    assert ok
    out = decode_compressed(fmt, data.tobytes())
    assert out.shape == (32, 48, 3)
    assert abs(int(out[16, 24, 0]) - 220) <= 3 and abs(int(out[16, 24, 2]) - 20) <= 3


def test_encode_rgb_inverts_decode():
    rgb = _rgb(5, 7)
    for enc in ("rgb8", "bgr8"):
        h, w, step, data = encode_rgb(rgb, enc)
        np.testing.assert_array_equal(decode_image(enc, h, w, step, data), rgb)
    h, w, step, data = encode_rgb(rgb, "mono8")
    assert (h, w, step, len(data)) == (5, 7, 7, 35)


@pytest.mark.parametrize("args,match", [
    (("rgb8", 6, 10, 30, b""), "empty image"),
    (("yuv422", 6, 10, 20, b"\0" * 120), "unknown image encoding 'yuv422'"),
    (("rgb8", 6, 10, 30, b"\0" * 170), "expected step\\*height"),
    (("rgb8", 6, 10, 25, b"\0" * 150), "step 25 is shorter than one rgb8 row"),
    (("rgb8", 7, 10, 30, b"\0" * 180), "expected step\\*height"),
    (("rgb8", 0, 10, 30, b"\0" * 30), "must be positive"),
    (("mono8", 100000, 100000, 100000, b"\0" * 10), "exceeds"),
])
def test_bad_frames_raise_one_line_input_errors(args, match):
    with pytest.raises(InputError, match=match) as info:
        decode_image(*args)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt,data,match", [
    ("jpeg", b"", "empty jpeg"),
    ("tiff", b"II*\0", "unknown compressed image format"),
    ("png", b"\xff\xd8\xff\xe0garbage", "does not start with the png signature"),
    ("jpeg", b"\xff\xd8\xff\xe0" + b"\0" * 20, "could not be decoded"),
])
def test_bad_compressed_frames_raise_input_errors(fmt, data, match):
    with pytest.raises(InputError, match=match):
        decode_compressed(fmt, data)


def test_every_listed_encoding_decodes():
    for enc in SUPPORTED_ENCODINGS:
        depth = 2 if enc.endswith("16") else 1
        channels = 4 if enc.endswith("a8") else 3 if enc in ("rgb8", "bgr8") else 1
        step = 8 * channels * depth
        out = decode_image(enc, 4, 8, step, b"\x80" * (step * 4))
        assert out.shape == (4, 8, 3) and out.dtype == np.uint8
