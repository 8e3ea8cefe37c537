"""The simulated IMU and wheel odometry (cvgl_ros.sim.motion_sensors) against the truth they measure."""
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.sim.motion_sensors import (
    GRAVITY_MPS2, ImuParams, MotionSensorModel, WheelOdometryParams, period_method_speed,
)
from cvgl_ros.sim.trajectory import simulate_drive

# A 200 m x 120 m block driven round for 5 minutes: straights, four corners per lap, two stops.
BLOCK = np.array([[0.0, 0.0], [200.0, 0.0], [200.0, 120.0], [0.0, 120.0], [0.0, 0.0]])


@pytest.fixture(scope="module")
def truth():
    return simulate_drive(BLOCK, stop_s=[200.0, 520.0], seed=4, duration_s=300.0)


def test_truth_yaw_rate_and_speed_are_the_trajectory_kinematics(truth):
    """What the sensors measure is consistent with the trajectory's positions and headings."""
    t = truth.t_s
    yaw = np.unwrap(truth.yaw_enu_rad)
    rate = truth.yaw_rate_radps
    integrated_yaw = yaw[0] + np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(t))])
    assert np.abs(integrated_yaw - yaw).max() < 0.02
    assert abs(yaw[-1] - yaw[0]) > 4 * 2 * math.pi * 0.9  # several laps of left turns
    step = np.hypot(np.diff(truth.east_m), np.diff(truth.north_m))
    mean_speed = 0.5 * (truth.speed_mps[1:] + truth.speed_mps[:-1])
    assert np.abs(step - mean_speed * np.diff(t)).max() < 0.01
    moving = truth.speed_mps[:-1] > 1.0
    heading = np.arctan2(np.diff(truth.north_m), np.diff(truth.east_m))
    off = np.abs(np.angle(np.exp(1j * (heading[moving] - truth.yaw_enu_rad[:-1][moving]))))
    assert off.max() < 0.1 and off.mean() < 0.01  # the path's 0.5 m heading samples, in the corners


def test_gyro_white_noise_bias_and_integrated_heading(truth):
    p = ImuParams()
    imu, _ = MotionSensorModel(seed=11).simulate(truth)
    assert len(imu) == 30001 and np.allclose(np.diff(imu.t_s), 0.01)
    err = imu.gyro_radps - imu.true_gyro_radps - imu.gyro_bias_radps
    assert np.std(err, axis=0) == pytest.approx([p.gyro_sigma_radps] * 3, rel=0.03)
    assert imu.gyro_variance == pytest.approx(p.gyro_sigma_radps**2)
    assert p.gyro_sigma_radps == pytest.approx(math.radians(0.014) * 10.0)
    # The bias wanders slowly: over 5 minutes it moves by about K sqrt(T), far less than sigma_b0.
    drift = imu.gyro_bias_radps[-1] - imu.gyro_bias_radps[0]
    assert np.all(np.abs(drift) < 5 * p.gyro_bias_random_walk_radps_per_rts * math.sqrt(300.0))
    # Heading from the integrated yaw rate: within angle random walk + bias x time.
    yaw_true = np.unwrap(truth.sample(imu.t_s).yaw_enu_rad)
    dyaw = np.concatenate([[0.0], np.cumsum(imu.yaw_rate_radps[1:] * 0.01)])
    heading_err = dyaw - (yaw_true - yaw_true[0])
    expected = imu.gyro_bias_radps[0, 2] * (imu.t_s - imu.t_s[0])
    arw_bound = 5 * p.gyro_noise_density_radps_per_rthz * math.sqrt(300.0)
    assert np.abs(heading_err - expected).max() < arw_bound + 0.02


def test_accelerometer_measures_specific_force(truth):
    p = ImuParams()
    imu, _ = MotionSensorModel(seed=12).simulate(truth)
    s = truth.sample(imu.t_s)
    assert np.allclose(imu.true_accel_mps2[:, 1], s.speed_mps * s.yaw_rate_radps)
    assert np.allclose(imu.true_accel_mps2[:, 2], GRAVITY_MPS2)
    # Forward acceleration integrates back to the speed profile.
    ax = imu.true_accel_mps2[:, 0]
    v = s.speed_mps[0] + np.concatenate([[0.0], np.cumsum(0.5 * (ax[1:] + ax[:-1]) * 0.01)])
    assert np.abs(v - s.speed_mps).max() < 0.1
    # Centripetal acceleration in the corners: a left turn pulls left (+y).
    assert imu.true_accel_mps2[:, 1].max() > 1.0 and imu.true_accel_mps2[:, 1].min() > -0.5
    err = imu.accel_mps2 - imu.true_accel_mps2 - imu.accel_bias_mps2
    assert np.std(err, axis=0) == pytest.approx([p.accel_sigma_mps2] * 3, rel=0.03)


