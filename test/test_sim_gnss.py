"""GNSS error models: statistics against their documented parameters and the RobotCar target."""
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.sim.gnss import MODEL_NAMES, STATUS_FIX, STATUS_NO_FIX, GnssModel
from cvgl_ros.sim.trajectory import simulate_drive

BLOCK = np.array([[0, 0], [200, 0], [200, 120], [0, 120], [0, 0]], dtype=float)
CORNERS_S = [200.0, 320.0, 520.0]


@pytest.fixture(scope="module")
def drives():
    return [simulate_drive(BLOCK, CORNERS_S, seed=s, duration_s=300.0, rate_hz=20.0) for s in range(40)]


def _pooled(name, drives, rate_hz=5.0, sky_openness=None):
    tracks = [GnssModel.from_name(name, seed).simulate(tr, rate_hz, sky_openness) for seed, tr in enumerate(drives)]
    return tracks, np.concatenate([t.error_m[t.valid] for t in tracks])


def test_clean_is_the_truth(drives):
    g = GnssModel.from_name("clean", 0).simulate(drives[0], 5.0)
    assert len(g) == 1501 and np.allclose(np.diff(g.t_s), 0.2)
    assert np.all(g.status == STATUS_FIX) and np.all(g.error_m == 0.0)
    assert g.error_stats()["p99_m"] == 0.0
    truth = drives[0].sample(g.t_s)
    assert np.allclose(g.true_east_m, truth.east_m) and np.allclose(g.true_north_m, truth.north_m)


def test_open_sky_matches_its_parameters(drives):
    tracks, err = _pooled("open_sky", drives)
    assert all(np.all(t.valid) for t in tracks)
    # Per axis: white 1.5 m + bias 1.0 m -> sigma 1.80 m, Rayleigh mean 1.80 * sqrt(pi/2) = 2.26 m.
    assert 2.0 < err.mean() < 2.5
    assert np.percentile(err, 99) < 7.0
    # The reported sigma is the receiver's honest estimate here: ~1.8 m.
    reported = np.concatenate([t.reported_sigma_m for t in tracks])
    assert 1.6 < np.median(reported) < 2.0


def test_open_sky_bias_is_gauss_markov_with_tau_60s():
    # One long static drive: the 5 s means of the error are the bias (white noise averages out);
    # their correlation at a 60 s lag is exp(-1) ~ 0.37.
    static = simulate_drive([[0, 0], [1, 0]], [], seed=0, duration_s=3600.0, rate_hz=5.0)
    lag_corr = []
    for seed in range(8):
        g = GnssModel.from_name("open_sky", seed).simulate(static, 5.0)
        e = (g.east_m - g.true_east_m)[: 18000].reshape(-1, 25).mean(axis=1)  # 5 s means
        lag = 12  # 60 s
        lag_corr.append(np.corrcoef(e[:-lag], e[lag:])[0, 1])
        raw = g.east_m - g.true_east_m
        # Adjacent fixes share the bias: corr = 1 / (1 + 1.5^2) ~ 0.31.
        assert 0.1 < np.corrcoef(raw[:-1], raw[1:])[0, 1] < 0.5
    assert 0.2 < np.mean(lag_corr) < 0.55


def test_urban_canyon_reaches_the_robotcar_error_statistics():
    # p99 sits where the multipath bursts begin: it needs many hours to be stable (200 x 300 s).
    drives = [simulate_drive(BLOCK, CORNERS_S, seed=s, duration_s=300.0, rate_hz=5.0) for s in range(200)]
    tracks, err = _pooled("urban_canyon", drives)
    mean, p50, p99 = err.mean(), np.percentile(err, 50), np.percentile(err, 99)
    # Table III RobotCar GPS: mean 4.60, median 3.95, p99 20.2 m.
    assert 3.8 < mean < 5.5
    assert 3.0 < p50 < 4.8
    assert p99 >= 15.0
    stats = tracks[0].error_stats()
    assert set(stats) >= {"mean_m", "p50_m", "p90_m", "p95_m", "p99_m", "no_fix_fraction"}


def test_urban_canyon_has_bursts_dropouts_and_an_overconfident_receiver(drives):
    tracks, _ = _pooled("urban_canyon", drives)
    no_fix = np.concatenate([~t.valid for t in tracks])
    assert 0.001 < no_fix.mean() < 0.05
    for t in tracks:
        assert np.all(np.isnan(t.east_m[~t.valid])) and np.all(np.isnan(t.reported_sigma_m[~t.valid]))
        assert np.all(np.isfinite(t.east_m[t.valid])) and set(np.unique(t.status)) <= {STATUS_FIX, STATUS_NO_FIX}
    burst_err = np.concatenate([t.error_m[t.in_burst & t.valid] for t in tracks])
    burst_sigma = np.concatenate([t.reported_sigma_m[t.in_burst & t.valid] for t in tracks])
    assert burst_err.size > 50
    big = burst_err > 12.0
    assert big.sum() > 20 and burst_err[big].max() > 30.0
    # During a burst the reported 1-sigma understates the error by a large factor.
    assert np.median(burst_err[big] / burst_sigma[big]) > 3.0
    calm = np.concatenate([t.error_m[~t.in_burst & t.valid] for t in tracks])
    assert calm.max() < 25.0


