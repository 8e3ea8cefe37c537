"""Unit behaviour of the particle filter: initialization, the measurement model, outlier
rejection, stamp ordering, invalid input, resampling and the estimate."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.errors import InputError
from cvgl_ros.filter.particle_filter import GnssDecision, ParticleFilter, ParticleFilterConfig
from cvgl_ros.filter.resampling import effective_sample_size, systematic_resample
from cvgl_ros.likelihood import LikelihoodVolume

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

YAWS_64 = -math.pi + np.arange(64) * (2 * math.pi / 64)


def gaussian_volume(peak_e, peak_n, peak_yaw, center_e, center_n, sigma_m=1.0, sigma_yaw=0.05,
                    size=64, cell_m=0.5, stamp_s=0.0):
    cols = (np.arange(size) - (size - 1) / 2) * cell_m
    east = center_e + cols
    north = center_n - cols
    d_yaw = (YAWS_64 - peak_yaw + math.pi) % (2 * math.pi) - math.pi
    ll = (-0.5 * (d_yaw / sigma_yaw) ** 2)[:, None, None] \
        + (-0.5 * ((north[:, None] - peak_n) ** 2 + (east[None, :] - peak_e) ** 2) / sigma_m**2)[None]
    return LikelihoodVolume(ll.astype(np.float32), center_e, center_n, cell_m, YAWS_64, int(stamp_s * 1e9))


def drive_straight(pf, t0, t1, speed=10.0, yaw=0.0, rate_hz=5.0, sigma=3.0, rng=None, noise=True):
    """Feed GNSS fixes of a car driving a straight line at constant speed; returns last time."""
    rng = rng or np.random.default_rng(5)
    decisions = []
    for t in np.arange(t0, t1 + 1e-9, 1.0 / rate_hz):
        e = speed * t * math.cos(yaw) + (rng.normal(0, sigma) if noise else 0.0)
        n = speed * t * math.sin(yaw) + (rng.normal(0, sigma) if noise else 0.0)
        decisions.append(pf.add_gnss(float(t), e, n, sigma, True))
    return decisions


def test_initialization_follows_the_paper():
    pf = ParticleFilter(ParticleFilterConfig(), seed=1)
    est = pf.estimate()
    assert not est.initialized and all(math.isfinite(v) for v in (est.east_m, est.north_m, est.yaw_enu_rad))
    assert np.all(np.isfinite(est.covariance_3x3))
    assert pf.add_gnss(10.0, 100.0, -50.0, 4.0, True) is GnssDecision.INITIALIZED
    p = pf.particles
    assert p.shape == (2000, 4)
    assert abs(p[:, 0].mean() - 100.0) < 0.5 and abs(p[:, 1].mean() + 50.0) < 0.5
    assert 3.6 < p[:, 0].std() < 4.4 and 3.6 < p[:, 1].std() < 4.4
    assert p[:, 2].min() >= 0.0 and p[:, 2].max() <= 5.0 and abs(p[:, 2].mean() - 2.5) < 0.2
    hist, _ = np.histogram(p[:, 3], bins=8, range=(-math.pi, math.pi))
    assert hist.min() > 180  # uniform yaw
    est = pf.estimate()
    assert est.initialized and est.stamp_s == 10.0
    assert math.hypot(est.east_m - 100.0, est.north_m + 50.0) < 0.5


def test_invalid_and_duplicate_fixes_are_ignored():
    pf = ParticleFilter(ParticleFilterConfig(num_particles=200), seed=0)
    assert pf.add_gnss(0.0, math.nan, 0.0, 3.0, True) is GnssDecision.IGNORED_INVALID
    assert pf.add_gnss(0.0, 0.0, math.inf, 3.0, True) is GnssDecision.IGNORED_INVALID
    assert pf.add_gnss(0.0, 0.0, 0.0, 3.0, False) is GnssDecision.IGNORED_INVALID
    assert pf.add_gnss(math.nan, 0.0, 0.0, 3.0, True) is GnssDecision.IGNORED_INVALID
    assert not pf.initialized
    assert pf.add_gnss(0.0, 0.0, 0.0, math.nan, True) is GnssDecision.INITIALIZED  # unknown sigma: default
    assert pf.add_gnss(0.0, 5.0, 5.0, 3.0, True) is GnssDecision.IGNORED_DUPLICATE
    assert pf.add_gnss(0.2, 0.0, 0.0, 3.0, True).used
    assert pf.add_gnss(0.2, 0.0, 0.0, 3.0, True) is GnssDecision.IGNORED_DUPLICATE
    d = pf.diagnostics
    assert d["gnss_invalid"] == 4 and d["gnss_duplicates"] == 2


def test_gnss_tracking_and_outlier_rejection_of_a_jump():
    pf = ParticleFilter(ParticleFilterConfig(use_cross_view=False), seed=2)
    rng = np.random.default_rng(5)
    drive_straight(pf, 0.0, 10.0, rng=rng)
    errors, yaw_errors, speeds = [], [], []
    for t in np.arange(10.2, 30.0, 0.2):  # raw fixes: sigma 3 m per axis, mean error 3.8 m
        drive_straight(pf, t, t, rng=rng)
        est = pf.estimate()
        errors.append(math.hypot(est.east_m - 10.0 * t, est.north_m))
        yaw_errors.append(abs(est.yaw_enu_rad))
        speeds.append(est.speed_mps)
    assert np.mean(errors) < 2.5 and np.mean(yaw_errors) < 0.2 and abs(np.mean(speeds) - 10.0) < 1.0
    # GNSS jumps 100 m north for 5 s: every fix is rejected, the estimate keeps driving east.
    rejected_before = pf.diagnostics["gnss_rejected"]
    for t in np.arange(151, 175) * 0.2:  # 30.2 .. 34.8 s
        assert pf.add_gnss(float(t), 10.0 * t, 100.0, 3.0, True) is GnssDecision.REJECTED_OUTLIER
        est = pf.estimate()
        assert math.hypot(est.east_m - 10.0 * t, est.north_m) < 25.0  # dead reckoning; GNSS is 100 m off
    assert pf.add_gnss(35.0, 350.0, 0.5, 3.0, True) is GnssDecision.ACCEPTED
    assert pf.diagnostics["gnss_rejected"] - rejected_before == 24


def test_estimate_drifting_from_a_smooth_gnss_track_is_pulled_back():
    """A fix far from the estimate but continuing the raw track is used, not rejected."""
    pf = ParticleFilter(ParticleFilterConfig(use_cross_view=False), seed=3)
    drive_straight(pf, 0.0, 20.0, noise=False, sigma=2.0)
    # The car turns left at 0.5 rad/s; the filter's yaw lags but GNSS moves smoothly.
    e, n, yaw = 200.0, 0.0, 0.0
    decisions = []
    for t in np.arange(20.2, 40.0, 0.2):
        yaw = min(yaw + 0.1, math.pi / 2)
        e, n = e + 2.0 * math.cos(yaw), n + 2.0 * math.sin(yaw)
        decisions.append(pf.add_gnss(float(t), e, n, 2.0, True))
    est = pf.estimate()
    assert math.hypot(est.east_m - e, est.north_m - n) < 3.0
    assert decisions.count(GnssDecision.REJECTED_OUTLIER) == 0


def test_cross_view_pulls_the_estimate_to_the_likelihood_peak():
    pf = ParticleFilter(ParticleFilterConfig(), seed=4)
    pf.add_gnss(0.0, 0.0, 0.0, 5.0, True)
    for k in range(1, 21):  # a car at (3, -2) driving at 2 m/s with yaw 1 rad
        t = 0.1 * k
        peak_e, peak_n = 3.0 + 2.0 * t * math.cos(1.0), -2.0 + 2.0 * t * math.sin(1.0)
        assert pf.add_cross_view(t, gaussian_volume(peak_e, peak_n, 1.0, 0.0, 0.0, stamp_s=t))
    est = pf.estimate()
    assert math.hypot(est.east_m - peak_e, est.north_m - peak_n) < 0.8
    assert abs(est.yaw_enu_rad - 1.0) < 0.1
    assert est.covariance_3x3[0, 0] < 1.0 and est.covariance_3x3[2, 2] < 0.02
    assert pf.diagnostics["cross_view_applied"] == 20


def test_gnss_only_mode_ignores_cross_view():
    pf = ParticleFilter(ParticleFilterConfig(use_cross_view=False), seed=4)
    pf.add_gnss(0.0, 0.0, 0.0, 5.0, True)
    assert not pf.add_cross_view(0.1, gaussian_volume(3.0, -2.0, 1.0, 0.0, 0.0))
    assert pf.diagnostics["cross_view_ignored"] == 1
    with pytest.raises(InputError):
        pf.add_cross_view(0.2, np.zeros((4, 4, 4)))


def deterministic_config():
    """No process noise and no resampling: replays are then exactly repeatable."""
    return ParticleFilterConfig(num_particles=500, accel_noise_mps2=0.0, yaw_rate_noise_radps=0.0,
                                position_noise_mps=0.0, resample_ess_fraction=1e-9)


def feed(pf, events):
    for kind, t, payload in events:
        if kind == "gnss":
            pf.add_gnss(t, *payload, 3.0, True)
        else:
            pf.add_cross_view(t, payload)


def test_late_cross_view_is_applied_at_its_own_stamp():
    volume = gaussian_volume(2.0, 1.0, 0.3, 0.0, 0.0, stamp_s=0.3)
    in_order = [("gnss", 0.0, (0.0, 0.0)), ("gnss", 0.2, (1.0, 0.0)), ("cv", 0.3, volume),
                ("gnss", 0.4, (2.0, 0.0)), ("gnss", 0.6, (3.0, 0.0))]
    late = [in_order[0], in_order[1], in_order[3], in_order[4], in_order[2]]  # arrives 0.3 s late
    a, b = ParticleFilter(deterministic_config(), seed=7), ParticleFilter(deterministic_config(), seed=7)
    feed(a, in_order)
    feed(b, late)
    np.testing.assert_allclose(a.particles, b.particles, atol=1e-9)
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-12)
    assert b.diagnostics["late_applied"] == 1 and a.diagnostics["late_applied"] == 0
    assert b.time_s == 0.6


def test_too_late_is_dropped_and_time_going_back_resets():
    pf = ParticleFilter(ParticleFilterConfig(num_particles=300), seed=8)
    drive_straight(pf, 0.0, 10.0)
    assert not pf.add_cross_view(8.8, gaussian_volume(88.0, 0.0, 0.0, 88.0, 0.0))
    assert pf.add_gnss(8.9, 89.0, 0.0, 3.0, True) is GnssDecision.DROPPED_LATE
    assert pf.diagnostics["late_dropped"] == 2 and pf.diagnostics["resets"] == 0
    assert pf.add_gnss(7.9, 79.0, 0.0, 3.0, True) is GnssDecision.RESET
    assert pf.diagnostics["resets"] == 1 and "backwards" in pf.diagnostics["last_reset_reason"]
    assert pf.time_s == 7.9 and pf.initialized


def test_yaw_statistics_wrap_around_pi():
    pf = ParticleFilter(ParticleFilterConfig(num_particles=1000, covariance_scale=1.0, covariance_floor_yaw_deg=0.0), seed=9)
    pf.add_gnss(0.0, 0.0, 0.0, 3.0, True)
    rng = np.random.default_rng(0)
    view = pf.particles
    view[:, 3] = (math.pi + rng.normal(0.0, 0.05, 1000) + math.pi) % (2 * math.pi) - math.pi
    est = pf.estimate()
    assert abs(abs(est.yaw_enu_rad) - math.pi) < 0.02 and abs(abs(est.mean_yaw_enu_rad) - math.pi) < 0.02
    assert 0.04**2 < est.covariance_3x3[2, 2] < 0.06**2
    np.testing.assert_allclose(est.covariance_3x3, est.covariance_3x3.T)


def test_estimate_ahead_of_the_filter_time_extrapolates():
    pf = ParticleFilter(ParticleFilterConfig(use_cross_view=False), seed=10)
    drive_straight(pf, 0.0, 20.0, noise=False, sigma=1.0)
    now, ahead = pf.estimate(), pf.estimate(21.0)
    assert ahead.stamp_s == 21.0
    assert abs((ahead.east_m - now.east_m) - 10.0) < 1.5 and abs(ahead.north_m - now.north_m) < 1.5
    assert pf.estimate(5.0).stamp_s == 20.0  # before the history: the current estimate


def test_estimate_at_a_past_stamp_is_the_posterior_as_it_stood_then():
    pf = ParticleFilter(ParticleFilterConfig(use_cross_view=False), seed=11)
    rng = np.random.default_rng(2)
    then = {}
    for t in np.arange(0.0, 3.0 + 1e-9, 0.1):
        pf.add_gnss(float(t), 10.0 * t + rng.normal(0, 2), rng.normal(0, 2), 2.0, True)
        then[float(t)] = pf.estimate()
    stamps = sorted(then)
    for t in stamps[-5:-1]:  # within history_s (1 s) of the filter time
        past = pf.estimate(t)
        assert past.stamp_s == t and (past.east_m, past.north_m) == (then[t].east_m, then[t].north_m)
        np.testing.assert_array_equal(past.covariance_3x3, then[t].covariance_3x3)
    t0, t1 = stamps[-3], stamps[-2]
    between = pf.estimate(0.5 * (t0 + t1))  # moved on from t0 by the motion model, at ~10 m/s
    assert between.stamp_s == 0.5 * (t0 + t1)
    assert 0.2 < between.east_m - then[t0].east_m < 0.8
    assert pf.estimate(stamps[-1]).east_m == then[stamps[-1]].east_m
    assert pf.estimate(1.0).stamp_s == stamps[-1]  # no longer in the history: the current estimate


def systematic_resample_by_loop(weights, offset):
    """The textbook loop (filterpy's `systematic_resample`) for a given uniform offset in [0, 1)."""
    m = len(weights)
    positions = (offset + np.arange(m)) / m
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0
    indexes, i, j = np.zeros(m, int), 0, 0
    while i < m:
        if positions[i] < cdf[j]:
            indexes[i] = j
            i += 1
        else:
            j += 1
    return indexes


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 400), power=st.sampled_from([0.0, 1.0, 4.0, 12.0]), seed=st.integers(0, 2**32 - 1))
def test_systematic_resampling_is_the_textbook_loop_and_keeps_floor_or_ceil_copies(m, power, seed):
    rng = np.random.default_rng(seed)
    w = rng.random(m) ** power
    w /= w.sum()
    offset = np.random.default_rng(seed + 1).random()   # the offset the function will draw
    kept = systematic_resample(w, np.random.default_rng(seed + 1))
    np.testing.assert_array_equal(kept, systematic_resample_by_loop(w, offset))
    counts = np.bincount(kept, minlength=m)
    assert counts.sum() == m
    assert np.all(counts >= np.floor(w * m - 1e-9)) and np.all(counts <= np.ceil(w * m + 1e-9))