def test_turn_on_biases_and_scale_factors_over_many_drives():
    """Across seeds the drawn biases and scale factors have the documented spread."""
    short = simulate_drive(BLOCK, seed=0, duration_s=2.0)
    gyro_b0, accel_b0, scales = [], [], []
    for seed in range(300):
        imu, odo = MotionSensorModel(seed=seed).simulate(short)
        gyro_b0.append(imu.gyro_bias_radps[0])
        accel_b0.append(imu.accel_bias_mps2[0])
        scales.append(odo.scale_factor)
    p, q = ImuParams(), WheelOdometryParams()
    assert np.std(gyro_b0) == pytest.approx(p.gyro_bias_sigma_radps, rel=0.1)
    assert np.std(accel_b0) == pytest.approx(p.accel_bias_sigma_mps2, rel=0.1)
    scales = np.array(scales)
    assert np.std(scales - 1.0) == pytest.approx(q.scale_error_sigma, rel=0.15)
    assert np.abs(scales - 1.0).max() <= q.scale_error_max + 1e-12


def test_wheel_speed_follows_the_truth_and_is_zero_when_stopped(truth):
    q = WheelOdometryParams()
    _, odo = MotionSensorModel(seed=5).simulate(truth)
    assert len(odo) == 15001 and np.allclose(np.diff(odo.t_s), 0.02)
    true_v = odo.true_speed_mps
    fast = true_v > 3.0
    rel_err = odo.speed_mps[fast] / (odo.scale_factor * true_v[fast]) - 1.0
    assert abs(np.median(rel_err)) < 0.003
    assert np.std(odo.speed_mps[fast] - odo.scale_factor * true_v[fast]) < 3 * q.white_sigma_mps
    # Standing still for longer than the timeout: exactly zero, never negative.
    stopped_since = np.zeros(len(odo), dtype=bool)
    still = truth.sample(odo.t_s).speed_mps == 0.0
    run = 0
    for i, s in enumerate(still):
        run = run + 1 if s else 0
        stopped_since[i] = run * 0.02 > q.timeout_s + 0.02
    assert stopped_since.sum() > 50  # the drive has stops
    assert np.all(odo.speed_mps[stopped_since] == 0.0)
    assert np.all(odo.speed_mps >= 0.0)
    # The reported variance bounds the error (the scale factor unknown to the consumer) nearly always.
    z = (odo.speed_mps - true_v) / np.sqrt(odo.variance_mps2)
    assert np.mean(np.abs(z) < 3.0) > 0.995


def test_period_method_on_known_edges():
    tick = 0.05
    edges = np.arange(1, 200) * tick / 10.0  # 10 m/s: an edge every 5 ms
    v = period_method_speed(edges, np.array([0.5, 0.9]), tick, window_s=0.02, timeout_s=0.3)
    assert v == pytest.approx([10.0, 10.0])
    sparse = np.array([1.0, 1.1])  # 0.5 m/s: one edge per 0.1 s, fewer than the 20 ms window holds
    v = period_method_speed(sparse, np.array([1.105, 1.25, 1.5, 0.5]), tick, window_s=0.02, timeout_s=0.3)
    assert v == pytest.approx([0.5, tick / 0.15, 0.0, 0.0])


def test_same_seed_same_measurements_other_seed_other_noise(truth):
    a_imu, a_odo = MotionSensorModel(seed=7).simulate(truth)
    b_imu, b_odo = MotionSensorModel(seed=7).simulate(truth)
    c_imu, c_odo = MotionSensorModel(seed=8).simulate(truth)
    assert np.array_equal(a_imu.gyro_radps, b_imu.gyro_radps) and np.array_equal(a_odo.speed_mps, b_odo.speed_mps)
    assert not np.array_equal(a_imu.gyro_radps, c_imu.gyro_radps)
    # Its own stream: not the draws a default_rng(seed) gives the GNSS model or the route.
    first = np.random.default_rng(7).standard_normal(3) * ImuParams().gyro_bias_sigma_radps
    assert not np.allclose(a_imu.gyro_bias_radps[0], first)
    meta = MotionSensorModel(seed=7).metadata()
    assert meta["seed"] == 7 and meta["imu"]["name"] == "automotive_mems" and meta["wheel_odometry"]["tick_m"] == 0.052


def test_bad_parameters_are_input_errors():
    with pytest.raises(InputError, match="rate_hz"):
        MotionSensorModel(ImuParams(rate_hz=0.0))
    with pytest.raises(InputError, match="white_sigma_mps"):
        MotionSensorModel(odometry=WheelOdometryParams(white_sigma_mps=float("nan")))
