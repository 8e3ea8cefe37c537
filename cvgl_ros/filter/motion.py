"""Motion models of the particle filter: how particles move between two measurement stamps.

Particle state (rows of the (5, M) array): E, N (map frame, ENU metres), v (forward speed,
m/s), psi (yaw, ENU, rad) and b (gyro yaw-rate bias, rad/s; only the odometry model uses it).

Constant velocity with steering noise (seed 001, "Cross-View Matching for Vehicle
Localization by Learning Geographically Local Representations", Sec. III-D), the fallback
when no motion sensor covers the interval. Speed and yaw are random walks driven by white
acceleration and yaw-rate noise of densities sigma_a, sigma_omega:
    v'   = | v + sigma_a sqrt(dt) n_a |
    psi' = psi + sigma_omega sqrt(dt) n_omega
    E'   = E + dt (v + v')/2 cos((psi + psi')/2) + sigma_p sqrt(dt) n_E
    N'   = N + dt (v + v')/2 sin((psi + psi')/2) + sigma_p sqrt(dt) n_N
with n ~ N(0, 1); sigma_p is a small position diffusion that keeps resampled copies apart.

Odometry (what every vehicle has: a gyro's yaw rate, wheel encoders' forward speed). Over
[t, t + dt] the measured yaw rate omega_bar and speed v_bar are the time averages of the
samples (zero-order hold, `MotionInputs.average`), and
    psi' = psi + (omega_bar - b) dt + sigma_g sqrt(dt) n_omega
    b'   = b + sigma_bw sqrt(dt) n_b
    v'   = | v_bar (1 + sigma_s n_s) + sigma_v n_v |
    E', N' as above with v, v' and psi, psi'.
sigma_g is the larger of the configured yaw-rate noise density and the one the IMU reports
(its angular-velocity variance at its sample rate, converted to a density); sigma_s covers
the wheel speed's scale error (tyre radius, ~1 %), sigma_v the speed noise the odometry
reports (and a floor). The gyro bias b is part of the state: cross-view and GNSS updates
estimate it through resampling; it starts at b ~ N(0, sigma_b0^2). With only one of the two
sensors, the other half falls back to its random walk (yaw from the gyro with the speed's
random walk, or speed from the wheels with the yaw's).

Samples and gaps: a sample holds until the next one; an interval is covered when its first
part has a sample no older than `timeout_s` before it, no two samples inside it are farther
apart than `timeout_s`, and its end is at most `hold_s` (>= `timeout_s`) after the newest
sample. The end's allowance is longer because a measurement is often processed before the
samples that precede it have arrived (another topic, the executor's order, transport lag;
replays of the fleet saw half the GNSS and camera predictions fall back for want of the last
0.2-0.5 s of 100 Hz IMU samples): the newest yaw rate and speed are held over that tail (a
car's yaw rate changes by ~0.3 rad/s^2 at most at a turn's entry, a few degrees over half a
second, against the random walk's 0.5 rad/s per sqrt(s)). Uncovered intervals use the
constant-velocity model and are counted. Samples arriving out of order are inserted at their stamp: a prediction already
made is not redone, but the history replays of late measurements use them.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

E, N, V, YAW, BIAS = 0, 1, 2, 3, 4  # rows of the (5, M) particle array
NUM_STATES = 5
TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class MotionNoise:
    """Noise densities of both motion models (see the module docstring)."""

    accel_mps2: float = 2.0               # sigma_a, m/s^2 per sqrt(s)
    yaw_rate_radps: float = 0.5           # sigma_omega, rad/s per sqrt(s)
    position_mps: float = 0.3             # sigma_p, m per sqrt(s)
    max_speed_mps: float = 70.0
    gyro_noise_radps: float = 0.02        # sigma_g floor, rad/s per sqrt(s) (slip, mounting, ARW)
    gyro_bias_walk_radps: float = 0.002   # sigma_bw, rad/s per sqrt(s)
    speed_scale_sigma: float = 0.02       # sigma_s, fraction of the speed
    speed_noise_mps: float = 0.1          # sigma_v floor, m/s


class _Samples:
    """Time-sorted scalar samples (stamp, value, variance) with zero-order-hold averages."""

    def __init__(self):
        self.t: list[float] = []
        self.value: list[float] = []
        self.var: list[float] = []

    def add(self, stamp_s: float, value: float, variance: float) -> bool:
        """Insert in stamp order; False for a repeated stamp (ignored)."""
        i = bisect.bisect_left(self.t, stamp_s)
        if i < len(self.t) and self.t[i] == stamp_s:
            return False
        self.t.insert(i, stamp_s)
        self.value.insert(i, value)
        self.var.insert(i, variance)
        return True

    def prune(self, before_s: float) -> None:
        """Drop samples older than `before_s`, keeping the last one before it (it still holds)."""
        i = bisect.bisect_left(self.t, before_s) - 1
        if i > 0:
            del self.t[:i], self.value[:i], self.var[:i]

    def average(self, t0: float, t1: float, timeout_s: float, hold_s: float | None = None
                ) -> tuple[float, float] | None:
        """Time average (value, mean variance) of the held signal over [t0, t1], or None; the
        newest sample holds up to `hold_s` (default `timeout_s`) past its stamp."""
        t = self.t
        first = bisect.bisect_right(t, t0) - 1  # the sample holding at t0
        if first < 0 or t0 - t[first] > timeout_s:
            return None
        last = bisect.bisect_right(t, t1) - 1
        if last > first and max(b - a for a, b in zip(t[first:last], t[first + 1:last + 1])) > timeout_s:
            return None
        if t1 - t[last] > (timeout_s if hold_s is None else max(timeout_s, hold_s)):
            return None
        if last == first:
            return self.value[first], self.var[first]
        edges = [t0] + t[first + 1:last + 1] + [t1]
        durations = np.diff(edges)
        values = np.asarray(self.value[first:last + 1])
        var = np.asarray(self.var[first:last + 1])
        total = float(durations.sum())
        return float(np.dot(durations, values) / total), float(np.dot(durations, var) / total)

    def __len__(self) -> int:
        return len(self.t)


class MotionInputs:
    """Buffered yaw-rate (IMU) and forward-speed (wheel odometry) samples."""

    def __init__(self, timeout_s: float = 0.2, keep_s: float = 5.0, hold_s: float = 0.5):
        self.timeout_s = timeout_s
        self.hold_s = hold_s
        self.keep_s = keep_s
        self.yaw_rate = _Samples()
        self.speed = _Samples()

    def add_yaw_rate(self, stamp_s: float, yaw_rate_radps: float, variance: float) -> bool:
        return self.yaw_rate.add(stamp_s, yaw_rate_radps, variance)

    def add_speed(self, stamp_s: float, speed_mps: float, variance: float) -> bool:
        return self.speed.add(stamp_s, speed_mps, variance)

    def prune(self, now_s: float) -> None:
        self.yaw_rate.prune(now_s - self.keep_s)
        self.speed.prune(now_s - self.keep_s)

    def over(self, t0: float, t1: float):
        """((omega_bar, var) or None, (v_bar, var) or None) over [t0, t1]."""
        return (self.yaw_rate.average(t0, t1, self.timeout_s, self.hold_s) if len(self.yaw_rate) else None,
                self.speed.average(t0, t1, self.timeout_s, self.hold_s) if len(self.speed) else None)


def predict(particles: np.ndarray, dt_s: float, rng: np.random.Generator, noise: MotionNoise,
            yaw_rate=None, speed=None, imu_rate_hz: float = 100.0) -> None:
    """Move the (5, M) particles dt_s forward in place; `yaw_rate`, `speed`: (mean, variance)
    over the interval from `MotionInputs.over`, or None (that half uses its random walk)."""
    if dt_s <= 0.0:
        return
    p = particles
    m = p.shape[1]
    root_dt = math.sqrt(dt_s)
    n = rng.standard_normal((6, m), dtype=np.float32)
    if speed is None:
        speed_new = np.abs(p[V] + (noise.accel_mps2 * root_dt) * n[0])
    else:
        v_bar, v_var = speed
        sigma_v = math.sqrt(max(v_var, 0.0) + noise.speed_noise_mps ** 2)
        speed_new = np.abs(v_bar * (1.0 + noise.speed_scale_sigma * n[0]) + sigma_v * n[4])
    np.minimum(speed_new, noise.max_speed_mps, out=speed_new)
    if yaw_rate is None:
        yaw_step = (noise.yaw_rate_radps * root_dt) * n[1]
    else:
        omega_bar, omega_var = yaw_rate
        # a white-noise variance at the IMU rate is a density of sqrt(var / rate) per sqrt(s)
        density = max(noise.gyro_noise_radps, math.sqrt(max(omega_var, 0.0) / imu_rate_hz))
        yaw_step = (omega_bar - p[BIAS]) * dt_s + (density * root_dt) * n[1]
        p[BIAS] += (noise.gyro_bias_walk_radps * root_dt) * n[5]
    yaw_mid = p[YAW] + 0.5 * yaw_step
    step = (0.5 * dt_s) * (p[V] + speed_new)
    p[E] += step * np.cos(yaw_mid) + (noise.position_mps * root_dt) * n[2]
    p[N] += step * np.sin(yaw_mid) + (noise.position_mps * root_dt) * n[3]
    p[V] = speed_new
    yaw = p[YAW]
    yaw += yaw_step
    yaw -= TWO_PI * np.floor((yaw + math.pi) * (1.0 / TWO_PI))
