"""A vehicle driving along a polyline with a realistic speed profile (simulated ground truth).

`simulate_drive(points_en, stop_s, seed, duration_s)` turns a route (ENU metres, e.g.
`World.route(...)` or any polyline) into a `Trajectory` sampled at `rate_hz`:

1. The polyline is resampled every `STEP_M` metres and its corners are rounded by a
   Gaussian smoothing of `corner_smoothing_m` (a car cuts a 90-degree corner on an arc of a
   few metres' radius; the rounded path is what the vehicle drives, and so the ground truth).
2. A speed limit along the arc length s: a cruise speed per stretch between intersections
   (drawn in [`cruise_fraction`] x `max_speed_mps`), the lateral-acceleration limit in
   curves, v <= sqrt(`max_lat_accel_mps2` / |curvature|), and at each intersection of
   `stop_s` either a full stop (probability `stop_probability`, dwelling a random
   `stop_dwell_s` seconds) or a slow-down to a random `yield_speed_mps`.
3. Forward pass: acceleration <= `max_accel_mps2` from rest; backward pass: braking
   <= `max_decel_mps2`, so the car brakes *before* curves and stops.
4. Time along the path from ds / v (trapezoid), dwell times inserted at stops, then sampled
   on a uniform clock 0, 1/rate_hz, ..., duration_s.

A closed route (first and last points within `CLOSED_TOL_M`, or `closed=True`) is driven
round and round; on an open route the car stops at its end and waits there. Speeds stay in
[0, max_speed_mps]. Yaw is REP-103 (counter-clockwise from east), wrapped to [-pi, pi);
`Trajectory.sample` interpolates it on the unwrapped angle, so it never spins the long way
round through +-pi.

`turn_times_s(trajectory)` finds where the car turns (at an intersection, or round at a
dead end): the instants where the heading changes by at least `min_turn_deg` (45 deg) within
`window_s` (8 s) centred on them form runs; each run is one turn, timed at its peak
|yaw rate|. A gentle bend of a country road (45 deg in more than 8 s) is not a turn. The
fleet benchmark's routes are checked with it (a turn at least every 30 s) and the
`multipath` GNSS profile places its NO_FIX gaps at these turns.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import wrap_angle

STEP_M = 0.5  # arc-length resolution of the speed profile
CLOSED_TOL_M = 1.0
_MIN_SPEED_MPS = 0.05  # below this the trapezoid time step is bounded (only near a stop)


@dataclass(frozen=True)
class Trajectory:
    """Ground-truth vehicle states on a time grid (ENU `map` frame, seconds of simulated time)."""

    t_s: np.ndarray
    east_m: np.ndarray
    north_m: np.ndarray
    yaw_enu_rad: np.ndarray
    speed_mps: np.ndarray
    yaw_rate_radps: np.ndarray
    distance_m: np.ndarray  # arc length driven since t_s[0]

    def __len__(self) -> int:
        return len(self.t_s)

    @property
    def duration_s(self) -> float:
        return float(self.t_s[-1] - self.t_s[0])

    def mounted(self, x_m: float, y_m: float) -> "Trajectory":
        """Where a sensor mounted at (x, y) in base_link (REP-103: x forward, y left) goes:
        p + R(yaw) (x, y) at every state (yaw, speed and the rest as base_link's)."""
        if x_m == 0.0 and y_m == 0.0:
            return self
        c, s = np.cos(self.yaw_enu_rad), np.sin(self.yaw_enu_rad)
        return dataclasses.replace(self, east_m=self.east_m + c * x_m - s * y_m, north_m=self.north_m + s * x_m + c * y_m)

    def sample(self, times_s) -> "Trajectory":
        """States at arbitrary times in [t_s[0], t_s[-1]], linearly interpolated (yaw unwrapped)."""
        t = np.atleast_1d(np.asarray(times_s, dtype=float))
        if t.size and (not np.all(np.isfinite(t)) or t.min() < self.t_s[0] - 1e-9 or t.max() > self.t_s[-1] + 1e-9):
            raise InputError(
                f"sample times must lie in the trajectory's [{self.t_s[0]:g}, {self.t_s[-1]:g}] s"
            )
        yaw = np.interp(t, self.t_s, np.unwrap(self.yaw_enu_rad))
        return Trajectory(
            t_s=t,
            east_m=np.interp(t, self.t_s, self.east_m),
            north_m=np.interp(t, self.t_s, self.north_m),
            yaw_enu_rad=wrap_angle(yaw),
            speed_mps=np.interp(t, self.t_s, self.speed_mps),
            yaw_rate_radps=np.interp(t, self.t_s, self.yaw_rate_radps),
            distance_m=np.interp(t, self.t_s, self.distance_m),
        )


def turn_times_s(trajectory: Trajectory, min_turn_deg: float = 45.0, window_s: float = 8.0) -> np.ndarray:
    """Times (s) of the turns of a drive (see the module docstring), in increasing order."""
    t = np.asarray(trajectory.t_s, dtype=float)
    if len(t) < 3 or trajectory.duration_s <= 0:
        return np.zeros(0)
    dt = trajectory.duration_s / (len(t) - 1)
    half = max(1, int(round(0.5 * window_s / dt)))
    yaw = np.unwrap(trajectory.yaw_enu_rad)
    ahead = yaw[np.minimum(np.arange(len(t)) + half, len(t) - 1)]
    behind = yaw[np.maximum(np.arange(len(t)) - half, 0)]
    turning = np.abs(ahead - behind) >= math.radians(min_turn_deg)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], turning.astype(np.int8), [0]])))
    rate = np.abs(np.asarray(trajectory.yaw_rate_radps, dtype=float))
    return np.array([t[a + int(np.argmax(rate[a:b]))] for a, b in zip(edges[::2], edges[1::2])], dtype=float)