def test_effective_sample_size():
    assert effective_sample_size(np.full(10, 0.1)) == pytest.approx(10.0)
    assert effective_sample_size(np.eye(1, 10)[0]) == pytest.approx(1.0)
    assert effective_sample_size(np.array([0.5, 0.25, 0.25])) == pytest.approx(1.0 / 0.375)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["gnss", "cv"]),
    st.floats(-5.0, 30.0),
    st.floats(-1e4, 1e4) | st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(-1e4, 1e4),
    st.floats(0.0, 50.0) | st.sampled_from([math.nan, 0.0]),
    st.booleans()), min_size=1, max_size=25))
def test_any_input_sequence_gives_finite_estimates(events):
    pf = ParticleFilter(ParticleFilterConfig(num_particles=50), seed=0)
    for kind, t, e, n, sigma, ok in events:
        if kind == "gnss":
            assert isinstance(pf.add_gnss(t, e, n, sigma, ok), GnssDecision)
        elif math.isfinite(e):
            pf.add_cross_view(t, gaussian_volume(e, n, 0.0, e + 3.0, n - 2.0, size=16))
        est = pf.estimate(t + 0.1)
        values = (est.east_m, est.north_m, est.yaw_enu_rad, est.speed_mps, est.mean_east_m, est.ess)
        assert all(math.isfinite(v) for v in values) and np.all(np.isfinite(est.covariance_3x3))
        assert np.all(np.isfinite(pf.particles)) and np.all(np.isfinite(pf.weights))
