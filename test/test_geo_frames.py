"""Camera tilt: the homography maps a tilted camera's pixels onto a level camera's."""
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.geo.frames import camera_tilt_rotation, level_camera_homography
from cvgl_ros.runtime.preprocess import level_ground_image

pytestmark = pytest.mark.core

K = np.array([[300.0, 0.0, 256.0], [0.0, 300.0, 64.0], [0.0, 0.0, 1.0]])


def project(k, points_cam):
    uvw = points_cam @ k.T
    return uvw[:, :2] / uvw[:, 2:]


@pytest.mark.parametrize("roll_deg,pitch_deg", [(0.0, 3.0), (2.0, -4.0), (-5.0, 10.0)])
def test_ground_points_land_where_a_level_camera_sees_them(roll_deg, pitch_deg):
    rng = np.random.default_rng(0)
    # ground points ahead of a level camera 1.65 m up (optical frame: x right, y down, z forward)
    level = np.stack([rng.uniform(-8, 8, 50), np.full(50, 1.65), rng.uniform(4, 40, 50)], axis=1)
    r = camera_tilt_rotation(math.radians(roll_deg), math.radians(pitch_deg))
    tilted = level @ r.T
    h = level_camera_homography(K, math.radians(roll_deg), math.radians(pitch_deg))
    uv = project(K, tilted)
    mapped = np.c_[uv, np.ones(len(uv))] @ h.T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], project(K, level), atol=1e-9)


def test_pitching_down_moves_the_horizon_up_in_the_image():
    r = camera_tilt_rotation(0.0, math.radians(5.0))
    far = np.array([[0.0, 0.0, 1000.0]]) @ r.T  # a point on the horizon straight ahead
    assert project(K, far)[0, 1] < K[1, 2] - 20  # above the image centre row


def test_a_level_camera_is_left_alone_and_bad_angles_are_refused():
    image = np.random.default_rng(1).integers(0, 255, (128, 512, 3), dtype=np.uint8)
    assert level_ground_image(image, K, 0.0, 0.0) is image
    warped = level_ground_image(image, K, 0.0, math.radians(3.0))
    assert warped.shape == image.shape and not np.array_equal(warped, image)
    for roll, pitch in ((math.nan, 0.0), (0.0, math.radians(70))):
        with pytest.raises(InputError):
            camera_tilt_rotation(roll, pitch)