def _check_polyline(points_en) -> np.ndarray:
    try:
        pts = np.asarray(points_en, dtype=float)
    except (TypeError, ValueError):
        raise InputError("route points must be an (N, 2) array of east, north metres") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise InputError(f"route points must be an (N>=2, 2) array of east, north metres, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise InputError("route points must be finite")
    # Drop repeated points (zero-length segments have no direction).
    keep = np.concatenate([[True], np.hypot(*np.diff(pts, axis=0).T) > 1e-6])
    pts = pts[keep]
    if len(pts) < 2:
        raise InputError("route has zero length")
    return pts


def _resample(pts: np.ndarray, step_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every `step_m` along a polyline, and their arc lengths."""
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s_vertices = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(math.ceil(s_vertices[-1] / step_m)) + 1)
    s = np.linspace(0.0, s_vertices[-1], n)
    return np.column_stack([np.interp(s, s_vertices, pts[:, 0]), np.interp(s, s_vertices, pts[:, 1])]), s


def _smooth_path(xy: np.ndarray, sigma_m: float, step_m: float, closed: bool) -> np.ndarray:
    if sigma_m <= 0:
        return xy
    sigma = sigma_m / step_m
    if closed:
        ring = gaussian_filter1d(xy[:-1], sigma, axis=0, mode="wrap")
        return np.vstack([ring, ring[:1]])
    # Open path: keep both end points where they are (mirror about them keeps ends fixed).
    head = 2 * xy[0] - xy[1:][::-1]
    tail = 2 * xy[-1] - xy[:-1][::-1]
    padded = np.concatenate([head, xy, tail])
    out = gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[len(xy) - 1: 2 * len(xy) - 1]
    return out


def _arc_length(xy: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])


def _heading_and_curvature(xy: np.ndarray, s: np.ndarray, closed: bool) -> tuple[np.ndarray, np.ndarray]:
    if not closed:
        d = np.gradient(xy, s, axis=0)
    else:
        ring = xy[:-1]
        nxt, prv = np.roll(ring, -1, axis=0), np.roll(ring, 1, axis=0)
        ds = np.diff(s)
        ds_ring = ds + np.roll(ds, 1)
        d = (nxt - prv) / ds_ring[:, None]
        d = np.vstack([d, d[:1]])
    heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    if closed:
        dh = np.diff(heading)
        dh = np.append(dh, dh[0])
        ds = np.diff(s)
        ds = np.append(ds, ds[0])
        k = dh / np.maximum(ds, 1e-9)
        curvature = 0.5 * (k + np.roll(k, 1))
    else:
        curvature = np.gradient(heading, s)
    return heading, curvature


def simulate_drive(
    points_en,
    stop_s=(),
    seed: int = 0,
    duration_s: float = 300.0,
    rate_hz: float = 100.0,
    max_speed_mps: float = 15.0,
    *,
    max_accel_mps2: float = 2.5,
    max_decel_mps2: float = 3.0,
    max_lat_accel_mps2: float = 2.0,
    stop_probability: float = 0.5,
    stop_dwell_s: tuple[float, float] = (2.0, 8.0),
    yield_speed_mps: tuple[float, float] = (3.0, 7.0),
    cruise_fraction: tuple[float, float] = (0.7, 1.0),
    corner_smoothing_m: float = 3.0,
    closed: bool | None = None,
) -> Trajectory:
    """Drive a polyline for `duration_s` seconds; see the module docstring for the model.

    `points_en`: (N, 2) east, north metres. `stop_s`: arc lengths (metres along the input
    polyline) of intersections where the car may stop or slow down. Deterministic in `seed`.
    """
    pts = _check_polyline(points_en)
    _check_limits(duration_s=duration_s, rate_hz=rate_hz, max_speed_mps=max_speed_mps, max_accel_mps2=max_accel_mps2,
                  max_decel_mps2=max_decel_mps2, max_lat_accel_mps2=max_lat_accel_mps2)
    if not 0.0 <= stop_probability <= 1.0:
        raise InputError(f"stop_probability must be in [0, 1], got {stop_probability}")
    stops = np.sort(np.asarray(list(stop_s), dtype=float).reshape(-1))
    if not np.all(np.isfinite(stops)):
        raise InputError("stop_s must be finite arc lengths in metres")
    rng = np.random.default_rng(seed)

    if closed is None:
        closed = bool(np.hypot(*(pts[-1] - pts[0])) <= CLOSED_TOL_M)
    pts, stops = _laps(pts, stops, closed, duration_s * max_speed_mps)
    path = _rounded_path(pts, stops, corner_smoothing_m, closed)                       # 1.
    vlim, dwell_at = _speed_limit(path, rng, closed, max_speed_mps, max_lat_accel_mps2, cruise_fraction,
                                  stop_probability, stop_dwell_s, yield_speed_mps)      # 2.
    v = _accel_limited(vlim, path.s, max_accel_mps2, max_decel_mps2, max_speed_mps)      # 3.
    return _sampled(path, v, dwell_at, duration_s, rate_hz)                               # 4.


def _check_limits(**limits) -> None:
    for name, value in limits.items():
        if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a finite number > 0, got {value!r}")


def _laps(pts: np.ndarray, stops: np.ndarray, closed: bool, drive_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The route to drive and its stops (arc lengths on it): a closed route is closed, and
    repeated until it is long enough for `drive_m`; stops beyond the route are dropped."""
    if closed and np.hypot(*(pts[-1] - pts[0])) > 1e-6:
        pts = np.vstack([pts, pts[:1]])
    route_len = float(_arc_length(pts)[-1])
    stops = stops[(stops >= 0) & (stops <= route_len)]
    if closed:
        laps = max(1, int(math.ceil(drive_m / route_len)) + 1)
        pts = np.vstack([pts] + [pts[1:]] * (laps - 1))
        stops = np.concatenate([stops + i * route_len for i in range(laps)])
        stops = stops[stops > 1e-6]  # never a stop at the start, the car starts there anyway
    return pts, stops


@dataclass(frozen=True)
class _Path:
    """The rounded path the car drives: points every ~STEP_M, their arc length, heading and
    (smoothed) curvature, and the stops' arc lengths on it."""

    xy: np.ndarray
    s: np.ndarray
    heading: np.ndarray
    curvature: np.ndarray
    stops: np.ndarray


def _rounded_path(pts: np.ndarray, stops: np.ndarray, corner_smoothing_m: float, closed: bool) -> _Path:
    """Step 1 of the module docstring: resampled, corners rounded."""
    xy_raw, s_raw = _resample(pts, STEP_M)
    xy = _smooth_path(xy_raw, corner_smoothing_m, s_raw[1] - s_raw[0], closed)
    s = _arc_length(xy)
    heading, curvature = _heading_and_curvature(xy, s, closed)
    curvature = gaussian_filter1d(curvature, 1.0 / STEP_M, mode="nearest")
    return _Path(xy, s, heading, curvature, np.interp(stops, s_raw, s))  # stop positions on the rounded path


def _speed_limit(path: _Path, rng, closed: bool, max_speed_mps: float, max_lat_accel_mps2: float, cruise_fraction,
                 stop_probability: float, stop_dwell_s, yield_speed_mps) -> tuple[np.ndarray, dict[int, float]]:
    """Step 2: the speed limit along the path, and the dwell time at each point the car stops."""
    s = path.s
    vlim = np.full(len(s), float(max_speed_mps))
    boundaries = np.concatenate([[0.0], path.stops, [s[-1] + 1.0]])
    for a, b in zip(boundaries[:-1], boundaries[1:]):
        cruise = rng.uniform(*cruise_fraction) * max_speed_mps
        vlim[(s >= a) & (s < b)] = cruise
    with np.errstate(divide="ignore"):
        vlim = np.minimum(vlim, np.sqrt(max_lat_accel_mps2 / np.maximum(np.abs(path.curvature), 1e-9)))
    dwell_at: dict[int, float] = {}
    for stop in path.stops:
        i = int(np.argmin(np.abs(s - stop)))
        if rng.uniform() < stop_probability:
            vlim[i] = 0.0
            dwell_at[i] = float(rng.uniform(*stop_dwell_s))
        else:
            vlim[i] = min(vlim[i], float(rng.uniform(*yield_speed_mps)))
    if not closed:
        vlim[-1] = 0.0  # park at the end of an open route
    vlim[0] = 0.0  # start from rest
    return vlim, dwell_at


def _accel_limited(vlim: np.ndarray, s: np.ndarray, max_accel_mps2: float, max_decel_mps2: float,
                   max_speed_mps: float) -> np.ndarray:
    """Step 3: acceleration and braking limits (forward / backward passes over ds)."""
    ds = np.diff(s)
    v = vlim.copy()
    for i in range(1, len(v)):
        v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2.0 * max_accel_mps2 * ds[i - 1]))
    for i in range(len(v) - 2, -1, -1):
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2.0 * max_decel_mps2 * ds[i]))
    return np.clip(v, 0.0, max_speed_mps)


