"""The coarse stage's measurement model (seed 001 Eq. 5, `cvgl_ros.filter.measurements`) and
its use by the particle filter: interpolation, the circle, bad input, convergence."""
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.filter.measurements import GridScores, grid_log_factor
from cvgl_ros.filter.particle_filter import ParticleFilter, ParticleFilterConfig
from cvgl_ros.filter.resampling import systematic_resample

pytestmark = pytest.mark.core

TRUE = np.array([10.0, -5.0])       # the car (a grid cell)
GNSS = TRUE + [60.0, 0.0]            # 60 m off
SIGMA = 25.0                         # its 3-sigma circle (75 m) holds the car


def lattice(half_m=100.0, h=5.0):
    axis = np.arange(-half_m, half_m + h / 2, h)
    ee, nn = np.meshgrid(axis, axis)
    return np.column_stack([ee.ravel(), nn.ravel()])


def true_cell_grid(stamp_ns=0):
    """Scores e^{-d}: d grows with the distance from the true cell (0 there), 4 beyond 20 m."""
    pos = lattice()
    d = np.minimum(4.0, np.linalg.norm(pos - TRUE, axis=1) / 5.0)
    return GridScores(pos, np.exp(-d), stamp_ns)


def test_interpolation_is_exact_at_cell_centres_and_bilinear_between():
    rng = np.random.default_rng(0)
    pos = lattice(10.0, 5.0)                                # 5 x 5 cells
    grid = GridScores(pos, rng.uniform(0.1, 1.0, len(pos)))
    assert grid.spacing_m == 5.0
    assert np.allclose(grid.interpolate(pos[:, 0], pos[:, 1]), grid.scores)
    s = {tuple(p): v for p, v in zip(pos.tolist(), grid.scores)}
    u, v = 0.3, 0.8                                        # inside the cell (0, 0)-(5, 5)
    expected = ((1 - u) * (1 - v) * s[(0.0, 0.0)] + u * (1 - v) * s[(5.0, 0.0)]
                + (1 - u) * v * s[(0.0, 5.0)] + u * v * s[(5.0, 5.0)])
    assert grid.interpolate(np.array([5 * u]), np.array([5 * v]))[0] == pytest.approx(expected)
    mid = grid.interpolate(np.array([2.5]), np.array([-5.0]))[0]
    assert mid == pytest.approx(0.5 * (s[(0.0, -5.0)] + s[(5.0, -5.0)]))
    # a missing corner: the others' weights renormalized; no corner at all: NaN (the caller's 1/K)
    part = grid.within(0.0, 0.0, 5.0)                      # the centre and its 4 neighbours
    got = part.interpolate(np.array([1.0, 50.0]), np.array([0.0, 50.0]))
    assert got[0] == pytest.approx(0.8 * s[(0.0, 0.0)] + 0.2 * s[(5.0, 0.0)]) and np.isnan(got[1])


def test_particles_outside_the_circle_are_discarded_and_weights_are_eq5():
    grid = true_cell_grid()
    e = np.array([TRUE[0], GNSS[0], GNSS[0] + 80.0, TRUE[0] + 2.5])
    n = np.array([TRUE[1], GNSS[1], GNSS[1], TRUE[1]])
    f = grid_log_factor(grid, e, n, *GNSS, SIGMA)
    assert f.reason == "" and f.particles_inside == 3 and f.log_factor[2] == -np.inf
    local = grid.within(*GNSS, 3 * SIGMA)
    assert f.cells == len(local)
    expected0 = math.log(1.0 / local.scores.sum()) - 60.0**2 / (2 * SIGMA**2)
    assert f.log_factor[0] == pytest.approx(expected0)
    no_gnss = grid_log_factor(grid, e, n, *GNSS, SIGMA, gnss_term=False)
    assert no_gnss.log_factor[1] == pytest.approx(math.log(math.exp(-4.0) / local.scores.sum()))
    assert no_gnss.log_factor[3] == pytest.approx(math.log(0.5 * (1 + math.exp(-1.0)) / local.scores.sum()))