def test_canyon_is_worse_than_open_street(drives):
    _, closed = _pooled("urban_canyon", drives[:20], sky_openness=lambda e, n: np.zeros_like(e))
    _, opened = _pooled("urban_canyon", drives[:20], sky_openness=lambda e, n: np.ones_like(e))
    assert np.median(closed) > 1.3 * np.median(opened)
    # Openness varying along the road: north of y=60 m is a canyon.
    tr = drives[0]
    g = GnssModel.from_name("urban_canyon", 0).simulate(tr, 5.0, lambda e, n: np.where(n > 60.0, 0.0, 1.0))
    north_err = g.error_m[g.valid & (g.true_north_m > 60.0) & ~g.in_burst]
    south_err = g.error_m[g.valid & (g.true_north_m <= 60.0) & ~g.in_burst]
    assert np.median(north_err) > np.median(south_err)


def test_deterministic_in_seed(drives):
    a = GnssModel.from_name("urban_canyon", 3).simulate(drives[0], 5.0)
    b = GnssModel.from_name("urban_canyon", 3).simulate(drives[0], 5.0)
    c = GnssModel.from_name("urban_canyon", 4).simulate(drives[0], 5.0)
    assert np.array_equal(a.east_m, b.east_m, equal_nan=True)
    assert not np.array_equal(a.east_m, c.east_m, equal_nan=True)


def test_gnss_rate_sets_the_epochs(drives):
    g = GnssModel.from_name("open_sky", 0).simulate(drives[0], 10.0)
    assert len(g) == 3001 and g.t_s[-1] == pytest.approx(300.0)


def test_bad_input():
    with pytest.raises(InputError, match="unknown GNSS model"):
        GnssModel.from_name("indoor", 0)
    tr = simulate_drive(BLOCK, [], seed=0, duration_s=10.0)
    with pytest.raises(InputError):
        GnssModel.from_name("open_sky", 0).simulate(tr, 0.0)
    with pytest.raises(InputError):
        GnssModel.from_name("open_sky", 0).simulate(tr, 5.0, lambda e, n: np.full_like(e, math.nan))
    assert MODEL_NAMES == ("clean", "open_sky", "urban_canyon", "multipath")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last + 1) index pairs of the True runs of a bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2]))


def test_multipath_has_long_lying_bias_episodes_and_no_fix_gaps_at_turns(drives):
    from cvgl_ros.sim.trajectory import turn_times_s

    episodes = gaps = 0
    for seed, tr in enumerate(drives[:12]):
        mp = GnssModel.from_name("multipath", seed).simulate(tr, 5.0)
        uc = GnssModel.from_name("urban_canyon", seed).simulate(tr, 5.0)
        both = mp.valid & uc.valid
        # The same base errors as urban_canyon: the difference is the episodes' offset alone.
        offset = np.hypot(mp.east_m - uc.east_m, mp.north_m - uc.north_m)
        offset[~both] = np.nan
        active = ~(np.nan_to_num(offset, nan=1.0) < 1e-9)
        drive_episodes = 0
        for a, b in _runs(active):
            length_s = (b - a) / 5.0
            plateau = offset[a:b][np.isfinite(offset[a:b])]
            if a == 0 or b == len(mp) or plateau.size == 0 or (~both[a:b]).any():
                continue  # cut by the drive's ends or a NO_FIX: not measurable whole
            assert 5.0 - 0.2 <= length_s <= 30.0 + 0.2
            assert 20.0 - 1e-6 <= plateau.max() <= 60.0 + 1e-6
            # The covariance lies: the reported sigma stays a few metres while the fix is 20-60 m off.
            at_peak = np.nanargmax(offset[a:b]) + a
            assert mp.error_m[at_peak] > 3.0 * mp.reported_sigma_m[at_peak]
            drive_episodes += 1
        assert drive_episodes >= 1 or not both.all()
        episodes += drive_episodes
        # NO_FIX gaps that urban_canyon does not have: 3-30 s, each around one of the drive's turns.
        turns = turn_times_s(tr)
        for a, b in _runs(~mp.valid & uc.valid):
            if a == 0 or b == len(mp) or (~uc.valid[max(a - 1, 0):b + 1]).any():
                continue
            start_s, end_s = mp.t_s[a], mp.t_s[b - 1] + 0.2
            assert 3.0 - 0.2 <= end_s - start_s <= 30.0 + 0.2
            mid = 0.5 * (start_s + end_s)
            assert np.any((turns >= mid - 0.3) & (turns <= end_s + 0.3)), (start_s, end_s, turns)
            gaps += 1
    assert episodes >= 12 and gaps >= 12


def test_other_profiles_have_no_episodes_or_turn_gaps():
    from cvgl_ros.sim.gnss import PRESETS

    for name in ("clean", "open_sky", "urban_canyon"):
        assert PRESETS[name].episode_gap_s is None and PRESETS[name].turn_gap_probability == 0.0


def test_an_injected_offset_moves_the_fixes_of_its_window_only():
    from cvgl_ros.sim.gnss import GnssOffset, GnssTrack

    t = 100.0 + np.arange(10) * 1.0
    zeros = np.zeros(10)
    track = GnssTrack(t, zeros.copy(), zeros.copy(), np.zeros(10, int), np.full(10, 3.0), zeros, zeros,
                      np.zeros(10, bool))
    moved = GnssOffset(150.0, 90.0, 2.0, 5.0).apply(track)               # north, from 2 s to 5 s of the drive
    assert np.allclose(moved.north_m, [0, 0, 150, 150, 150, 0, 0, 0, 0, 0]) and np.allclose(moved.east_m, 0.0)
    assert np.allclose(moved.error_m[2:5], 150.0) and np.array_equal(moved.reported_sigma_m, track.reported_sigma_m)
    with pytest.raises(InputError, match="window"):
        GnssOffset(150.0, 0.0, 5.0, 5.0)