def _sampled(path: _Path, v: np.ndarray, dwell_at: dict[int, float], duration_s: float, rate_hz: float) -> Trajectory:
    """Step 4: time along the path, with dwell inserted at the stops, sampled at rate_hz."""
    s = path.s
    ds = np.diff(s)
    v_pair = np.maximum(v[:-1] + v[1:], _MIN_SPEED_MPS)
    t_nodes = np.concatenate([[0.0], np.cumsum(2.0 * ds / v_pair)])
    t_knots, s_knots, v_knots = [], [], []
    shift = 0.0
    for i in range(len(s)):
        t_knots.append(t_nodes[i] + shift)
        s_knots.append(s[i])
        v_knots.append(v[i])
        if i in dwell_at:
            shift += dwell_at[i]
            t_knots.append(t_nodes[i] + shift)
            s_knots.append(s[i])
            v_knots.append(0.0)
    t_knots, s_knots, v_knots = np.asarray(t_knots), np.asarray(s_knots), np.asarray(v_knots)

    n = int(math.floor(duration_s * rate_hz + 1e-9)) + 1
    t = np.arange(n) / float(rate_hz)
    # Constant acceleration between knots: speed linear in time, distance quadratic, which
    # is exactly consistent with the trapezoid times above (position derivative == speed).
    k = np.clip(np.searchsorted(t_knots, t, side="right") - 1, 0, len(t_knots) - 2)
    dt_knot = t_knots[k + 1] - t_knots[k]
    tau = np.clip(t - t_knots[k], 0.0, dt_knot)
    accel = np.divide(v_knots[k + 1] - v_knots[k], dt_knot, out=np.zeros_like(dt_knot), where=dt_knot > 0)
    dist = np.minimum(s_knots[k] + v_knots[k] * tau + 0.5 * accel * tau**2, s_knots[k + 1])
    speed = np.where(t > t_knots[-1], 0.0, v_knots[k] + accel * tau)  # parked after an open route's end
    yaw_unwrapped = np.interp(dist, s, path.heading)
    east = np.interp(dist, s, path.xy[:, 0])
    north = np.interp(dist, s, path.xy[:, 1])
    yaw_rate = np.gradient(yaw_unwrapped, t) if n > 1 else np.zeros(1)
    return Trajectory(
        t_s=t, east_m=east, north_m=north, yaw_enu_rad=wrap_angle(yaw_unwrapped),
        speed_mps=speed, yaw_rate_radps=yaw_rate, distance_m=dist,
    )
