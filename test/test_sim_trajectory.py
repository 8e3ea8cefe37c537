"""The simulated vehicle: speed profile, stops, curves, sampling and yaw unwrapping."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cvgl_ros.errors import InputError
from cvgl_ros.sim.trajectory import Trajectory, simulate_drive

# A 200 m x 120 m city block driven counter-clockwise, intersections at the corners.
BLOCK = np.array([[0, 0], [200, 0], [200, 120], [0, 120], [0, 0]], dtype=float)
CORNERS_S = [200.0, 320.0, 520.0]


def _distance_to_polyline(e, n, pts):
    p = np.column_stack([e, n])[:, None, :]
    a, b = pts[:-1][None], pts[1:][None]
    ab = b - a
    u = np.clip(np.sum((p - a) * ab, axis=2) / np.sum(ab * ab, axis=2), 0, 1)
    closest = a + u[..., None] * ab
    return np.min(np.linalg.norm(p - closest, axis=2), axis=1)


def test_block_loop_speed_profile_is_physical():
    tr = simulate_drive(BLOCK, CORNERS_S, seed=3, duration_s=300.0, rate_hz=100.0)
    assert len(tr) == 30001 and tr.t_s[0] == 0.0 and tr.t_s[-1] == pytest.approx(300.0)
    assert np.all(np.diff(tr.t_s) > 0)
    assert tr.speed_mps[0] == 0.0
    assert tr.speed_mps.min() >= 0.0 and tr.speed_mps.max() <= 15.0
    accel = np.diff(tr.speed_mps) / np.diff(tr.t_s)
    assert accel.max() <= 2.5 + 1e-6 and accel.min() >= -3.0 - 1e-6
    assert tr.speed_mps.max() > 9.0  # it does get going on the 200 m straights
    # Position derivative agrees with the reported speed; distance never decreases.
    v_pos = np.hypot(np.diff(tr.east_m), np.diff(tr.north_m)) / np.diff(tr.t_s)
    v_mid = 0.5 * (tr.speed_mps[1:] + tr.speed_mps[:-1])
    assert np.max(np.abs(v_pos - v_mid)) < 0.05
    assert np.all(np.diff(tr.distance_m) >= 0)
    # The car stays on the road (corners are cut by a few metres at most).
    assert _distance_to_polyline(tr.east_m, tr.north_m, BLOCK).max() < 3.0
    # Lateral acceleration stays near the 2 m/s^2 comfort limit in the corners.
    assert np.abs(tr.speed_mps * tr.yaw_rate_radps).max() < 3.0
    # Several laps: the 640 m loop is driven more than twice in 300 s.
    assert tr.distance_m[-1] > 1280.0


def test_brakes_for_corners():
    tr = simulate_drive(BLOCK, [], seed=0, duration_s=200.0)
    near = lambda x, y: np.hypot(tr.east_m - x, tr.north_m - y)  # noqa: E731
    at_corner = tr.speed_mps[near(200, 0) < 2.0]
    mid_straight = tr.speed_mps[near(100, 120) < 2.0]
    assert at_corner.size and mid_straight.size
    assert at_corner.max() < 5.0 < mid_straight.min()


def test_stops_at_intersections_when_told_to():
    tr = simulate_drive(BLOCK, CORNERS_S, seed=5, duration_s=300.0, stop_probability=1.0, stop_dwell_s=(3.0, 4.0))
    stopped = np.concatenate([[0], (tr.speed_mps < 1e-9).astype(int), [0]])
    # Runs of standstill [a, b) after the start, each 3-4 s long, at an intersection.
    starts, ends = np.flatnonzero(np.diff(stopped) == 1), np.flatnonzero(np.diff(stopped) == -1)
    runs = [(a, b - 1) for a, b in zip(starts, ends) if a > 0 and b < len(tr)]
    assert len(runs) >= 3
    for a, b in runs:
        assert 2.9 <= tr.t_s[b] - tr.t_s[a] <= 4.1
        e, n = tr.east_m[a], tr.north_m[a]
        assert min(np.hypot(e - ce, n - cn) for ce, cn in [(200, 0), (200, 120), (0, 120)]) < 3.0


def test_never_stops_without_intersections_on_a_loop():
    tr = simulate_drive(BLOCK, [], seed=1, duration_s=120.0)
    assert np.all(tr.speed_mps[tr.t_s > 5.0] > 0.5)


def test_open_route_parks_at_its_end():
    tr = simulate_drive([[0, 0], [100, 0], [100, 100]], [100.0], seed=1, duration_s=120.0)
    assert tr.east_m[-1] == pytest.approx(100.0) and tr.north_m[-1] == pytest.approx(100.0)
    assert tr.speed_mps[-1] == 0.0
    assert tr.yaw_enu_rad[-1] == pytest.approx(math.pi / 2, abs=1e-3)


def test_deterministic_in_seed():
    a = simulate_drive(BLOCK, CORNERS_S, seed=7, duration_s=60.0)
    b = simulate_drive(BLOCK, CORNERS_S, seed=7, duration_s=60.0)
    c = simulate_drive(BLOCK, CORNERS_S, seed=8, duration_s=60.0)
    assert np.array_equal(a.east_m, b.east_m) and np.array_equal(a.speed_mps, b.speed_mps)
    assert not np.array_equal(a.speed_mps, c.speed_mps)


def test_yaw_follows_the_road_direction():
    tr = simulate_drive(BLOCK, [], seed=2, duration_s=150.0)
    on_south_edge = (np.abs(tr.north_m) < 0.1) & (tr.east_m > 20) & (tr.east_m < 180)
    on_north_edge = (np.abs(tr.north_m - 120) < 0.1) & (tr.east_m > 20) & (tr.east_m < 180)
    assert np.allclose(tr.yaw_enu_rad[on_south_edge], 0.0, atol=1e-3)
    assert np.allclose(np.abs(tr.yaw_enu_rad[on_north_edge]), math.pi, atol=1e-3)  # driving west


def test_sample_interpolates_yaw_through_pi():
    t = np.array([0.0, 1.0])
    tr = Trajectory(t_s=t, east_m=np.array([0.0, -1.0]), north_m=np.zeros(2),
                    yaw_enu_rad=np.array([math.pi - 0.1, -math.pi + 0.1]), speed_mps=np.ones(2),
                    yaw_rate_radps=np.full(2, 0.2), distance_m=np.array([0.0, 1.0]))
    mid = tr.sample([0.5])
    assert abs(abs(mid.yaw_enu_rad[0]) - math.pi) < 1e-9  # not 0: it turned by 0.2 rad, not 2*pi - 0.2
    assert mid.east_m[0] == pytest.approx(-0.5)
    q = tr.sample([0.25])
    assert q.yaw_enu_rad[0] == pytest.approx(math.pi - 0.05)
    with pytest.raises(InputError):
        tr.sample([1.5])


def test_sample_matches_the_dense_grid():
    tr = simulate_drive(BLOCK, CORNERS_S, seed=4, duration_s=60.0, rate_hz=100.0)
    s = tr.sample(tr.t_s[::10])
    assert np.allclose(s.east_m, tr.east_m[::10]) and np.allclose(s.yaw_enu_rad, tr.yaw_enu_rad[::10])


@pytest.mark.parametrize("points, kwargs", [
    ([[0, 0]], {}),
    ([[0, 0], [0, 0]], {}),
    ([[0, 0], [np.nan, 1]], {}),
    (np.zeros((3, 3)), {}),
    (BLOCK, {"duration_s": -1.0}),
    (BLOCK, {"rate_hz": 0.0}),
    (BLOCK, {"stop_probability": 1.5}),
])
def test_bad_input_is_an_input_error(points, kwargs):
    with pytest.raises(InputError):
        simulate_drive(points, [], **({"seed": 0, "duration_s": 10.0} | kwargs))


@settings(max_examples=25, deadline=None)
@given(
    pts=st.lists(st.tuples(st.floats(-300, 300), st.floats(-300, 300)), min_size=2, max_size=8),
    seed=st.integers(0, 2**31),
    vmax=st.floats(3.0, 15.0),
    stops=st.lists(st.floats(0.0, 800.0), max_size=5),
)
def test_any_polyline_gives_a_bounded_monotonic_drive(pts, seed, vmax, stops):
    pts = np.asarray(pts)
    if np.sum(np.hypot(*np.diff(pts, axis=0).T)) < 1.0:
        return  # too short to be a route
    tr = simulate_drive(pts, stops, seed=seed, duration_s=30.0, rate_hz=20.0, max_speed_mps=vmax)
    assert len(tr) == 601
    assert np.all(np.isfinite(tr.east_m)) and np.all(np.isfinite(tr.yaw_enu_rad)) and np.all(np.isfinite(tr.speed_mps))
    assert tr.speed_mps.min() >= 0.0 and tr.speed_mps.max() <= vmax + 1e-9
    accel = np.diff(tr.speed_mps) / np.diff(tr.t_s)
    assert accel.max() <= 2.5 + 1e-6 and accel.min() >= -3.0 - 1e-6
    assert np.all(np.diff(tr.distance_m) >= -1e-9)
    assert np.all(tr.yaw_enu_rad >= -math.pi) and np.all(tr.yaw_enu_rad < math.pi)


def test_turn_times_are_the_corners_not_the_gentle_bends():
    from cvgl_ros.sim.trajectory import turn_times_s

    loop = np.array([[0, 0], [200, 0], [200, 120], [0, 120], [0, 0]], dtype=float)
    tr = simulate_drive(loop, [], seed=0, duration_s=200.0, rate_hz=20.0)
    turns = turn_times_s(tr)
    # The loop is driven round and round: one turn per pass of a corner (the start's too), there.
    near = np.min(np.hypot(tr.east_m[:, None] - loop[None, :4, 0], tr.north_m[:, None] - loop[None, :4, 1]), axis=1)
    passes = np.count_nonzero(np.diff(np.concatenate([[0], (near < 8.0).astype(int)])) == 1)
    assert len(turns) == passes >= 12
    at = tr.sample(turns)
    assert np.all(np.min(np.hypot(at.east_m[:, None] - loop[None, :4, 0], at.north_m[:, None] - loop[None, :4, 1]),
                         axis=1) < 8.0)
    # 60 degrees spread over a 600 m arc: a bend, not a turn.
    arc = np.radians(np.linspace(0.0, 60.0, 200))
    bend = np.column_stack([573.0 * np.sin(arc), 573.0 * (1.0 - np.cos(arc))])
    assert turn_times_s(simulate_drive(bend, [], seed=0, duration_s=60.0, rate_hz=20.0)).size == 0
    assert turn_times_s(simulate_drive([[0, 0], [900, 0]], [], seed=0, duration_s=60.0)).size == 0
