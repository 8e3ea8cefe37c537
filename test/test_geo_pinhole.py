"""Intrinsics of a resized image: a point seen in an image shrunk 2x with OpenCV lies where the
scaled K projects it (pixel centres at integer coordinates), not 0.25 px off as cx * s puts it."""
import math

import cv2
import numpy as np
import pytest

from cvgl_ros.datasets.robotcar import DEFAULT_INTRINSICS, DEFAULT_SIZE, intrinsics_matrix
from cvgl_ros.errors import InputError
from cvgl_ros.geo.pinhole import scale_intrinsics
from cvgl_ros.runtime.preprocess import resize_ground
from cvgl_ros.sim.ground_camera import KITTI_IMAGE_SIZE, KITTI_K, default_camera

pytestmark = pytest.mark.core

POINT_CAM = np.array([0.7, -0.4, 6.0])  # a point ahead of the camera (optical frame: x right, y down, z forward)


def project(k, point):
    uvw = k @ point
    return uvw[:2] / uvw[2]


def blob_image(width, height, centre_uv, sigma_px=3.0):
    """A Gaussian spot centred on `centre_uv`, pixel (c, r) sampled at its centre (c, r)."""
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    d2 = (cols - centre_uv[0]) ** 2 + (rows - centre_uv[1]) ** 2
    return np.exp(-0.5 * d2 / sigma_px**2)


def centroid(image):
    rows, cols = np.indices(image.shape)
    return np.array([(cols * image).sum(), (rows * image).sum()]) / image.sum()


def shrunk_2x_centroid(k_full, width, height):
    """Where the point appears after `cv2.resize` of the full image to half size (INTER_AREA)."""
    full = blob_image(width, height, project(k_full, POINT_CAM))
    half = cv2.resize(full, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    return centroid(half)


def test_a_2x_downsized_robotcar_image_sees_the_point_where_its_k_says():
    width, height = DEFAULT_SIZE
    fx, fy, cx, cy = DEFAULT_INTRINSICS
    k_full = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    seen = shrunk_2x_centroid(k_full, width, height)
    k_half = intrinsics_matrix(DEFAULT_INTRINSICS, width // 2, height // 2)
    np.testing.assert_allclose(project(k_half, POINT_CAM), seen, atol=1e-3)
    # the principal point scaled as c * s would put the point 0.25 px up and left of where it is
    k_naive = np.diag([0.5, 0.5, 1.0]) @ k_full
    np.testing.assert_allclose(seen - project(k_naive, POINT_CAM), [-0.25, -0.25], atol=1e-3)


def test_the_runtime_resize_and_its_k_agree_on_a_2x_downsizing():
    width, height = 512, 128
    k_full = np.array([[256.0, 0.0, 255.5], [0.0, 256.0, 63.5], [0.0, 0.0, 1.0]])
    image = np.repeat((255 * blob_image(width, height, project(k_full, POINT_CAM)))[..., None], 3, axis=2)
    half, k_half = resize_ground(image.astype(np.float32), k_full, (height // 2, width // 2))
    np.testing.assert_allclose(project(k_half, POINT_CAM), centroid(half[..., 0]), atol=1e-3)


def test_scale_factors_scale_focal_lengths_and_skew_and_keep_the_image_centre_the_centre():
    k = np.array([[700.0, 1.5, 639.5], [0.0, 710.0, 479.5], [0.0, 0.0, 1.0]])  # principal point at the centre
    out = scale_intrinsics(k, 0.5, 0.25)
    np.testing.assert_allclose(out, [[350.0, 0.75, 319.5], [0.0, 177.5, 119.5], [0.0, 0.0, 1.0]])
    assert k[0, 2] == 639.5  # the input is left alone


@pytest.mark.parametrize("sx,sy", [(0.0, 1.0), (1.0, -0.5), (math.nan, 1.0), (1.0, math.inf)])
def test_a_scale_factor_that_is_not_a_positive_number_is_refused(sx, sy):
    with pytest.raises(InputError, match="scale factors"):
        scale_intrinsics(np.eye(3), sx, sy)


def test_the_simulated_camera_keeps_the_kitti_image_centre_at_its_scaled_centre():
    cam = default_camera(KITTI_IMAGE_SIZE[0] // 2, 125)
    sx, sy = cam.width / KITTI_IMAGE_SIZE[0], cam.height / KITTI_IMAGE_SIZE[1]
    # the KITTI principal point's offset from the image centre scales with the image
    offset = KITTI_K[:2, 2] - (np.array(KITTI_IMAGE_SIZE) - 1) / 2
    centre = (np.array([cam.width, cam.height]) - 1) / 2
    np.testing.assert_allclose(cam.k[:2, 2], centre + offset * [sx, sy], atol=1e-9)
