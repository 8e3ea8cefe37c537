"""The on-disk formats everything shares: atomic outputs, rosbag2 via rosbags, training pairs."""
import numpy as np
import pytest

from cvgl_ros import atomic
from cvgl_ros.datasets import bag as bagio
from cvgl_ros.datasets.pairs import PairDataset, PairWriter
from cvgl_ros.errors import InputError
from cvgl_ros.geo import Datum, quaternion_to_yaw
from cvgl_ros.stamps import stamp_to_ns


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic.write_json(tmp_path / "x.json", {"v": float("nan")})
    assert not list(tmp_path.iterdir())


def test_atomic_output_into_unwritable_place_is_input_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError):
        atomic.write_text(blocker / "sub" / "x.txt", "x")


def test_bag_round_trip_with_datum(tmp_path):
    path = tmp_path / "drive"
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    with bagio.BagWriter(path) as bag:
        bag.set_datum(Datum(48.1, 11.5, 520.0))
        bag.write(bagio.TOPIC_IMAGE, bagio.MSG_IMAGE, 1_000, bagio.image_msg(rgb, 1_000))
        bag.write(bagio.TOPIC_GNSS_FIX, bagio.MSG_NAVSATFIX, 2_000,
                  bagio.navsatfix_msg(48.1, 11.5, 520.0, 2_000, sigma_m=3.0))
        bag.write(bagio.TOPIC_GT_POSE, bagio.MSG_POSE_STAMPED, 3_000,
                  bagio.pose_stamped_msg(1.0, 2.0, 0.0, 0.7, 3_000))
    assert bagio.bag_datum(path) == Datum(48.1, 11.5, 520.0)
    topics = bagio.bag_topics(path)
    assert topics[bagio.TOPIC_IMAGE] == (bagio.MSG_IMAGE, 1)
    msgs = list(bagio.read_messages(path))
    assert [m[2] for m in msgs] == [1_000, 2_000, 3_000]
    image = msgs[0][3]
    assert (image.height, image.width, image.step, image.encoding) == (4, 6, 18, "rgb8")
    assert np.array_equal(np.asarray(image.data).reshape(4, 6, 3), rgb)
    fix = msgs[1][3]
    assert fix.position_covariance[0] == pytest.approx(9.0)
    assert fix.position_covariance_type == bagio.COVARIANCE_TYPE_DIAGONAL_KNOWN
    pose = msgs[2][3]
    q = pose.pose.orientation
    assert float(quaternion_to_yaw(q.x, q.y, q.z, q.w)) == pytest.approx(0.7)
    assert pose.header.frame_id == "map" and stamp_to_ns(pose.header.stamp) == 3_000


def test_motion_sensor_and_per_axis_fix_messages_round_trip(tmp_path):
    path = tmp_path / "motion"
    with bagio.BagWriter(path) as bag:
        bag.write(bagio.TOPIC_IMU, bagio.MSG_IMU, 10, bagio.imu_msg(
            10, (0.01, -0.02, 0.3), (0.5, 1.2, 9.8), angular_velocity_variance=4e-6,
            linear_acceleration_variance=(1e-4, 2e-4, 3e-4)))
        bag.write(bagio.TOPIC_IMU, bagio.MSG_IMU, 20, bagio.imu_msg(
            20, (0.0, 0.0, 0.1), None, angular_velocity_variance=None, linear_acceleration_variance=None))
        bag.write(bagio.TOPIC_WHEEL_ODOM, bagio.MSG_ODOMETRY, 30, bagio.wheel_odometry_msg(30, 7.5, 0.04))
        bag.write(bagio.TOPIC_GNSS_FIX, bagio.MSG_NAVSATFIX, 40, bagio.navsatfix_msg(
            48.1, 11.5, 520.0, 40, sigma_m=None, variances_enu=(16.0, 9.0, 81.0)))
        bag.write(bagio.TOPIC_GNSS_FIX, bagio.MSG_NAVSATFIX, 50, bagio.navsatfix_msg(
            48.1, 11.5, 520.0, 50, sigma_m=0.5, covariance_type=bagio.COVARIANCE_TYPE_APPROXIMATED))
    msgs = [m for _, _, _, m in bagio.read_messages(path)]
    imu, imu_no_accel, odo, fix_axes, fix_approx = msgs
    assert imu.header.frame_id == "imu_link" and imu.orientation_covariance[0] == -1.0
    assert (imu.angular_velocity.z, imu.linear_acceleration.y) == pytest.approx((0.3, 1.2))
    assert np.allclose(imu.angular_velocity_covariance.reshape(3, 3), np.eye(3) * 4e-6)
    assert np.allclose(np.diag(imu.linear_acceleration_covariance.reshape(3, 3)), [1e-4, 2e-4, 3e-4])
    assert not np.any(imu_no_accel.angular_velocity_covariance)  # unknown
    assert imu_no_accel.linear_acceleration_covariance[0] == -1.0  # not provided
    assert (odo.header.frame_id, odo.child_frame_id) == ("odom", "base_link")
    assert odo.twist.twist.linear.x == 7.5 and odo.twist.covariance[0] == pytest.approx(0.04)
    assert np.all(np.diag(odo.twist.covariance.reshape(6, 6))[1:] == bagio.UNKNOWN_VARIANCE)
    assert np.all(np.diag(odo.pose.covariance.reshape(6, 6)) == bagio.UNKNOWN_VARIANCE)
    assert np.allclose(fix_axes.position_covariance.reshape(3, 3), np.diag([16.0, 9.0, 81.0]))
    assert fix_axes.position_covariance_type == bagio.COVARIANCE_TYPE_DIAGONAL_KNOWN
    assert fix_approx.position_covariance_type == bagio.COVARIANCE_TYPE_APPROXIMATED == 1
    assert fix_approx.position_covariance[0] == pytest.approx(0.25)


