"""Motion sensors every car has, for simulated drives: a MEMS IMU and wheel-speed odometry.

`MotionSensorModel(imu_params, odometry_params, seed).simulate(trajectory)` measures a
`Trajectory` (`cvgl_ros.sim.trajectory`: planar ENU motion, yaw rate and speed) the way a
consumer automotive IMU and the ABS wheel-speed sensors would, and returns an `ImuTrack`
(100 Hz) and a `WheelOdometryTrack` (50 Hz). The noise is drawn from its own random
stream, `default_rng([seed, MOTION_SENSOR_STREAM])`, so adding these sensors to a drive
changes none of the drive's other random draws (route, GNSS, camera appearance).

Frames. The IMU is mounted at base_link, aligned with it (REP-103 body axes: x forward,
y left, z up; no lever arm), frame `imu_link`. The world is flat (the ground is the datum's
up = 0 plane), so the truth the IMU senses is

    angular velocity  w = (0, 0, r)               r = yaw rate, counter-clockwise positive
    specific force    f = (dv/dt, v r, +g)        centripetal v r to the left in a left turn,
                                                  +g the reaction to gravity (REP-145)

with v the forward speed and g = 9.80665 m/s^2. The odometry measures v at the rear axle
centre (= base_link; the rear wheels roll without steering, so their mean speed is v).

IMU error model, per axis, at sample k (dt = 1 / rate_hz):

    y_k = x_k + b_k + n_k,     n_k ~ N(0, sigma_d^2),  sigma_d = N_d sqrt(rate_hz)
    b_k = b_0 + sum_{j<=k} K sqrt(dt) w_j,   b_0 ~ N(0, sigma_b0^2),  w_j ~ N(0, 1)

with N_d the white-noise density (the angle / velocity random walk: the integral of n
grows as N_d sqrt(t)), b_0 the bias left at power-on, K the bias random walk. sigma_d is
the discrete-time standard deviation of a continuous white noise of density N_d sampled
at rate_hz, as in the IMU noise model of Kalibr ("IMU Noise Model", ethz-asl/kalibr wiki);
`sigma_d^2` is what goes into the message's covariance diagonals.

Wheel-speed error model. The wheel carries a tone ring of `teeth` teeth; the sensor sees
an edge every `tick_m` = (rolling circumference) / teeth of *measured* distance
s * d(t), where d is the true distance and s = 1 + e the scale factor of the effective
rolling radius (tyre pressure, load, wear, the tyre fitted), e ~ N(0, sigma_s^2) drawn per
drive and clipped to +-scale_error_max. The speed at t_k is the one an ABS controller
computes from edge times (the period method):

    >= 2 edges in (t_k - dt, t_k]:  v = (edges - 1) tick_m / (t_last - t_first)
    otherwise:                      v = tick_m / max(t_last - t_prev, t_k - t_last)
                                    (0 when no edge came for `timeout_s`: the car stands)

plus white noise N(0, sigma_v^2) while moving (tooth-pitch irregularity and edge jitter),
never negative (these sensors do not see the direction; the simulated car never reverses).
Stopped for longer than timeout_s, the measured speed is exactly 0. The speed is a mean
over the past: over the window, or over the last edge period P = tick_m / v plus the time
since the last edge when edges are sparser than the samples, so under an acceleration a it
lags the truth by a * (1.5 P + dt / 2) (simulated with 2.5 m/s^2 pulling away and 3 m/s^2
braking: 0.2 m/s at 1.3 m/s, 0.05 m/s at 10 m/s; before the second edge after a stop it
reads 0 while the car may already do 0.7 m/s). The odometry message's twist.covariance[0]
is the sum of

    sigma_v^2                                          the white noise
    (sigma_s v)^2                                      the unknown scale factor at that speed
    min(a_lag (1.5 tick_m / max(v, v_min) + dt / 2), 0.75 m/s)^2   that lag, v_min = tick_m / timeout_s

with a_lag = 3 m/s^2, the hardest the simulated car accelerates or brakes.

Parameters (`automotive_mems`, the default):

============================  =====================  =========================================
parameter                     value                  source
============================  =====================  =========================================
IMU rate                      100 Hz                 the contract with the filter node
gyro white noise N_d          0.014 deg/s/sqrt(Hz)   Bosch BMI055 datasheet values (gyro noise
                              (2.44e-4 rad/s/rtHz;   density), read from a published comparison
                              ARW 0.84 deg/sqrt(h);  of the BMI160, BMI055, ICM-20602 and
                              sigma_d 0.14 deg/s)    ICM-42688 datasheets. Bosch's automotive
                                                     6-axis parts (SMI130, "Inertial Sensor
                                                     (6DoF) for Non-Safety Automotive
                                                     Applications"; SMI230) are of this class;
                                                     their own tables (and those of ST's
                                                     ASM330LHH) could not be read here
gyro power-on bias sigma_b0   0.05 deg/s             the zero-rate offset itself (+-1 deg/s typ,
                                                     same table) is removed by the offset
                                                     calibration at standstill that vehicles
                                                     run (every drive starts at rest); what
                                                     remains is its temperature drift, TCO
                                                     0.015 deg/s/K typ, over ~3 K of warm-up
gyro bias random walk K       3e-6 rad/s/sqrt(s)     bias stability of a few deg/h (1.6-6 deg/h
                                                     typ in the same table): K sqrt(100 s)
                                                     = 6 deg/h
accel white noise N_d         150 ug/sqrt(Hz)        BMI055 accelerometer noise density (same
                              (sigma_d 0.015 m/s^2)  table)
accel power-on bias sigma_b0  3 mg (0.029 m/s^2)     zero-g offset calibrated at standstill on
                                                     level ground; temperature drift +-1 mg/K
                                                     typ over ~3 K
accel bias random walk K      1e-4 m/s^2/sqrt(s)     assumed (consumer MEMS, tens of ug over
                                                     minutes)
odometry rate                 50 Hz                  the contract with the filter node
scale factor sigma_s          1 % (clip +-2.5 %)     effective rolling radius varies with
                                                     inflation pressure and load ("Calculating
                                                     Longitudinal Wheel Slip and Tire
                                                     Parameters Using GPS Velocity", Miller et
                                                     al., ACC 2001); scale factor as the main
                                                     odometry error ("Automotive Speed
                                                     Estimation: Sensor Types and Error
                                                     Characteristics from OBD-II to ADAS",
                                                     Ragab et al., PLANS 2025)
tick_m                        0.052 m                48 edges per revolution of a 16-inch-radius
                                                     wheel, ~5.2 cm (US 2020/0041304 A1,
                                                     "High resolution virtual wheel speed
                                                     sensor"; 96 counts give 2.6 cm)
timeout_s                     0.3 s                  assumed: below tick_m / 0.3 s = 0.17 m/s
                                                     the wheel speed reads 0
a_lag                         3 m/s^2                max_decel_mps2 of cvgl_ros.sim.trajectory
sigma_v                       0.02 m/s               assumed: the period method measures edge
                                                     times, so the finite resolution matters
                                                     little ("Error Sources when Land Vehicle
                                                     Dead Reckoning with Differential
                                                     Wheelspeeds", Carlson, Gerdes and Powell,
                                                     finds more encoder resolution does not
                                                     improve dead reckoning)
============================  =====================  =========================================

Not modelled: gyro and accelerometer scale-factor and cross-axis errors, vibration, wheel
slip (a road car rarely slips more than a few per cent outside hard braking), ADC
quantization (16-bit at +-125 deg/s is 0.004 deg/s per LSB, far below the noise).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.sim.trajectory import Trajectory

GRAVITY_MPS2 = 9.80665
MOTION_SENSOR_STREAM = 0x494D55  # "IMU": the second word of the motion sensors' seed sequence
_DEG = math.pi / 180.0
_G = GRAVITY_MPS2


@dataclass(frozen=True)
class ImuParams:
    """A 6-axis MEMS IMU (see the module docstring for the model and the sources)."""

    name: str = "automotive_mems"
    rate_hz: float = 100.0
    gyro_noise_density_radps_per_rthz: float = 0.014 * _DEG
    gyro_bias_sigma_radps: float = 0.05 * _DEG
    gyro_bias_random_walk_radps_per_rts: float = 3e-6
    accel_noise_density_mps2_per_rthz: float = 150e-6 * _G
    accel_bias_sigma_mps2: float = 3e-3 * _G
    accel_bias_random_walk_mps2_per_rts: float = 1e-4

    @property
    def gyro_sigma_radps(self) -> float:
        """Per-sample white-noise standard deviation of each gyro axis at rate_hz."""
        return self.gyro_noise_density_radps_per_rthz * math.sqrt(self.rate_hz)

    @property
    def accel_sigma_mps2(self) -> float:
        """Per-sample white-noise standard deviation of each accelerometer axis at rate_hz."""
        return self.accel_noise_density_mps2_per_rthz * math.sqrt(self.rate_hz)


@dataclass(frozen=True)
class WheelOdometryParams:
    """Wheel-speed odometry from an ABS tone ring (see the module docstring)."""

    name: str = "abs_wheel_speed"
    rate_hz: float = 50.0
    scale_error_sigma: float = 0.01
    scale_error_max: float = 0.025
    tick_m: float = 0.052
    timeout_s: float = 0.3
    white_sigma_mps: float = 0.02
    lag_accel_mps2: float = 3.0
    lag_max_mps: float = 0.75

    def variance(self, speed_mps) -> np.ndarray:
        """twist.covariance[0] for measured speeds: white noise + scale factor + lag (module docstring)."""
        v = np.asarray(speed_mps, dtype=float)
        lag_s = 1.5 * self.tick_m / np.maximum(v, self.tick_m / self.timeout_s) + 0.5 / self.rate_hz
        lag = np.minimum(self.lag_accel_mps2 * lag_s, self.lag_max_mps)
        return self.white_sigma_mps**2 + (self.scale_error_sigma * v) ** 2 + lag**2


@dataclass(frozen=True)
class ImuTrack:
    """Simulated IMU samples (body FLU axes) with their truth and the bias that was drawn."""

    t_s: np.ndarray
    gyro_radps: np.ndarray  # (n, 3) measured angular velocity
    accel_mps2: np.ndarray  # (n, 3) measured specific force
    true_gyro_radps: np.ndarray
    true_accel_mps2: np.ndarray
    gyro_bias_radps: np.ndarray  # (n, 3), what the measurement carried besides white noise
    accel_bias_mps2: np.ndarray
    gyro_variance: float  # per-sample white-noise variance (the message covariance diagonal)
    accel_variance: float

    def __len__(self) -> int:
        return len(self.t_s)

    @property
    def yaw_rate_radps(self) -> np.ndarray:
        return self.gyro_radps[:, 2]


@dataclass(frozen=True)
class WheelOdometryTrack:
    """Simulated wheel-speed samples with their truth and the scale factor that was drawn."""

    t_s: np.ndarray
    speed_mps: np.ndarray
    true_speed_mps: np.ndarray
    variance_mps2: np.ndarray  # twist.covariance[0] per sample
    scale_factor: float

    def __len__(self) -> int:
        return len(self.t_s)


def _check_positive(name: str, value: float, allow_zero: bool = True) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise InputError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _sample_times(trajectory: Trajectory, rate_hz: float) -> np.ndarray:
    n = int(math.floor(trajectory.duration_s * rate_hz + 1e-9)) + 1
    return float(trajectory.t_s[0]) + np.arange(n) / float(rate_hz)


def _bias(rng: np.random.Generator, n: int, dt: float, sigma0: float, walk: float) -> np.ndarray:
    """b_k = b_0 + cumulative random walk, per axis: (n, 3)."""
    b0 = rng.standard_normal(3) * sigma0
    steps = rng.standard_normal((n, 3)) * (walk * math.sqrt(dt))
    steps[0] = 0.0
    return b0 + np.cumsum(steps, axis=0)


def _edge_times(t: np.ndarray, distance_m: np.ndarray, tick_m: float) -> np.ndarray:
    """Times at which a non-decreasing distance crosses k * tick_m (k = 1, 2, ...), linearly interpolated."""
    if distance_m[-1] < tick_m:
        return np.zeros(0)
    levels = tick_m * np.arange(1, int(math.floor(distance_m[-1] / tick_m)) + 1)
    i = np.clip(np.searchsorted(distance_m, levels, side="left"), 1, len(t) - 1)
    d0, d1 = distance_m[i - 1], distance_m[i]
    frac = np.divide(levels - d0, d1 - d0, out=np.ones_like(levels), where=d1 > d0)
    return t[i - 1] + np.clip(frac, 0.0, 1.0) * (t[i] - t[i - 1])


def period_method_speed(edge_t: np.ndarray, sample_t: np.ndarray, tick_m: float, window_s: float,
                        timeout_s: float) -> np.ndarray:
    """Speed from tone-ring edge times at each sample time (the rules in the module docstring)."""
    last = np.searchsorted(edge_t, sample_t, side="right")  # edges at or before t_k
    first = np.searchsorted(edge_t, sample_t - window_s, side="right")
    count = last - first
    speed = np.zeros(len(sample_t))
    many = count >= 2
    if np.any(many):
        span = edge_t[last[many] - 1] - edge_t[first[many]]
        speed[many] = (count[many] - 1) * tick_m / np.maximum(span, 1e-9)
    few = ~many & (last >= 2)
    if np.any(few):
        t_last = edge_t[last[few] - 1]
        since = sample_t[few] - t_last
        period = np.maximum(t_last - edge_t[last[few] - 2], since)
        speed[few] = np.where(since <= timeout_s, tick_m / np.maximum(period, 1e-9), 0.0)
    return speed


class MotionSensorModel:
    """IMU + wheel odometry measuring a trajectory; `simulate` is deterministic in the seed."""

    def __init__(self, imu: ImuParams = ImuParams(), odometry: WheelOdometryParams = WheelOdometryParams(),
                 seed: int = 0):
        for name, value in asdict(imu).items():
            if name != "name":
                _check_positive(f"IMU {name}", value, allow_zero=name != "rate_hz")
        for name, value in asdict(odometry).items():
            if name != "name":
                _check_positive(f"odometry {name}", value, allow_zero=name not in ("rate_hz", "tick_m", "timeout_s"))
        self.imu = imu
        self.odometry = odometry
        self.seed = int(seed)

    def metadata(self) -> dict:
        """The error-model parameters and seed (what a bag records about these sensors)."""
        imu = asdict(self.imu) | {"gyro_sigma_radps": self.imu.gyro_sigma_radps,
                                  "accel_sigma_mps2": self.imu.accel_sigma_mps2}
        return {"seed": self.seed, "rng_stream": [self.seed, MOTION_SENSOR_STREAM], "imu": imu,
                "wheel_odometry": asdict(self.odometry), "frames": {"imu": "imu_link", "odometry": "odom/base_link"}}

    def simulate(self, trajectory: Trajectory) -> tuple[ImuTrack, WheelOdometryTrack]:
        if len(trajectory) < 2:
            raise InputError("a trajectory needs at least two states to be measured by motion sensors")
        rng = np.random.default_rng([self.seed, MOTION_SENSOR_STREAM])
        imu_rng, odo_rng = rng.spawn(2)
        return self._imu(trajectory, imu_rng), self._odometry(trajectory, odo_rng)

    def _imu(self, trajectory: Trajectory, rng: np.random.Generator) -> ImuTrack:
        p = self.imu
        t = _sample_times(trajectory, p.rate_hz)
        truth = trajectory.sample(t)
        accel_forward = np.interp(t, trajectory.t_s, np.gradient(trajectory.speed_mps, trajectory.t_s))
        n = len(t)
        true_gyro = np.zeros((n, 3))
        true_gyro[:, 2] = truth.yaw_rate_radps
        true_accel = np.column_stack([accel_forward, truth.speed_mps * truth.yaw_rate_radps, np.full(n, GRAVITY_MPS2)])
        dt = 1.0 / p.rate_hz
        gyro_bias = _bias(rng, n, dt, p.gyro_bias_sigma_radps, p.gyro_bias_random_walk_radps_per_rts)
        accel_bias = _bias(rng, n, dt, p.accel_bias_sigma_mps2, p.accel_bias_random_walk_mps2_per_rts)
        gyro = true_gyro + gyro_bias + rng.standard_normal((n, 3)) * p.gyro_sigma_radps
        accel = true_accel + accel_bias + rng.standard_normal((n, 3)) * p.accel_sigma_mps2
        return ImuTrack(t, gyro, accel, true_gyro, true_accel, gyro_bias, accel_bias,
                        p.gyro_sigma_radps**2, p.accel_sigma_mps2**2)

    def _odometry(self, trajectory: Trajectory, rng: np.random.Generator) -> WheelOdometryTrack:
        p = self.odometry
        t = _sample_times(trajectory, p.rate_hz)
        scale = 1.0 + float(np.clip(rng.standard_normal() * p.scale_error_sigma, -p.scale_error_max, p.scale_error_max))
        distance = np.maximum.accumulate(trajectory.distance_m - trajectory.distance_m[0]) * scale
        edges = _edge_times(trajectory.t_s, distance, p.tick_m)
        speed = period_method_speed(edges, t, p.tick_m, 1.0 / p.rate_hz, p.timeout_s)
        moving = speed > 0
        speed[moving] = np.maximum(speed[moving] + rng.standard_normal(int(moving.sum())) * p.white_sigma_mps, 0.0)
        return WheelOdometryTrack(t, speed, trajectory.sample(t).speed_mps, p.variance(speed), scale)
