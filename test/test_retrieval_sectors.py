"""The geometry of the azimuth-sector descriptors (`cvgl_ros.retrieval.sectors`): which sector a
camera column looks into, and the polar image of a north-up patch."""
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.retrieval.sectors import polar_maps, polar_patch, sector_weights

pytestmark = pytest.mark.core

K = np.array([[128.0, 0.0, 128.0], [0.0, 128.0, 32.0], [0.0, 0.0, 1.0]])   # 256 px wide, 90 deg field of view


def test_each_column_splits_one_unit_of_weight_between_the_two_sectors_around_its_bearing():
    w = sector_weights([0.0], K, 256, 16, 16)[0]                  # 16 columns, 16 sectors of 22.5 deg
    assert w.shape == (16, 16) and np.allclose(w.sum(axis=1), 1.0)
    assert (np.count_nonzero(w, axis=1) <= 2).all()
    # the optical axis looks east (yaw 0): the two middle columns are 2.8 deg either side of it,
    # between the sector centred at 11.25 deg (0) and the one at -11.25 deg (15)
    left, right = w[7], w[8]                                      # column 7 is left of the axis: north of east
    assert left[0] > left[15] and right[15] > right[0]
    # the image's left edge (column 0) looks 42 deg north of east, the right edge 42 deg south
    assert w[0, 1] + w[0, 2] == pytest.approx(1.0) and w[15, 13] + w[15, 14] == pytest.approx(1.0)


def test_turning_by_one_sector_shifts_the_weights_by_one_sector():
    step = 2 * math.pi / 16
    w0, w1 = sector_weights([0.4, 0.4 + step], K, 256, 16, 16)
    assert np.allclose(np.roll(w0, 1, axis=1), w1, atol=1e-5)
    full = sector_weights([0.4 + 2 * math.pi], K, 256, 16, 16)[0]
    assert np.allclose(full, w0, atol=1e-5)


def test_bad_yaw_or_intrinsics_are_refused():
    with pytest.raises(InputError, match="finite"):
        sector_weights([float("nan")], K, 256, 16, 16)
    with pytest.raises(InputError, match="f_x"):
        sector_weights([0.0], K * [[0], [1], [1]], 256, 16, 16)


def test_the_polar_image_reads_bearings_counter_clockwise_from_east():
    patch = np.zeros((64, 64, 3), np.uint8)
    patch[:32, 32:, 0] = 255                      # the north-east quadrant red: bearings 0-90 deg
    patch[40:, :, 2] = 255                        # a band along the south edge blue
    polar = polar_patch(patch, polar_maps(64, (16, 64)))
    assert polar.shape == (16, 64, 3)
    far = polar[-4:]                              # outer ranges
    assert far[:, 1:15, 0].min() == 255 and far[:, 18:62, 0].max() == 0     # columns of 0-90 deg only
    assert far[:, 36:60, 2].min() == 255 and far[:, 4:28, 2].max() == 0     # south: 225-315 deg
