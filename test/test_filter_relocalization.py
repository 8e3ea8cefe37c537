"""The relocalizer (`cvgl_ros.filter.relocalization`) in the particle filter: GNSS 150 m off
with a small reported sigma, a dense network that sees the car only where it is (never at the
estimate GNSS made), and retrieval scores that peak at the car: the filter re-seeds at the car
after the search and cross-view keeps it there; with flat scores it never moves, and a peak at
the estimate keeps the particles."""
import math

import numpy as np
import pytest

from cvgl_ros.filter.measurements import GridScores
from cvgl_ros.filter.particle_filter import ParticleFilter, ParticleFilterConfig
from cvgl_ros.filter.relocalization import Relocalizer
from cvgl_ros.likelihood import LikelihoodVolume

pytestmark = pytest.mark.core

SPEED = 10.0
OFFSET = np.array([0.0, 150.0])        # GNSS 150 m north of the car
YAWS = -math.pi + np.arange(36) * (2 * math.pi / 36)


def truth(t):
    return np.array([SPEED * t, 0.0])


def scores_around(centre, car, radius=210.0, flat=False, h=5.0):
    """The coarse stage's cells within `radius` of `centre` (the node's circle), e^{-d} with d
    growing with the distance from the car (flat: no information)."""
    axis = np.arange(-radius, radius + h / 2, h)
    ee, nn = np.meshgrid(axis + round(centre[0] / h) * h, axis + round(centre[1] / h) * h)
    pos = np.column_stack([ee.ravel(), nn.ravel()])
    pos = pos[np.linalg.norm(pos - centre, axis=1) <= radius]
    d = np.zeros(len(pos)) if flat else np.minimum(3.0, np.linalg.norm(pos - car, axis=1) / 6.0)
    return GridScores(pos, np.exp(-d), spacing_m=h)


def volume_around(centre, car, size=60, cell_m=0.6):
    """The dense network's volume on the patch around `centre`: a peak at the car (yaw 0, east)
    when the patch holds it, flat otherwise (it sees nothing it knows)."""
    cols = (np.arange(size) - (size - 1) / 2) * cell_m
    east, north = centre[0] + cols, centre[1] - cols
    ll = np.broadcast_to((-0.5 * ((north[:, None] - car[1]) ** 2 + (east[None, :] - car[0]) ** 2))[None],
                         (len(YAWS), size, size)) - 0.5 * ((YAWS / 0.1) ** 2)[:, None, None]
    return LikelihoodVolume(np.maximum(ll, -30.0).astype(np.float32), float(centre[0]), float(centre[1]), cell_m, YAWS)


def drive(pf, start, end, flat=False, offset=OFFSET, dense_sees_car=True):
    """GNSS at 5 Hz (offset, sigma 3 m), the cross-view volume and a retrieval frame at 5 Hz."""
    for k in range(int(round(start * 5)), int(round(end * 5))):
        t = 0.2 * k
        pf.add_gnss(t, *(truth(t) + offset), 3.0)
        est = pf.estimate(t + 0.1)
        here = np.array([est.east_m, est.north_m])
        car = truth(t + 0.1) if dense_sees_car else here + 1000.0
        pf.add_cross_view(t + 0.1, volume_around(here, car))
        pf.add_retrieval(t + 0.1, scores_around(here, truth(t + 0.1), flat=flat))
    return pf.estimate(end)


def _filter():
    return ParticleFilter(ParticleFilterConfig(num_particles=1000, init_speed_max_mps=12.0), seed=2)