def test_failed_bag_write_leaves_no_bag(tmp_path):
    path = tmp_path / "broken"
    with pytest.raises(RuntimeError):
        with bagio.BagWriter(path) as bag:
            bag.write(bagio.TOPIC_GT_POSE, bagio.MSG_POSE_STAMPED, 1, bagio.pose_stamped_msg(0, 0, 0, 0, 1))
            raise RuntimeError("interrupted")
    assert not path.exists()
    assert not list(tmp_path.iterdir())


def test_reading_a_non_bag_is_input_error(tmp_path):
    with pytest.raises(InputError):
        list(bagio.read_messages(tmp_path))
    with pytest.raises(InputError):
        bagio.bag_datum(tmp_path / "missing")


def _sample(rng, world, i):
    return {
        "ground": np.dstack([np.tile(np.linspace(0, 250, 64), (32, 1)) * (c + 1) / 3 + i for c in range(3)]).astype(np.uint8),
        "satellite": rng.integers(0, 255, (48, 48, 3), dtype=np.uint8),
        "K": np.eye(3), "camera_height_m": 1.65, "offset_en_m": rng.uniform(-20, 20, 2),
        "yaw_enu_rad": rng.uniform(-3, 3), "yaw_prior_enu_rad": float("nan") if i % 2 else 0.1,
        "position_en_m": rng.uniform(-500, 500, 2), "world": world, "drive": i // 3, "frame": i,
    }


def test_pairs_round_trip_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    samples = [_sample(rng, "w1" if i < 7 else "w2", i) for i in range(10)]
    with PairWriter(tmp_path / "ds", {"patch_mpp": 0.2}, shard_size=3) as writer:
        writer.add_world("w1", {"seed": 1})
        writer.add_world("w2", {"seed": 2})
        for s in samples[:7]:
            writer.add("train", s)
        for s in samples[7:]:
            writer.add("cross_area", s)
    train = PairDataset(tmp_path / "ds", "train")
    assert len(train) == 7 and len(train.shards) == 3
    got = train[5]
    want = samples[5]
    assert np.allclose(got["offset_en_m"], want["offset_en_m"], atol=1e-5)
    assert got["drive"] == 1 and got["frame"] == 5 and got["world"] == "w1"
    assert np.isnan(got["yaw_prior_enu_rad"])
    # JPEG is lossy but close on average
    assert np.abs(got["ground"].astype(int) - want["ground"]).mean() < 3
    streamed = list(PairDataset(tmp_path / "ds", "cross_area").iter_shards())
    assert [s["frame"] for s in streamed] == [7, 8, 9] and streamed[0]["world"] == "w2"
    with pytest.raises(InputError):
        PairDataset(tmp_path / "ds", "same_area")
    with pytest.raises(InputError):
        PairDataset(tmp_path, "train")


def test_bag_storage_file_carries_the_bag_name(tmp_path):
    with bagio.BagWriter(tmp_path / "drive7") as bag:
        bag.write(bagio.TOPIC_GT_POSE, bagio.MSG_POSE_STAMPED, 1, bagio.pose_stamped_msg(0, 0, 0, 0, 1))
    names = sorted(p.name for p in (tmp_path / "drive7").iterdir())
    assert names == [atomic.MARKER, "drive7.mcap", "metadata.yaml"]
    assert len(list(bagio.read_messages(tmp_path / "drive7"))) == 1


def test_output_under_a_file_is_one_line_input_error(tmp_path):
    blocker = tmp_path / "plain_file"
    blocker.write_text("")
    with pytest.raises(InputError, match="is a file"):
        atomic.write_text(blocker / "x.txt", "x")


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    atomic.write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask
    with atomic.atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("y")
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~mask
