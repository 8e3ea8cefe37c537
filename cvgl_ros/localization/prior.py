"""Which prior the cross-view node searches around, and how wide its yaw search is.

`PriorSelector` keeps the newest filter pose (`/cvgl/pose`), GNSS fix and, optionally, IMU
yaw rate, each by its stamp, and for every camera frame `select(frame_stamp_ns)` returns a
`PriorChoice`: the `runtime.Prior` to cut the patch and search the yaw around, or why the
frame is skipped. It never sees a ROS message (the node converts them).

Position (the patch centre), in this order:

1. The filter's pose when it is fresh (|t_frame - t_pose| <= `max_age_s`), unless the GNSS
   gate fires: with `gnss_gate_m` > 0 and a fresh fix farther than that from the filter's
   pose, the patch is centred on the fix with the yaw unknown (a diverged filter cannot
   feed on its own prior).
2. Else a fresh GNSS fix, yaw unknown.
3. Else no prior: `InputError` (the frame is skipped and says so).

Yaw, for a filter prior with yaw 1-sigma sigma (from the pose covariance):

* sigma > `yaw_max_std_deg`: the yaw is unknown.
* Otherwise (with `widen_yaw_search`) the search half-width is

      h = k sigma + |omega| tau + margin,     tau = |t_frame - t_pose| + latency

  with k = `yaw_search_sigmas`, margin = `yaw_search_margin_deg`, latency =
  `yaw_search_latency_s` (frame stamp to its result), and omega the yaw rate: the larger
  of the filter's (the yaw change over its poses of the last `yaw_rate_window_s`,
  omega = wrap(psi_newest - psi_oldest) / (t_newest - t_oldest)) and a fresh IMU rate. The
  search is clamp(h, r, h_max) with r the model's one-window reach: h <= r is one window
  (the network's batch of one), wider is 2m + 1 adjacent windows (m = ceil((h - r) / s),
  s the window's span; one batch row each). h > h_max = `yaw_search_max_half_width_deg`:
  the yaw is unknown.
* Without `widen_yaw_search`: one window around the filter's yaw whenever sigma is below
  `yaw_max_std_deg` (the behaviour before the widening).

An unknown yaw is a full-circle search (one batch of windows tiling the circle), which is
costly: it runs on the first frame of every stretch of unknown-yaw frames and then on every
n-th one (n = `unknown_yaw_search_every_n`; 0: never, 1: every frame); the others are
skipped, waiting for the yaw.

Cost: every window is one more batch row of the network, so the search costs 2m + 1 times
one window's inference. How often it widens depends on the filter's yaw sigma: with IMU and
wheel odometry (yaw integrated from the gyro) it is small and nearly every frame is one
window; with camera and GNSS alone the constant-velocity model's yaw diffusion keeps sigma
at several degrees and many frames take three to five windows. A wider search also lets
the particles' yaw spread further than one window would (a window cuts the likelihood off
outside it), which feeds back into sigma.

Stamps: a filter pose, fix or IMU sample older than the newest one already held is ignored
(the filter republishes a late pose at its older stamp after the corrected newest one); one
at the same stamp replaces it. `clear()` forgets everything (the camera's stamps went back).
Thread-safe: the node's inference workers call `select` concurrently.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import angle_diff
from cvgl_ros.runtime.estimator import Prior


@dataclass(frozen=True)
class PriorPolicy:
    """The selector's settings (the cross-view node's `prior_*` and `yaw_search_*` parameters)."""

    max_age_s: float = 2.0
    yaw_max_std_deg: float = 20.0
    gnss_gate_m: float = 0.0
    unknown_yaw_search_every_n: int = 10
    widen_yaw_search: bool = True
    yaw_search_sigmas: float = 3.0
    yaw_search_margin_deg: float = 1.5
    yaw_search_latency_s: float = 0.1
    yaw_search_max_half_width_deg: float = 90.0
    yaw_rate_window_s: float = 0.5

    def __post_init__(self):
        for name in ("max_age_s", "yaw_max_std_deg", "gnss_gate_m", "yaw_search_sigmas", "yaw_search_margin_deg",
                     "yaw_search_latency_s", "yaw_search_max_half_width_deg", "yaw_rate_window_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InputError(f"prior policy {name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.unknown_yaw_search_every_n, int) and self.unknown_yaw_search_every_n >= 0):
            raise InputError(f"unknown_yaw_search_every_n must be an integer >= 0, got "
                             f"{self.unknown_yaw_search_every_n!r}")


@dataclass(frozen=True)
class PriorChoice:
    """What to do with one camera frame.

    `prior` is None when the frame is skipped by design (`skip_reason` says why: waiting for
    the yaw; `waiting_prior` is then the prior it would have had, yaw unknown: the coarse
    stage can still search around it); `source` names the prior for /diagnostics; `counters`
    are events to count.
    `yaw_half_width_rad` is the yaw search asked for (None: the full circle when the yaw is
    unknown, or the one window); `yaw_std_rad`, `yaw_rate_radps` and `age_s` are the rule's
    inputs (NaN where there is no filter prior)."""

    prior: Prior | None
    source: str
    skip_reason: str | None = None
    counters: tuple[str, ...] = ()
    yaw_half_width_rad: float | None = None
    yaw_std_rad: float = math.nan
    yaw_rate_radps: float = math.nan
    age_s: float = math.nan
    waiting_prior: Prior | None = None


@dataclass(frozen=True)
class _FilterPose:
    stamp_ns: int
    east_m: float
    north_m: float
    yaw_enu_rad: float
    yaw_std_rad: float


class PriorSelector:
    """See the module docstring. `window_reach_rad`: the model's one window covers prior +- this."""

    def __init__(self, policy: PriorPolicy, window_reach_rad: float):
        if not (math.isfinite(window_reach_rad) and window_reach_rad > 0):
            raise InputError(f"window reach {window_reach_rad} must be a positive angle")
        self.policy = policy
        self.window_reach_rad = float(window_reach_rad)
        self._lock = threading.Lock()
        self._pose_came = threading.Condition(self._lock)
        self._unknown_yaw_run = 0   # unknown-yaw frames since the last frame with a known yaw
        self.clear()

    # -- inputs ---------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every prior (the camera's stamps went backwards: they are from its future)."""
        with self._lock:
            self._pose: _FilterPose | None = None
            self._poses_at_newest = 0   # filter poses taken at the newest pose's stamp
            self._yaw_history: deque[tuple[int, float]] = deque()  # (stamp_ns, yaw) of the newest poses
            self._gnss: tuple[int, float, float] | None = None
            self._imu: tuple[int, float] | None = None

    def add_filter_pose(self, stamp_ns: int, east_m: float, north_m: float, yaw_enu_rad: float,
                        yaw_std_rad: float) -> bool:
        """Take the filter's pose; False when ignored (not finite, or older than the newest)."""
        values = (east_m, north_m, yaw_enu_rad, yaw_std_rad)
        if not all(math.isfinite(v) for v in values) or yaw_std_rad < 0:
            return False
        with self._lock:
            if self._pose is not None and stamp_ns < self._pose.stamp_ns:
                return False
            same = self._pose is not None and stamp_ns == self._pose.stamp_ns
            self._poses_at_newest = self._poses_at_newest + 1 if same else 1
            self._pose = _FilterPose(int(stamp_ns), float(east_m), float(north_m), float(yaw_enu_rad),
                                     float(yaw_std_rad))
            history = self._yaw_history
            if history and history[-1][0] == stamp_ns:
                history.pop()
            history.append((int(stamp_ns), float(yaw_enu_rad)))
            window_ns = self.policy.yaw_rate_window_s * 1e9
            while len(history) > 2 and stamp_ns - history[1][0] >= window_ns:
                history.popleft()  # keep the oldest pose at least a window back
            self._pose_came.notify_all()
            return True

    def add_gnss_fix(self, stamp_ns: int, east_m: float, north_m: float) -> bool:
        """Take a valid fix in the map frame; False when ignored (not finite, or older)."""
        if not (math.isfinite(east_m) and math.isfinite(north_m)):
            return False
        with self._lock:
            if self._gnss is not None and stamp_ns < self._gnss[0]:
                return False
            self._gnss = (int(stamp_ns), float(east_m), float(north_m))
            return True

    def add_yaw_rate(self, stamp_ns: int, yaw_rate_radps: float) -> bool:
        """Take a measured yaw rate (IMU angular_velocity.z); False when ignored."""
        if not math.isfinite(yaw_rate_radps):
            return False
        with self._lock:
            if self._imu is not None and stamp_ns < self._imu[0]:
                return False
            self._imu = (int(stamp_ns), float(yaw_rate_radps))
            return True

    def wait_for_filter_pose(self, stamp_ns: int, timeout_s: float, count: int = 1) -> bool:
        """Block (wall time, at most `timeout_s`) until `count` filter poses stamped `stamp_ns`, or
        one stamped later, are held; True when they are. A replay in lockstep waits so for the
        filter's answers to the previous frame (one per output it fused), which race the next
        camera frame over DDS."""
        def came() -> bool:
            pose = self._pose
            return pose is not None and (pose.stamp_ns > stamp_ns or
                                         (pose.stamp_ns == stamp_ns and self._poses_at_newest >= count))

        with self._pose_came:
            return self._pose_came.wait_for(came, timeout_s)

    def poses_at(self, stamp_ns: int) -> int:
        """Filter poses taken at `stamp_ns` while it is the newest pose's stamp (0 otherwise)."""
        with self._lock:
            return self._poses_at_newest if self._pose is not None and self._pose.stamp_ns == stamp_ns else 0

    @property
    def newest_gnss_ns(self) -> int | None:
        """Stamp of the newest valid GNSS fix held (None: none yet)."""
        with self._lock:
            return None if self._gnss is None else self._gnss[0]

    @property
    def newest_filter_pose_ns(self) -> int | None:
        """Stamp of the newest filter pose held (None: none yet)."""
        with self._lock:
            return None if self._pose is None else self._pose.stamp_ns

    # -- the decision ---------------------------------------------------------------------

    def yaw_rate_radps(self, frame_stamp_ns: int) -> float:
        """|omega| of the rule: max of the filter's recent yaw rate and a fresh IMU rate (0 if none)."""
        with self._lock:
            return self._yaw_rate(frame_stamp_ns)

    def _yaw_rate(self, frame_stamp_ns: int) -> float:
        rate = 0.0
        history = self._yaw_history
        if len(history) >= 2:
            (t0, yaw0), (t1, yaw1) = history[0], history[-1]
            if t1 > t0:
                rate = abs(float(angle_diff(yaw1, yaw0))) / ((t1 - t0) * 1e-9)
        if self._imu is not None and abs(frame_stamp_ns - self._imu[0]) <= self.policy.max_age_s * 1e9:
            rate = max(rate, abs(self._imu[1]))
        return rate

    def select(self, frame_stamp_ns: int) -> PriorChoice:
        """The prior for the camera frame stamped `frame_stamp_ns` (InputError: none at all)."""
        with self._lock:
            choice = self._select(int(frame_stamp_ns))
            if choice.prior is None or choice.prior.yaw_enu_rad is not None:
                if choice.prior is not None:
                    self._unknown_yaw_run = 0
                return choice
            return self._schedule_full_circle(choice)

    def _select(self, t_ns: int) -> PriorChoice:
        p = self.policy
        max_age_ns = p.max_age_s * 1e9
        pose = self._pose if self._pose is not None and abs(t_ns - self._pose.stamp_ns) <= max_age_ns else None
        gnss = self._gnss if self._gnss is not None and abs(t_ns - self._gnss[0]) <= max_age_ns else None
        if pose is not None and gnss is not None and p.gnss_gate_m > 0:
            gap = math.hypot(pose.east_m - gnss[1], pose.north_m - gnss[2])
            if gap > p.gnss_gate_m:
                return PriorChoice(Prior(gnss[1], gnss[2], None), f"gnss (filter {gap:.0f} m away; yaw unknown)",
                                   counters=("prior_filter_far_from_gnss",))
        if pose is not None:
            return self._filter_choice(t_ns, pose)
        if gnss is not None:
            return PriorChoice(Prior(gnss[1], gnss[2], None), "gnss (yaw unknown)")
        raise InputError(f"no position prior (filter pose or GNSS fix) within {p.max_age_s:g} s")

    def _filter_choice(self, t_ns: int, pose: _FilterPose) -> PriorChoice:
        p = self.policy
        age_s = abs(t_ns - pose.stamp_ns) * 1e-9
        rate = self._yaw_rate(t_ns)
        inputs = dict(yaw_std_rad=pose.yaw_std_rad, yaw_rate_radps=rate, age_s=age_s)
        unknown = Prior(pose.east_m, pose.north_m, None)
        if pose.yaw_std_rad > math.radians(p.yaw_max_std_deg):
            return PriorChoice(unknown, "filter (yaw unknown)", **inputs)
        if not p.widen_yaw_search:
            return PriorChoice(Prior(pose.east_m, pose.north_m, pose.yaw_enu_rad), "filter", **inputs)
        tau_s = age_s + p.yaw_search_latency_s
        half_width = (p.yaw_search_sigmas * pose.yaw_std_rad + rate * tau_s
                      + math.radians(p.yaw_search_margin_deg))
        if half_width > math.radians(p.yaw_search_max_half_width_deg):
            return PriorChoice(unknown, f"filter (yaw search +-{math.degrees(half_width):.0f} deg > "
                               f"{p.yaw_search_max_half_width_deg:g}: yaw unknown)",
                               counters=("yaw_search_too_wide",), yaw_half_width_rad=None, **inputs)
        if half_width <= self.window_reach_rad:
            return PriorChoice(Prior(pose.east_m, pose.north_m, pose.yaw_enu_rad), "filter", **inputs)
        return PriorChoice(Prior(pose.east_m, pose.north_m, pose.yaw_enu_rad, half_width),
                           f"filter (yaw search widened to +-{math.degrees(half_width):.0f} deg)",
                           counters=("yaw_search_widened",), yaw_half_width_rad=half_width, **inputs)

    def _schedule_full_circle(self, choice: PriorChoice) -> PriorChoice:
        """Unknown yaw: search the first frame of the stretch and then every n-th, skip the others."""
        every = self.policy.unknown_yaw_search_every_n
        self._unknown_yaw_run += 1
        if every and (self._unknown_yaw_run - 1) % every == 0:
            return choice
        reason = (f"yaw prior unknown: full-circle search on every {every}th frame only" if every
                  else "yaw prior unknown (full-circle search disabled)")
        return PriorChoice(None, choice.source, skip_reason=reason,
                           counters=choice.counters + ("frames_waiting_for_yaw",),
                           yaw_std_rad=choice.yaw_std_rad, yaw_rate_radps=choice.yaw_rate_radps, age_s=choice.age_s,
                           waiting_prior=choice.prior)