def test_a_lost_filter_searches_and_reseeds_at_the_car():
    pf = _filter()
    est = drive(pf, 0.0, 1.2)
    assert math.hypot(*(np.array([est.east_m, est.north_m]) - truth(1.2) - OFFSET)) < 10.0   # with GNSS
    d = pf.diagnostics                                                 # searching, but not lost yet: 1.5 s
    assert d["relocalizer_searches"] == 1 and d["relocalizations"] == 0
    est = drive(pf, 1.2, 8.0)
    d = pf.diagnostics
    assert d["relocalizer_searches"] >= 1 and d["relocalizations"] >= 1, d["last_relocalizer_reason"]
    error = math.hypot(est.east_m - truth(8.0)[0], est.north_m - truth(8.0)[1])
    assert error < 8.0, (error, d["last_relocalizer_reason"])
    # the fixes that lost it stay rejected while cross-view confirms the car: no timed re-lock
    # after relock_after_confirmed_s (30 s), only after relocalized_relock_after_s (120 s)
    est = drive(pf, 8.0, 45.0)
    assert pf.diagnostics["relocks"] == 0 and pf.diagnostics["integrity_relocks"] == 0
    assert math.hypot(est.east_m - truth(45.0)[0], est.north_m - truth(45.0)[1]) < 8.0


def test_after_a_relocalization_the_fixes_that_lost_the_filter_stay_out_while_cross_view_is_silent():
    """A re-seed off the tile cache: no dense volume for a while. The 150 m-off fixes, smooth and
    suspicious, must not pull the particles back (before, with no cross-view holding the
    estimate, they were used, and the empty circle re-seeded the filter around them)."""
    pf = _filter()
    drive(pf, 0.0, 8.0)
    assert pf.diagnostics["relocalizations"] >= 1
    for k in range(40, 80):                                          # 8 s of GNSS alone
        t = 0.2 * k
        assert not pf.add_gnss(t, *(truth(t) + OFFSET), 3.0).used
    est = pf.estimate(16.0)
    assert pf.diagnostics["reseeds"] == 0 and pf.diagnostics["relocks"] == 0
    assert math.hypot(est.east_m - truth(16.0)[0], est.north_m - truth(16.0)[1]) < 45.0   # dead reckoning, not GNSS


def test_flat_scores_never_move_the_filter_and_widen_its_covariance_while_searching():
    pf = _filter()
    est = drive(pf, 0.0, 8.0, flat=True)
    assert pf.diagnostics["relocalizations"] == 0 and pf.diagnostics["relocalizer_searches"] == 1
    assert math.hypot(*(np.array([est.east_m, est.north_m]) - truth(8.0) - OFFSET)) < 10.0
    assert math.sqrt(est.covariance_3x3[0, 0]) >= 200.0 / 3 - 1e-6           # lost: the search radius shows


def test_a_peak_at_the_estimate_keeps_the_particles():
    pf = _filter()
    est = drive(pf, 0.0, 8.0, offset=np.zeros(2), dense_sees_car=False)   # GNSS right, cross-view weak: "lost"
    assert pf.diagnostics["relocalizations"] == 0 and "kept" in pf.diagnostics["last_relocalizer_reason"]
    assert math.hypot(est.east_m - truth(8.0)[0], est.north_m - truth(8.0)[1]) < 5.0


def test_the_accumulator_moves_its_hypotheses_with_the_vehicle():
    r = Relocalizer(radius_m=50.0, peak_m=6.0, min_frames=3, min_mass=0.8)
    r.start(0.0, 0.0, 0.0, 5.0)
    for k in range(6):                 # the car is at (20 + 5 k, 10): 5 m/s east, a frame a second
        car = np.array([20.0 + 5 * k, 10.0])
        r.update(scores_around(np.zeros(2), car, radius=80.0), float(k), (5.0, 0.0))
    decision = r.decision()
    assert decision.found and math.hypot(decision.position_en_m[0] - 45.0, decision.position_en_m[1] - 10.0) <= 5.0
    r.stop()
    assert not r.decision().found and r.decision().reason == "not searching"


def test_tempered_scores_are_powers_of_the_scores_and_zero_stays_zero():
    grid = GridScores(np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0]]), np.exp([-1.0, -2.0, -4.0]), spacing_m=5.0)
    sharp = grid.tempered(0.5)
    assert np.allclose(sharp.scores, np.exp([0.0, -2.0, -6.0]))
    assert np.allclose(grid.tempered(1.0).scores, grid.scores * math.e)   # T = 1: the ratios as they were
    flat = GridScores(grid.positions_en_m, np.zeros(3), spacing_m=5.0).tempered(0.25)
    assert np.all(flat.scores == 0.0)


