"""Interpolation of likelihood volumes at particle poses, and the simulated cross-view volumes."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import angle_diff
from cvgl_ros.likelihood import LikelihoodVolume
from cvgl_ros.sim.simulated_cross_view import SimulatedCrossView, SimulatedCrossViewConfig

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

RNG = np.random.default_rng(0)
RANDOM_LL = RNG.normal(size=(8, 6, 5)).astype(np.float32)
FULL_CIRCLE = -math.pi + np.arange(8) * (math.pi / 4)


def volume(ll=RANDOM_LL, yaws=FULL_CIRCLE, center=(10.0, -20.0), cell_m=0.5):
    return LikelihoodVolume(ll, center[0], center[1], cell_m, yaws)


def test_cell_centres_and_bins_give_the_stored_values():
    v = volume()
    east, north = v.cell_centres()
    for k, yaw in enumerate(FULL_CIRCLE):
        np.testing.assert_allclose(v.interpolate(east, north, yaw), RANDOM_LL[k], atol=1e-6)
    assert v.interpolate(east[2, 3], north[2, 3], FULL_CIRCLE[5] + 4 * math.pi) == pytest.approx(RANDOM_LL[5, 2, 3], abs=1e-6)


def test_bilinear_in_xy_and_linear_in_yaw():
    v = volume()
    east, north = v.cell_centres()
    # Midway between 4 cell centres of one yaw slice: their mean.
    e = 0.5 * (east[1, 1] + east[1, 2])
    n = 0.5 * (north[1, 1] + north[2, 1])
    assert v.interpolate(e, n, FULL_CIRCLE[3]) == pytest.approx(RANDOM_LL[3, 1:3, 1:3].mean(), abs=1e-6)
    # A quarter of the way from bin 2 to bin 3, at a cell centre.
    yaw = FULL_CIRCLE[2] + 0.25 * (math.pi / 4)
    expected = 0.75 * RANDOM_LL[2, 4, 0] + 0.25 * RANDOM_LL[3, 4, 0]
    assert v.interpolate(east[4, 0], north[4, 0], yaw) == pytest.approx(expected, abs=1e-6)
    # Between the last bin and the first one, across +-pi.
    yaw = FULL_CIRCLE[7] + 0.5 * (math.pi / 4)
    assert v.interpolate(east[0, 0], north[0, 0], yaw) == pytest.approx(0.5 * (RANDOM_LL[7, 0, 0] + RANDOM_LL[0, 0, 0]), abs=1e-6)


def test_outside_the_grid_is_the_floor_never_nan():
    v = volume()
    east, north = v.cell_centres()
    half = 0.5 * 0.5
    floor = float(RANDOM_LL.min())
    assert v.floor_log_likelihood == pytest.approx(floor)
    # The outer half cell still belongs to the grid (edge value); beyond it is the floor.
    assert v.interpolate(east[0, 0] - 0.9 * half, north[0, 0], FULL_CIRCLE[0]) == pytest.approx(RANDOM_LL[0, 0, 0], abs=1e-6)
    assert v.interpolate(east[0, 0] - 1.1 * half, north[0, 0], FULL_CIRCLE[0]) == pytest.approx(floor)
    assert v.interpolate(east[0, 0], north[0, 0] + 1e3, 0.0) == pytest.approx(floor)
    out = v.interpolate([math.nan, 10.0, math.inf], [0.0, -20.0, 0.0], [0.0, math.nan, 0.0])
    np.testing.assert_allclose(out, floor)
    assert v.interpolate(1e9, 0.0, 0.0, outside_log_likelihood=-50.0) == -50.0


def test_yaw_bins_that_do_not_cover_the_circle_do_not_wrap():
    yaws = np.radians([-20.0, -10.0, 0.0, 10.0, 20.0])
    ll = RANDOM_LL[:5]
    v = volume(ll, yaws)
    assert not v.wraps_yaw
    east, north = v.cell_centres()
    assert v.interpolate(east[1, 1], north[1, 1], math.radians(22.0)) == pytest.approx(ll[4, 1, 1], abs=1e-6)
    assert v.interpolate(east[1, 1], north[1, 1], math.radians(30.0)) == pytest.approx(float(ll.min()))
    assert v.interpolate(east[1, 1], north[1, 1], math.radians(5.0)) == pytest.approx(0.5 * (ll[2, 1, 1] + ll[3, 1, 1]), abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True),
       st.floats(allow_nan=True, allow_infinity=True))
def test_interpolation_is_finite_and_bounded(e, n, yaw):
    v = volume()
    value = float(v.interpolate(e, n, yaw))
    assert math.isfinite(value)
    assert RANDOM_LL.min() - 1e-5 <= value <= RANDOM_LL.max() + 1e-5


def test_interpolation_keeps_the_broadcast_shape():
    v = volume()
    assert v.interpolate(np.zeros((3, 4)), 0.0, 0.0).shape == (3, 4)
    assert v.interpolate(10.0, -20.0, 0.0).shape == ()


def test_log_normalizer_is_the_log_sum_of_the_volume():
    v = volume()
    assert v.log_normalizer == pytest.approx(float(np.log(np.exp(RANDOM_LL.astype(np.float64)).sum())), rel=1e-6)


def test_simulated_volumes_peak_around_the_truth():
    config = SimulatedCrossViewConfig(false_peak_fraction=0.0)
    sim = SimulatedCrossView(config, seed=1)
    offsets, yaw_errors = [], []
    for i in range(40):
        v = sim.volume(0.1 * i, 100.0, 50.0, 3.0, 104.0, 47.0)
        assert v.shape == (64, 128, 128) and v.cell_m == 0.4 and v.wraps_yaw
        assert (v.center_e_m, v.center_n_m) == (104.0, 47.0) and v.stamp_ns == round(0.1 * i * 1e9)
        e, n, yaw = v.argmax_pose()
        offsets.append((e - 100.0, n - 50.0))
        yaw_errors.append(angle_diff(yaw, 3.0))
        if i == 0:  # the closed-form normalizer equals the sum over the volume
            direct = float(np.log(np.exp(v.log_likelihood.astype(np.float64)).sum()))
            assert v.log_normalizer == pytest.approx(direct, abs=1e-3)
    offsets = np.asarray(offsets)
    assert np.all(np.abs(offsets.mean(axis=0)) < 0.5)
    assert 0.6 < offsets.std() < 1.5  # sigma_xy = 1 m, cells of 0.4 m
    assert np.std(yaw_errors) < math.radians(5.0)


def test_simulated_false_peaks_are_elsewhere_at_the_configured_rate():
    sim = SimulatedCrossView(SimulatedCrossViewConfig(num_yaw_bins=16, size_cells=64, cell_m=0.5), seed=2)
    far = 0
    for i in range(400):
        e, n, _ = sim.volume(0.1 * i, 0.0, 0.0, 0.0, 2.0, -1.0).argmax_pose()
        far += math.hypot(e, n) > 6.0
    assert sim.false_peaks == far
    assert 20 <= far <= 60  # 10 % of 400


def test_simulated_cross_view_rejects_bad_configuration():
    with pytest.raises(InputError):
        SimulatedCrossViewConfig(sigma_xy_m=0.0)
    with pytest.raises(InputError):
        SimulatedCrossViewConfig(false_peak_fraction=1.5)
    with pytest.raises(InputError):
        SimulatedCrossView(seed=0).volume(0.0, math.nan, 0.0, 0.0, 0.0, 0.0)


def test_large_queries_are_interpolated_in_blocks_with_the_same_result():
    v = volume()
    rng = np.random.default_rng(3)
    n = 40_000  # above INTERPOLATION_CHUNK: several blocks
    e, nn, yaw = rng.uniform(7.0, 13.0, n), rng.uniform(-23.0, -17.0, n), rng.uniform(-4.0, 4.0, n)
    whole = v.interpolate(e, nn, yaw)
    parts = np.concatenate([v.interpolate(e[i:i + 999], nn[i:i + 999], yaw[i:i + 999]) for i in range(0, n, 999)])
    np.testing.assert_array_equal(whole, parts)
    assert (whole == v.floor_log_likelihood).any() and (whole != v.floor_log_likelihood).any()
