"""`cvgl sim drive`: a real (small) generated world, driven and recorded into a bag."""
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cvgl_ros.datasets.bag import (
    MOTION_SENSORS_KEY, TOPIC_CAMERA_INFO, TOPIC_GNSS_FIX, TOPIC_GT_FIX, TOPIC_GT_POSE, TOPIC_IMAGE,
    TOPIC_IMAGE_COMPRESSED, TOPIC_IMU, TOPIC_WHEEL_ODOM, bag_custom_data, bag_datum, bag_topics, read_messages,
)
from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import angle_diff, quaternion_to_yaw
from cvgl_ros.imaging import decode_compressed
from cvgl_ros.sim.drive import SIM_EPOCH_NS, record_drive
from cvgl_ros.sim.motion_sensors import ImuParams, WheelOdometryParams
from cvgl_ros.stamps import stamp_to_ns
from cvgl_ros.sim.world import World

DURATION_S = 8.0
CAM_W, CAM_H = 128, 48


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    World.generate(3, "urban", 200.0).save(out)
    return out


@pytest.fixture(scope="module")
def drive(world_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("drive") / "bag"
    result = record_drive(world_dir, out, seed=2, duration_s=DURATION_S, gnss="urban_canyon",
                          width=CAM_W, height=CAM_H, progress=False)
    msgs = {}
    for topic, _, t, msg in read_messages(out):
        msgs.setdefault(topic, []).append((t, msg))
    return result, out, msgs


def test_topics_types_and_rates(drive, world_dir):
    result, out, msgs = drive
    topics = bag_topics(out)
    assert topics == {
        TOPIC_IMAGE: ("sensor_msgs/msg/Image", 81), TOPIC_CAMERA_INFO: ("sensor_msgs/msg/CameraInfo", 81),
        TOPIC_GNSS_FIX: ("sensor_msgs/msg/NavSatFix", 41), TOPIC_GT_FIX: ("sensor_msgs/msg/NavSatFix", 41),
        TOPIC_GT_POSE: ("geometry_msgs/msg/PoseStamped", 81),  # camera stamps include the 5 Hz GNSS ones
        TOPIC_IMU: ("sensor_msgs/msg/Imu", 801), TOPIC_WHEEL_ODOM: ("nav_msgs/msg/Odometry", 401),
    }
    world = World.load(world_dir)
    assert bag_datum(out) == world.datum
    for topic, items in msgs.items():
        log_t = np.array([t for t, _ in items])
        header_t = np.array([stamp_to_ns(m.header.stamp) for _, m in items])
        assert np.array_equal(log_t, header_t) and np.all(np.diff(log_t) > 0), topic
        assert log_t[0] == SIM_EPOCH_NS
    cam_t = np.array([t for t, _ in msgs[TOPIC_IMAGE]]) / 1e9
    assert len(cam_t) / (cam_t[-1] - cam_t[0]) >= 9.0
    assert np.allclose(np.diff(cam_t), 0.1, atol=1e-6)
    all_t = [t for _, _, t, _ in read_messages(out)]
    assert all_t == sorted(all_t)


def test_images_and_camera_info(drive):
    result, out, msgs = drive
    img = msgs[TOPIC_IMAGE][40][1]
    assert img.encoding == "rgb8" and (img.width, img.height) == (CAM_W, CAM_H) and img.step == 3 * CAM_W
    rgb = np.asarray(img.data).reshape(CAM_H, CAM_W, 3)
    assert rgb.std() > 5.0  # a rendered scene, not a blank frame
    info = msgs[TOPIC_CAMERA_INFO][0][1]
    k = info.k.reshape(3, 3)
    assert (info.width, info.height) == (CAM_W, CAM_H)
    assert k[0, 0] > 0 and 0 < k[0, 2] < CAM_W and 0 < k[1, 2] < CAM_H and k[2, 2] == 1.0


def test_ground_truth_is_a_physical_drive(drive, world_dir):
    result, out, msgs = drive
    world = World.load(world_dir)
    poses = msgs[TOPIC_GT_POSE]
    t = np.array([s for s, _ in poses]) / 1e9
    e = np.array([m.pose.position.x for _, m in poses])
    n = np.array([m.pose.position.y for _, m in poses])
    yaw = np.array([float(quaternion_to_yaw(m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
                                            m.pose.orientation.w)) for _, m in poses])
    assert all(m.header.frame_id == "map" for _, m in poses)
    assert np.all(world.contains(e, n))
    speed = np.hypot(np.diff(e), np.diff(n)) / np.diff(t)
    assert speed.max() <= 15.0 + 1e-6
    assert speed[:5].max() < 2.0  # it starts from rest
    moving = speed > 2.0
    heading = np.arctan2(np.diff(n), np.diff(e))
    assert moving.sum() > 10
    assert np.abs(angle_diff(heading[moving], yaw[:-1][moving])).max() < 0.15
    # The truth in the result is the one in the bag.
    sampled = result.trajectory.sample(t - t[0])
    assert np.allclose(sampled.east_m, e, atol=1e-6) and np.allclose(sampled.north_m, n, atol=1e-6)


def test_gnss_fixes_match_the_model_and_the_truth(drive, world_dir):
    result, out, msgs = drive
    datum = World.load(world_dir).datum
    track = result.gnss
    fixes, truths = msgs[TOPIC_GNSS_FIX], msgs[TOPIC_GT_FIX]
    assert len(fixes) == len(track) == len(truths)
    for i, ((_, fix), (_, truth)) in enumerate(zip(fixes, truths)):
        te, tn, _ = datum.to_enu(truth.latitude, truth.longitude, truth.altitude)
        assert float(te) == pytest.approx(track.true_east_m[i], abs=1e-3)
        assert float(tn) == pytest.approx(track.true_north_m[i], abs=1e-3)
        if track.valid[i]:
            assert fix.status.status == 0
            e, n, _ = datum.to_enu(fix.latitude, fix.longitude, fix.altitude)
            assert float(e) == pytest.approx(track.east_m[i], abs=1e-3)
            assert float(n) == pytest.approx(track.north_m[i], abs=1e-3)
            assert fix.position_covariance[0] == pytest.approx(track.reported_sigma_m[i] ** 2)
        else:
            assert fix.status.status == -1 and math.isnan(fix.latitude) and fix.position_covariance_type == 0
    stats = result.gnss_error_stats()
    assert 0.5 < stats["mean_m"] < 60.0 and stats["p99_m"] >= stats["p95_m"] >= stats["p50_m"]


def _stamps_s(items):
    return (np.array([t for t, _ in items]) - SIM_EPOCH_NS) / 1e9


def test_imu_round_trip_yaw_rate_matches_the_truth(drive):
    result, out, msgs = drive
    imu_msgs = msgs[TOPIC_IMU]
    t = _stamps_s(imu_msgs)
    assert np.allclose(t, np.arange(len(t)) / 100.0, atol=1e-9)
    truth = result.trajectory.sample(t)
    p = ImuParams()
    yaw_rate = np.array([m.angular_velocity.z for _, m in imu_msgs])
    err = yaw_rate - truth.yaw_rate_radps
    # White noise at 100 Hz plus a constant-ish bias: the spread is the white noise, the mean the bias.
    assert np.std(err) == pytest.approx(p.gyro_sigma_radps, rel=0.1)
    assert abs(np.mean(err)) < 4 * p.gyro_bias_sigma_radps + 4 * p.gyro_sigma_radps / math.sqrt(len(err))
    # Integrated, the measured yaw rate follows the true heading change within the error model.
    yaw_true = np.unwrap(truth.yaw_enu_rad)
    assert abs(yaw_true[-1] - yaw_true[0]) > 0.1 or np.abs(truth.yaw_rate_radps).max() < 1e-3
    dyaw = np.sum(yaw_rate[1:] * np.diff(t))
    bound = 4 * math.hypot(p.gyro_noise_density_radps_per_rthz * math.sqrt(t[-1]), p.gyro_bias_sigma_radps * t[-1])
    assert abs(dyaw - (yaw_true[-1] - yaw_true[0])) < bound + 0.01  # + the rectangle rule on a 100 Hz grid
    # Accelerations: centripetal v * r to the left, the forward one, +g up.
    ax = np.array([m.linear_acceleration.x for _, m in imu_msgs])
    ay = np.array([m.linear_acceleration.y for _, m in imu_msgs])
    az = np.array([m.linear_acceleration.z for _, m in imu_msgs])
    tol = 5 * p.accel_bias_sigma_mps2 + 5 * p.accel_sigma_mps2
    assert np.mean(np.abs(ay - truth.speed_mps * truth.yaw_rate_radps)) < tol
    assert np.mean(np.abs(ax - np.gradient(truth.speed_mps, t))) < tol
    assert np.mean(az) == pytest.approx(9.80665, abs=tol)
    # The message: frame, no orientation, covariance diagonals from the error model.
    m = imu_msgs[10][1]
    assert m.header.frame_id == "imu_link" and m.orientation_covariance[0] == -1.0
    assert np.allclose(m.angular_velocity_covariance.reshape(3, 3), np.eye(3) * p.gyro_sigma_radps**2)
    assert np.allclose(m.linear_acceleration_covariance.reshape(3, 3), np.eye(3) * p.accel_sigma_mps2**2)
    # Same numbers as the result's track (what the bag holds is what was simulated).
    assert np.allclose(yaw_rate, result.imu.yaw_rate_radps)


def test_wheel_odometry_round_trip_speed_matches_the_truth(drive):
    result, out, msgs = drive
    odo = msgs[TOPIC_WHEEL_ODOM]
    t = _stamps_s(odo)
    assert np.allclose(t, np.arange(len(t)) / 50.0, atol=1e-9)
    true_v = result.trajectory.sample(t).speed_mps
    v = np.array([m.twist.twist.linear.x for _, m in odo])
    var = np.array([m.twist.covariance[0] for _, m in odo])
    p = WheelOdometryParams()
    assert true_v.max() > 3.0  # the car got going
    assert np.all(v >= 0) and np.all(var > 0)
    moving = true_v > 3.0
    # Within the scale factor drawn (<= 2.5 %) and the white noise.
    rel = np.median(v[moving] / true_v[moving])
    assert abs(rel - 1.0) <= p.scale_error_max + 0.005
    assert rel == pytest.approx(result.odometry.scale_factor, abs=0.005)
    # The reported variance bounds the error (scale factor included) nearly everywhere.
    z = (v - true_v) / np.sqrt(var)
    assert np.mean(np.abs(z) < 3) > 0.99
    # It starts from rest: exactly zero speed before the first wheel edges.
    assert v[0] == 0.0
    m = odo[5][1]
    assert m.header.frame_id == "odom" and m.child_frame_id == "base_link"
    assert m.pose.covariance[0] >= 1e6 and m.twist.covariance[7] >= 1e6
    meta = json.loads(bag_custom_data(out)[MOTION_SENSORS_KEY])
    assert meta["seed"] == 2 and meta["imu"]["rate_hz"] == 100.0 and meta["wheel_odometry"]["rate_hz"] == 50.0
    assert meta["imu"]["gyro_sigma_radps"] == pytest.approx(ImuParams().gyro_sigma_radps)


def test_motion_sensors_change_no_other_output(world_dir, tmp_path, drive):
    result, out, msgs = drive
    plain = record_drive(world_dir, tmp_path / "plain", seed=2, duration_s=DURATION_S, gnss="urban_canyon",
                         width=CAM_W, height=CAM_H, progress=False, motion_sensors=False)
    assert TOPIC_IMU not in bag_topics(tmp_path / "plain") and TOPIC_WHEEL_ODOM not in bag_topics(tmp_path / "plain")
    assert MOTION_SENSORS_KEY not in bag_custom_data(tmp_path / "plain")
    assert np.array_equal(plain.gnss.east_m, result.gnss.east_m, equal_nan=True)
    again = {}
    for topic, _, t, msg in read_messages(tmp_path / "plain", [TOPIC_GNSS_FIX, TOPIC_IMAGE]):
        again.setdefault(topic, []).append((t, msg))
    for topic in (TOPIC_GNSS_FIX, TOPIC_IMAGE):
        assert [t for t, _ in again[topic]] == [t for t, _ in msgs[topic]]
    assert np.array_equal(np.asarray(again[TOPIC_IMAGE][-1][1].data), np.asarray(msgs[TOPIC_IMAGE][-1][1].data))
    assert [m.latitude for _, m in again[TOPIC_GNSS_FIX]] == pytest.approx(
        [m.latitude for _, m in msgs[TOPIC_GNSS_FIX]], nan_ok=True)


def test_same_seed_same_bag_content(drive, world_dir, tmp_path):
    result, out, msgs = drive
    again = record_drive(world_dir, tmp_path / "again", seed=2, duration_s=DURATION_S, gnss="urban_canyon",
                         width=CAM_W, height=CAM_H, progress=False)
    assert np.array_equal(again.trajectory.east_m, result.trajectory.east_m)
    assert np.array_equal(again.gnss.east_m, result.gnss.east_m, equal_nan=True)
    first = next(read_messages(tmp_path / "again", [TOPIC_IMAGE]))[3]
    assert np.array_equal(np.asarray(first.data), np.asarray(msgs[TOPIC_IMAGE][0][1].data))
    assert np.array_equal(again.imu.gyro_radps, result.imu.gyro_radps)
    assert np.array_equal(again.odometry.speed_mps, result.odometry.speed_mps)


def test_compressed_and_clean(world_dir, tmp_path):
    result = record_drive(world_dir, tmp_path / "c", seed=5, duration_s=2.0, gnss="clean", compressed=True,
                          width=CAM_W, height=CAM_H, progress=False)
    topics = bag_topics(tmp_path / "c")
    assert TOPIC_IMAGE not in topics and topics[TOPIC_IMAGE_COMPRESSED] == ("sensor_msgs/msg/CompressedImage", 21)
    msg = next(read_messages(tmp_path / "c", [TOPIC_IMAGE_COMPRESSED]))[3]
    assert msg.format == "jpeg" and decode_compressed(msg.format, msg.data).shape == (CAM_H, CAM_W, 3)
    assert result.gnss_error_stats()["max_m"] == 0.0


def test_cli_prints_gnss_error_statistics(world_dir, tmp_path, cvgl_bin):
    out = tmp_path / "cli_bag"
    r = subprocess.run([cvgl_bin, "sim", "drive", "--world", str(world_dir), "--seed", "1", "--duration-s", "3",
                        "--gnss", "open_sky", "--width", str(CAM_W), "--height", str(CAM_H), "--quiet", "--out", str(out),
                        "--no-motion-sensors"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "raw GNSS error (open_sky" in r.stdout and " p95 " in r.stdout and " p99 " in r.stdout
    topics = bag_topics(out)
    assert topics[TOPIC_IMAGE][1] == 31 and TOPIC_IMU not in topics and TOPIC_WHEEL_ODOM not in topics


@pytest.mark.parametrize("case", ["negative_duration", "no_tiles", "unwritable", "unknown_gnss", "not_a_world"])
def test_bad_input_one_line_exit_2_no_partial_bag(case, world_dir, tmp_path, cvgl_bin):
    world, duration, gnss = str(world_dir), "3", "clean"
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    out = out_parent / "bag"
    if case == "negative_duration":
        duration = "-5"
    elif case == "no_tiles":
        bare = tmp_path / "bare_world"
        bare.mkdir()
        shutil.copy(world_dir / "world.json", bare / "world.json")
        world = str(bare)
    elif case == "unwritable":
        (out_parent / "file").write_text("x")
        out = out_parent / "file" / "bag"
    elif case == "unknown_gnss":
        gnss = "indoor"
    elif case == "not_a_world":
        world = str(tmp_path)
    r = subprocess.run([cvgl_bin, "sim", "drive", "--world", world, "--seed", "1", "--duration-s", duration,
                        "--gnss", gnss, "--width", str(CAM_W), "--height", str(CAM_H), "--quiet", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in out_parent.iterdir()) == (["file"] if case == "unwritable" else [])


def test_api_rejects_bad_arguments(world_dir, tmp_path):
    with pytest.raises(InputError, match="duration"):
        record_drive(world_dir, tmp_path / "b", seed=0, duration_s=0.0, progress=False)
    with pytest.raises(InputError, match="camera rate"):
        record_drive(world_dir, tmp_path / "b", seed=0, duration_s=1.0, camera_hz=0.0, progress=False)
    assert not (tmp_path / "b").exists()
