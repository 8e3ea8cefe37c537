"""Run a ParticleFilter over a simulated drive in-process, in simulated time (no bag, no ROS).

The sensor stream is a list of events in arrival order, which tests edit to inject faults:

* `GnssMessage(arrival_s, stamp_s, east_m, north_m, sigma_m, status_ok)`: a fix as the
  receiver sends it (NaN position when NO_FIX);
* `CameraFrame(stamp_s, latency_s)`: a camera image taken at `stamp_s`; the cross-view
  node cuts its patch around the filter's estimate at `stamp_s` (the position prior) and
  its likelihood volume reaches the filter `latency_s` later, stamped `stamp_s`;
* `MotionSample(stamp_s, kind, value, variance)`: an IMU yaw rate (`kind="yaw_rate"`) or a
  wheel speed (`kind="speed"`), arriving at its stamp (`motion_samples` makes them from the
  trajectory with white noise and a gyro bias).

The filter's output is sampled at `output_times_s` (by default the GNSS epochs), as the
particle-filter node would publish it, and compared with the ground truth there.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from cvgl_ros.filter.particle_filter import ParticleFilter
from cvgl_ros.geo.yaw import angle_diff
from cvgl_ros.localization.prior import PriorPolicy, PriorSelector
from cvgl_ros.sim.simulated_cross_view import SimulatedCrossView


@dataclass(frozen=True)
class GnssMessage:
    arrival_s: float
    stamp_s: float
    east_m: float
    north_m: float
    sigma_m: float
    status_ok: bool


@dataclass(frozen=True)
class CameraFrame:
    stamp_s: float
    latency_s: float = 0.2

    @property
    def arrival_s(self) -> float:
        return self.stamp_s


@dataclass(frozen=True)
class MotionSample:
    stamp_s: float
    kind: str  # "yaw_rate" (rad/s) or "speed" (m/s)
    value: float
    variance: float

    @property
    def arrival_s(self) -> float:
        return self.stamp_s


def motion_samples(trajectory, imu_hz: float = 100.0, wheel_hz: float = 50.0, seed: int = 0,
                   gyro_sigma_radps: float = 0.005, gyro_bias_radps: float = 0.003,
                   speed_sigma_mps: float = 0.05, speed_scale: float = 1.01) -> list[MotionSample]:
    """IMU yaw rates and wheel speeds of `trajectory`: white noise of the given sigmas at
    their rates, a constant gyro bias and a wheel speed scale error."""
    rng = np.random.default_rng(seed)
    t0, t1 = float(trajectory.t_s[0]), float(trajectory.t_s[-1])
    out = []
    for kind, rate in (("yaw_rate", imu_hz), ("speed", wheel_hz)):
        if rate <= 0:
            continue
        t = np.arange(t0, t1 + 1e-9, 1.0 / rate)
        truth = trajectory.sample(t)
        if kind == "yaw_rate":
            values = truth.yaw_rate_radps + gyro_bias_radps + gyro_sigma_radps * rng.standard_normal(len(t))
            var = gyro_sigma_radps ** 2
        else:
            values = truth.speed_mps * speed_scale + speed_sigma_mps * rng.standard_normal(len(t))
            var = speed_sigma_mps ** 2
        out += [MotionSample(float(ti), kind, float(v), var) for ti, v in zip(t, values)]
    return out


@dataclass
class FilterRun:
    """Filter outputs and the truth at the output times."""

    t_s: np.ndarray
    east_m: np.ndarray
    north_m: np.ndarray
    yaw_enu_rad: np.ndarray
    initialized: np.ndarray
    true_east_m: np.ndarray
    true_north_m: np.ndarray
    true_yaw_enu_rad: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    gnss_decisions: list = field(default_factory=list)
    protection_level_m: np.ndarray | None = None
    covariance_xy: np.ndarray | None = None  # (T, 2, 2) published covariance of (east, north)

    @property
    def nees(self) -> np.ndarray:
        """2-D normalized estimation error squared of initialized outputs (2 on average when
        the covariance is consistent)."""
        keep = self.initialized
        err = np.stack([self.east_m - self.true_east_m, self.north_m - self.true_north_m], axis=1)[keep]
        cov = self.covariance_xy[keep] + 1e-9 * np.eye(2)
        return np.einsum("ti,tij,tj->t", err, np.linalg.inv(cov), err)

    @property
    def error_m(self) -> np.ndarray:
        return np.hypot(self.east_m - self.true_east_m, self.north_m - self.true_north_m)

    @property
    def yaw_error_deg(self) -> np.ndarray:
        return np.degrees(np.abs(angle_diff(self.yaw_enu_rad, self.true_yaw_enu_rad)))

    def window(self, t0: float, t1: float) -> np.ndarray:
        """Position errors of initialized outputs with t0 <= t < t1."""
        keep = (self.t_s >= t0) & (self.t_s < t1) & self.initialized
        return self.error_m[keep]


def city_block_route(block_m: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    """A closed loop around city blocks (ENU metres) and the arc lengths of its intersections."""
    b = float(block_m)
    points = np.array([(0, 0), (2 * b, 0), (2 * b, b), (4 * b, b), (4 * b, 2.5 * b), (2 * b, 2.5 * b),
                       (2 * b, b), (0, b), (0, 0)], dtype=float)
    return points, np.cumsum(np.hypot(*np.diff(points, axis=0).T))[:-1]


def gnss_messages(track) -> list[GnssMessage]:
    """The fixes of a `cvgl_ros.sim.gnss.GnssTrack`, arriving at their stamps."""
    valid = track.valid
    return [GnssMessage(float(t), float(t), float(e), float(n), float(s), bool(ok))
            for t, e, n, s, ok in zip(track.t_s, track.east_m, track.north_m, track.reported_sigma_m, valid)]


def camera_frames(t0_s: float, t1_s: float, rate_hz: float = 10.0, latency_s: float = 0.2) -> list[CameraFrame]:
    n = int(math.floor((t1_s - t0_s) * rate_hz + 1e-9)) + 1
    return [CameraFrame(t0_s + i / rate_hz, latency_s) for i in range(n)]


def mounted(trajectory, x_m: float, y_m: float):
    """The trajectory of a sensor mounted at (x, y) in base_link (e.g. the GNSS antenna)."""
    return trajectory.mounted(x_m, y_m)


def run_filter(pf: ParticleFilter, trajectory, events, cross_view: SimulatedCrossView | None = None,
               output_times_s=None, prior_policy: PriorPolicy | None = None,
               camera_offset_m: tuple[float, float] = (0.0, 0.0)) -> FilterRun:
    """Feed `events` to `pf` in arrival order; sample its estimate at `output_times_s`.

    Each camera frame's prior is chosen as the cross-view node chooses it
    (`cvgl_ros.localization.prior.PriorSelector` with `prior_policy`, default its defaults):
    the filter's estimate at the frame's stamp, its yaw when certain enough, the yaw search
    widened by the yaw's uncertainty and the turn rate (the filter's, or the IMU's when
    there are yaw-rate samples), or a full-circle search when the yaw is unknown (on every
    n-th frame only, as the node does). The volumes peak at the camera's pose: mounted at
    `camera_offset_m` (x forward, y left) in base_link; `trajectory` is base_link's."""
    if output_times_s is None:
        output_times_s = sorted({e.stamp_s for e in events if isinstance(e, GnssMessage)})
    t_min, t_max = float(trajectory.t_s[0]), float(trajectory.t_s[-1])
    output_times_s = np.asarray([t for t in output_times_s if t_min <= t <= t_max], dtype=float)
    queue: list[tuple[float, int, int, object]] = []
    order = 0
    for event in events:
        heapq.heappush(queue, (event.arrival_s, 1, order, event))
        order += 1
    for t in output_times_s:  # outputs after the inputs of the same instant
        heapq.heappush(queue, (float(t), 3, order, None))
        order += 1
    cameras = [e for e in events if isinstance(e, CameraFrame) and t_min <= e.stamp_s <= t_max]
    camera_truth = mounted(trajectory.sample(np.asarray([e.stamp_s for e in cameras], dtype=float)),
                           *camera_offset_m)
    truth_at = {e.stamp_s: (float(camera_truth.east_m[i]), float(camera_truth.north_m[i]),
                            float(camera_truth.yaw_enu_rad[i])) for i, e in enumerate(cameras)}
    out = {k: [] for k in ("t", "e", "n", "yaw", "init", "pl", "cov")}
    reach = math.radians(cross_view.config.yaw_window_deg) if cross_view is not None else 0.0
    selector = PriorSelector(prior_policy or PriorPolicy(), reach if reach > 0 else math.pi)
    decisions = []
    while queue:
        now, kind, _, event = heapq.heappop(queue)
        if kind == 3:
            est = pf.estimate(now)
            out["t"].append(now)
            out["e"].append(est.east_m)
            out["n"].append(est.north_m)
            out["yaw"].append(est.yaw_enu_rad)
            out["init"].append(est.initialized)
            out["pl"].append(est.protection_level_m)
            out["cov"].append(est.covariance_3x3[:2, :2])
        elif isinstance(event, GnssMessage):
            decisions.append((event.stamp_s, pf.add_gnss(event.stamp_s, event.east_m, event.north_m,
                                                         event.sigma_m, event.status_ok)))
        elif isinstance(event, MotionSample):
            add = pf.add_yaw_rate if event.kind == "yaw_rate" else pf.add_wheel_speed
            add(event.stamp_s, event.value, event.variance)
            if event.kind == "yaw_rate":
                selector.add_yaw_rate(int(round(event.stamp_s * 1e9)), event.value)
        elif isinstance(event, CameraFrame) and kind == 1:
            if cross_view is None or not pf.initialized or not t_min <= event.stamp_s <= t_max:
                continue
            est = pf.estimate(event.stamp_s)
            stamp_ns = int(round(event.stamp_s * 1e9))
            selector.add_filter_pose(stamp_ns, est.east_m, est.north_m, est.yaw_enu_rad,
                                     math.sqrt(max(est.covariance_3x3[2, 2], 0.0)))
            prior = selector.select(stamp_ns).prior
            if prior is None:
                continue  # waiting for the yaw: the node skips this frame
            volume = cross_view.volume(event.stamp_s, *truth_at[event.stamp_s], prior.east_m, prior.north_m,
                                       prior.yaw_enu_rad, prior.yaw_half_width_rad)
            heapq.heappush(queue, (event.stamp_s + event.latency_s, 2, order, (event.stamp_s, volume)))
            order += 1
        elif kind == 2:
            stamp, volume = event
            pf.add_cross_view(stamp, volume)
    truth = trajectory.sample(np.asarray(out["t"]))
    return FilterRun(
        t_s=np.asarray(out["t"]), east_m=np.asarray(out["e"]), north_m=np.asarray(out["n"]),
        yaw_enu_rad=np.asarray(out["yaw"]), initialized=np.asarray(out["init"], dtype=bool),
        true_east_m=truth.east_m, true_north_m=truth.north_m, true_yaw_enu_rad=truth.yaw_enu_rad,
        diagnostics=pf.diagnostics, gnss_decisions=decisions,
        protection_level_m=np.asarray(out["pl"]), covariance_xy=np.asarray(out["cov"]).reshape(-1, 2, 2),
    )