def test_an_empty_circle_or_no_particle_in_it_gives_a_reason_and_no_nan():
    grid = true_cell_grid()
    e, n = np.array([0.0, np.nan]), np.array([0.0, 0.0])
    far = grid_log_factor(grid, e, n, 5000.0, 0.0, SIGMA)
    assert far.log_factor is None and "no grid cell" in far.reason
    none_inside = grid_log_factor(grid, e + 500.0, n, 0.0, 0.0, 5.0)
    assert none_inside.log_factor is None and "no particle" in none_inside.reason
    ok = grid_log_factor(grid, e, n, 0.0, 0.0, SIGMA)
    assert not np.isnan(ok.log_factor).any() and ok.log_factor[1] == -np.inf   # a NaN particle: discarded
    bad = grid_log_factor(grid, e, n, math.nan, 0.0, SIGMA)
    assert bad.log_factor is None and "no circle" in bad.reason
    zero = GridScores(grid.positions_en_m, np.zeros(len(grid)))
    assert "score 0" in grid_log_factor(zero, e, n, 0.0, 0.0, SIGMA).reason
    for positions, scores, match in (([[0, 0], [5, 0]], [1.0, np.nan], "NaN"), ([[0, 0], [5, 0]], [1.0], "scores"),
                                     ([[0, 0], [5, 0]], [1.0, -1.0], ">= 0"),
                                     ([[0, 0], [0, 0]], [1.0, 1.0], "one position")):
        with pytest.raises(InputError, match=match):
            GridScores(np.array(positions, float), np.array(scores))
    with pytest.raises(InputError, match="lattice"):
        GridScores(np.array([[0, 0], [5, 0], [5, 3.7]], float), np.ones(3))


def test_a_cloud_over_100_m_with_gnss_60_m_off_converges_to_the_true_cell():
    """Eq. 5 as the paper applies it (both terms, every step), then resampling: the median goes
    to the true cell; with the scores flat it stays with GNSS (so the grid is what finds it)."""
    rng = np.random.default_rng(1)
    for flat in (False, True):
        grid = true_cell_grid()
        if flat:
            grid = GridScores(grid.positions_en_m, np.ones(len(grid)))
        p = TRUE + rng.uniform(-50.0, 50.0, (2000, 2)) + [30.0, 0.0]   # 100 m wide, between car and GNSS
        for _ in range(15):
            f = grid_log_factor(grid, p[:, 0], p[:, 1], *GNSS, SIGMA)
            w = np.exp(f.log_factor - f.log_factor.max())
            p = p[systematic_resample(w / w.sum(), rng)] + rng.normal(0.0, 1.0, p.shape)
        error = np.linalg.norm(np.median(p, axis=0) - TRUE)
        if flat:
            assert np.linalg.norm(np.median(p, axis=0) - GNSS) < 10.0
        else:
            assert error < 2.5, error          # within half a cell of the true cell


def _filter(**overrides):
    cfg = ParticleFilterConfig(num_particles=2000, init_speed_max_mps=0.0, accel_noise_mps2=0.05,
                               yaw_rate_noise_radps=0.05, position_noise_mps=0.5, **overrides)
    return ParticleFilter(cfg, seed=3)


def test_the_filter_fuses_grid_scores_beside_gnss_and_finds_the_car():
    pf = _filter()
    t = 100.0
    for k in range(40):
        pf.add_gnss(t + 0.2 * k, *GNSS, SIGMA)
        assert pf.add_retrieval(t + 0.2 * k + 0.1, true_cell_grid(int((t + 0.2 * k + 0.1) * 1e9)))
    est = pf.estimate()
    assert math.hypot(est.east_m - TRUE[0], est.north_m - TRUE[1]) < 5.0
    d = pf.diagnostics
    assert d["retrieval_applied"] == 40 and "cells" in d["last_retrieval_reason"]
    assert np.all(np.isfinite(pf.weights))


def test_the_filter_keeps_its_weights_when_the_grid_cannot_weigh():
    pf = _filter()
    assert not pf.add_retrieval(1.0, true_cell_grid())            # before initialization
    assert pf.diagnostics["last_retrieval_reason"] == "no estimate yet"
    pf.add_gnss(1.0, 5000.0, 0.0, 5.0)                            # far from every cell
    before = pf.weights.copy()
    assert not pf.add_retrieval(1.1, true_cell_grid())
    assert np.array_equal(before, pf.weights) and "no grid cell" in pf.diagnostics["last_retrieval_reason"]
    assert pf.diagnostics["retrieval_not_applied"] == 1
    assert not pf.add_retrieval(1.1, true_cell_grid())            # same stamp again
    assert pf.diagnostics["retrieval_duplicates"] == 1
    with pytest.raises(InputError, match="GridScores"):
        pf.add_retrieval(1.2, "scores")


def test_after_a_rejected_fix_the_circle_is_centred_on_the_estimate():
    pf = _filter(outlier_warmup_s=0.0)
    pf.add_gnss(1.0, *TRUE, 2.0)
    pf.add_gnss(1.1, *TRUE, 2.0)
    decision = pf.add_gnss(1.2, TRUE[0] + 300.0, TRUE[1], 2.0)   # a jump: rejected
    assert decision.rejected
    # the grid around the estimate (the fix 300 m away has none): weighed, not "no grid cell"
    assert pf.add_retrieval(1.3, true_cell_grid())