def _frames_to_a_fix(temperature):
    r = Relocalizer(radius_m=50.0, peak_m=6.0, min_frames=1, min_mass=0.8, temperature=temperature)
    r.start(0.0, 0.0, 0.0, 5.0)
    for k in range(40):                # weak evidence: d grows by 0.05 a metre from the car, at most 0.9
        car = np.array([20.0 + 5 * k, 10.0])
        grid = scores_around(np.array([5.0 * k, 0.0]), car, radius=80.0)
        grid = GridScores(grid.positions_en_m, grid.scores ** 0.3, spacing_m=5.0)
        r.update(grid, float(k), (5.0, 0.0))
        if r.decision().found:
            return k + 1, r.decision()
    return None, r.decision()


def test_a_lower_temperature_reaches_the_same_fix_in_fewer_frames():
    slow, at_one = _frames_to_a_fix(1.0)
    fast, sharper = _frames_to_a_fix(0.5)
    assert slow is not None and fast is not None and fast < slow
    for decision, k in ((at_one, slow), (sharper, fast)):
        assert math.hypot(decision.position_en_m[0] - (20.0 + 5 * (k - 1)), decision.position_en_m[1] - 10.0) <= 5.0
    with pytest.raises(ValueError):
        Relocalizer(radius_m=50.0, peak_m=6.0, min_frames=1, min_mass=0.8, temperature=0.0)


def volume_with_a_hole(centre, size=60, cell_m=0.6, hole_m=15.0):
    """A volume that contradicts an estimate at `centre`: low within hole_m of it, flat elsewhere."""
    cols = (np.arange(size) - (size - 1) / 2) * cell_m
    east, north = centre[0] + cols, centre[1] - cols
    d2 = (north[:, None] - centre[1]) ** 2 + (east[None, :] - centre[0]) ** 2
    ll = np.where(d2 <= hole_m ** 2, -20.0, 0.0)
    return LikelihoodVolume(np.broadcast_to(ll[None], (len(YAWS), size, size)).astype(np.float32),
                            float(centre[0]), float(centre[1]), cell_m, YAWS)


def _confirmed_at_the_wrong_place_then(later):
    """GNSS 150 m off; the dense network first confirms the GNSS estimate (an aliased place),
    then, from 4 s, `later(here)` gives its volume; the retrieval scores peak at the car."""
    pf = _filter()
    for k in range(0, 100):
        t = 0.2 * k
        pf.add_gnss(t, *(truth(t) + OFFSET), 3.0)
        est = pf.estimate(t + 0.1)
        here = np.array([est.east_m, est.north_m])
        pf.add_cross_view(t + 0.1, volume_around(here, here) if t < 4.0 else later(here))
        pf.add_retrieval(t + 0.1, scores_around(here, truth(t + 0.1)))
        if k == 19:
            assert pf.diagnostics["estimate_verified"]       # the wrong place is confirmed
    return pf, pf.estimate(20.0)


def test_a_confirmation_cross_view_contradicts_for_seconds_is_withdrawn_and_the_search_finds_the_car():
    pf, est = _confirmed_at_the_wrong_place_then(volume_with_a_hole)
    assert pf.diagnostics["confirmations_withdrawn"] == 1 and pf.diagnostics["relocalizations"] >= 1
    assert math.hypot(est.east_m - truth(20.0)[0], est.north_m - truth(20.0)[1]) < 5.0


def test_a_confirmation_weak_cross_view_does_not_contradict_is_kept():
    far = lambda here: volume_around(here, here + 1000.0)   # noqa: E731 - sees nothing it knows: flat
    pf, est = _confirmed_at_the_wrong_place_then(far)
    assert pf.diagnostics["confirmations_withdrawn"] == 0 and pf.diagnostics["estimate_verified"]
    assert pf.diagnostics["relocalizations"] == 0
