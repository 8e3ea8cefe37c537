"""`cvgl import robotcar`: a tiny Oxford RobotCar run in the real formats, checked by hand."""
import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvgl_ros.datasets.bag import (
    TOPIC_CAMERA_INFO, TOPIC_GNSS_FIX, TOPIC_GT_FIX, TOPIC_GT_POSE, TOPIC_IMAGE, TOPIC_IMU, TOPIC_WHEEL_ODOM,
    bag_datum, bag_topics, read_messages,
)
from cvgl_ros.datasets.robotcar import GPS_COLUMNS, INS_COLUMNS, import_robotcar
from cvgl_ros.errors import InputError
from cvgl_ros.stamps import stamp_to_ns
from cvgl_ros.geo.yaw import quaternion_to_yaw

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3
LAT0, LON0, ALT0 = 51.7606, -1.2615, 110.0
W, H = 64, 48
COLOUR = (200, 100, 30)
IMAGE_US = [1418381798076682, 1418381798139188, 1418381798201694]
# INS rows: (t us, dlat deg, dlon deg, dalt m, yaw rad as the INS gives it: clockwise from north)
INS = [(1418381798050000, 0.0, 0.0, 0.0, 0.0), (1418381798070000, 1e-4, 0.0, 0.5, math.pi / 2),
       (1418381798090000, 1e-4, 2e-4, 1.0, 0.3), (1418381798110000, 0.0, 2e-4, 1.0, -2.5)]
# GPS rows: (t us, dlat, dlon, latitude_sigma, longitude_sigma); altitude_sigma is 9.0 in every row.
GPS = [(1418381798060000, 2e-5, -1e-5, 3.0, 4.0), (1418381798160000, 3e-5, 1e-5, 6.0, 8.0)]
# INS velocities (north, east, down) m/s and roll, pitch rad of every row.
VN, VE, VD, ROLL, PITCH = 0.1, 0.2, 0.0, 0.01, -0.02


def bayer_gbrg(rgb: np.ndarray) -> np.ndarray:
    """Mosaic an RGB image with the GBRG pattern of the Bumblebee XB3 (row 0: G B, row 1: R G)."""
    raw = np.empty(rgb.shape[:2], np.uint8)
    raw[0::2, 0::2] = rgb[0::2, 0::2, 1]
    raw[0::2, 1::2] = rgb[0::2, 1::2, 2]
    raw[1::2, 0::2] = rgb[1::2, 0::2, 0]
    raw[1::2, 1::2] = rgb[1::2, 1::2, 1]
    return raw


def write_robotcar_run(root: Path, image_rgb=None) -> Path:
    run = root / "2014-12-09-13-21-02"
    (run / "stereo" / "centre").mkdir(parents=True)
    (run / "gps").mkdir()
    (run / "stereo.timestamps").write_text("".join(f"{t} 1\n" for t in IMAGE_US))
    rgb = np.empty((H, W, 3), np.uint8) if image_rgb is None else image_rgb
    if image_rgb is None:
        rgb[:] = COLOUR
    for t in IMAGE_US:
        cv2.imwrite(str(run / "stereo" / "centre" / f"{t}.png"), bayer_gbrg(rgb))
    lines = [",".join(INS_COLUMNS)]
    for t, dlat, dlon, dalt, yaw in INS:
        lines.append(f"{t},INS_SOLUTION_GOOD,{LAT0 + dlat:.10f},{LON0 + dlon:.10f},{ALT0 + dalt:.4f},"
                     f"5735000.0,620000.0,{-(ALT0 + dalt):.4f},30U,{VN},{VE},{VD},{ROLL},{PITCH},{yaw:.10f}")
    (run / "gps" / "ins.csv").write_text("\n".join(lines) + "\n")
    lines = [",".join(GPS_COLUMNS)]
    for t, dlat, dlon, slat, slon in GPS:
        lines.append(f"{t},7,{LAT0 + dlat:.10f},{LON0 + dlon:.10f},{ALT0:.3f},{slat},{slon},9.0,5735000.0,620000.0,"
                     f"{-ALT0},30U")
    (run / "gps" / "gps.csv").write_text("\n".join(lines) + "\n")
    return run


def write_models(root: Path, shift_px: int = 0, lut: bool = True,
                 intrinsics=(983.044006, 983.044006, 643.646973, 493.378998)) -> Path:
    """The SDK's models/ folder: stereo_narrow_left.txt and (optionally) its undistortion LUT, which
    here shifts the image by `shift_px` (source x = x + shift)."""
    models = root / "models"
    models.mkdir()
    (models / "stereo_narrow_left.txt").write_text(" ".join(str(v) for v in intrinsics) +
                                                   "\n0 0 1 0\n1 0 0 0\n0 1 0 0\n0 0 0 1\n")
    if lut:
        ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
        np.concatenate([(xs + shift_px).ravel(), ys.ravel()]).tofile(models / "stereo_narrow_left_distortion_lut.bin")
    return models


def _hand_enu(dlat_deg, dlon_deg):
    phi = math.radians(LAT0)
    w = 1.0 - WGS84_E2 * math.sin(phi) ** 2
    return (WGS84_A / math.sqrt(w) * math.cos(phi) * math.radians(dlon_deg),
            WGS84_A * (1.0 - WGS84_E2) / w**1.5 * math.radians(dlat_deg))


def _by_topic(bag):
    out = {}
    for topic, _, t, msg in read_messages(bag):
        out.setdefault(topic, []).append((t, msg))
    return out


def test_robotcar_run_to_bag(tmp_path):
    run = write_robotcar_run(tmp_path)
    out = tmp_path / "rc_bag"
    summary = import_robotcar(run, out, models_dir=write_models(tmp_path), progress=False)
    assert summary["frames"] == 3 and summary["missing_images"] == 0 and summary["undistorted"]
    assert bag_topics(out) == {
        TOPIC_IMAGE: ("sensor_msgs/msg/Image", 3), TOPIC_CAMERA_INFO: ("sensor_msgs/msg/CameraInfo", 3),
        TOPIC_GNSS_FIX: ("sensor_msgs/msg/NavSatFix", 2), TOPIC_GT_FIX: ("sensor_msgs/msg/NavSatFix", 4),
        TOPIC_GT_POSE: ("geometry_msgs/msg/PoseStamped", 4),
        TOPIC_IMU: ("sensor_msgs/msg/Imu", 4), TOPIC_WHEEL_ODOM: ("nav_msgs/msg/Odometry", 4),
    }
    datum = bag_datum(out)
    assert (datum.lat_deg, datum.lon_deg, datum.alt_m) == pytest.approx((LAT0, LON0, ALT0), abs=1e-9)
    msgs = _by_topic(out)

    # Stamps: microseconds -> nanoseconds exactly; the whole bag is in log-time order.
    assert [t for t, _ in msgs[TOPIC_IMAGE]] == [t * 1000 for t in IMAGE_US]
    assert [stamp_to_ns(m.header.stamp) for _, m in msgs[TOPIC_GT_POSE]] == [r[0] * 1000 for r in INS]
    assert [t for t, _ in msgs[TOPIC_GNSS_FIX]] == [g[0] * 1000 for g in GPS]
    log_times = [t for _, _, t, _ in read_messages(out)]
    assert log_times == sorted(log_times)

    # Poses: ENU by hand from the first INS fix; NED yaw (clockwise from north) -> ENU yaw.
    expected_yaw = [math.pi / 2, 0.0, math.pi / 2 - 0.3, math.remainder(math.pi / 2 + 2.5, 2 * math.pi)]
    for (_, pose), (_, dlat, dlon, dalt, _), yaw in zip(msgs[TOPIC_GT_POSE], INS, expected_yaw):
        e, n = _hand_enu(dlat, dlon)
        p, q = pose.pose.position, pose.pose.orientation
        assert pose.header.frame_id == "map"
        assert (p.x, p.y, p.z) == pytest.approx((e, n, dalt), abs=0.01)
        assert math.remainder(float(quaternion_to_yaw(q.x, q.y, q.z, q.w)) - yaw, 2 * math.pi) == pytest.approx(0, abs=1e-9)
    assert msgs[TOPIC_GT_POSE][2][1].pose.position.x == pytest.approx(13.81, abs=0.005)  # 2e-4 deg lon at 51.76 deg

    # GNSS: the receiver's own position and per-axis sigmas: ENU diagonal (east = longitude_sigma^2,
    # north = latitude_sigma^2, up = altitude_sigma^2), known.
    for (_, fix), (_, dlat, dlon, slat, slon) in zip(msgs[TOPIC_GNSS_FIX], GPS):
        assert (fix.latitude, fix.longitude) == pytest.approx((LAT0 + dlat, LON0 + dlon), abs=1e-10)
        cov = np.asarray(fix.position_covariance).reshape(3, 3)
        assert np.allclose(cov, np.diag([slon**2, slat**2, 81.0]))
        assert fix.position_covariance_type == 2  # NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    assert np.asarray(msgs[TOPIC_GNSS_FIX][0][1].position_covariance)[[0, 4, 8]] == pytest.approx([16.0, 9.0, 81.0])
    truth = msgs[TOPIC_GT_FIX][1][1]
    assert truth.latitude == pytest.approx(LAT0 + 1e-4, abs=1e-10)

    # Camera: the GBRG mosaic demosaiced back to the colour; the SDK intrinsics scaled to 64 x 48.
    for _, img in msgs[TOPIC_IMAGE]:
        assert img.encoding == "rgb8" and (img.width, img.height) == (W, H)
        rgb = np.asarray(img.data).reshape(H, W, 3)
        assert np.abs(rgb[4:-4, 4:-4].astype(int) - COLOUR).max() <= 1
    k = msgs[TOPIC_CAMERA_INFO][0][1].k.reshape(3, 3)
    assert k[0, 0] == pytest.approx(983.044006 * W / 1280)
    assert k[1, 2] == pytest.approx((493.378998 + 0.5) * H / 960 - 0.5)  # pixel centres (geo.pinhole)


def test_motion_from_the_ins(tmp_path):
    """/odom/wheel: INS velocity projected on the heading; /imu/data: Euler-angle rates in FLU."""
    run = write_robotcar_run(tmp_path)
    out = tmp_path / "bag"
    import_robotcar(run, out, models_dir=write_models(tmp_path), progress=False)
    msgs = _by_topic(out)
    t = np.array([r[0] for r in INS]) / 1e6
    yaw_enu = np.unwrap([math.pi / 2 - r[4] for r in INS])  # ENU yaw = 90 deg - heading
    expected_rate = [(yaw_enu[1] - yaw_enu[0]) / (t[1] - t[0])]
    expected_rate += [(yaw_enu[i + 1] - yaw_enu[i - 1]) / (t[i + 1] - t[i - 1]) for i in (1, 2)]
    expected_rate += [(yaw_enu[3] - yaw_enu[2]) / (t[3] - t[2])]
    for (stamp, imu), (stamp_o, odo), row, rate in zip(msgs[TOPIC_IMU], msgs[TOPIC_WHEEL_ODOM], INS, expected_rate):
        assert stamp == stamp_o == row[0] * 1000
        heading = row[4]
        assert odo.twist.twist.linear.x == pytest.approx(VN * math.cos(heading) + VE * math.sin(heading))
        assert odo.twist.covariance[0] == 0.0 and odo.child_frame_id == "base_link"  # ins.csv has no velocity sigma
        w = imu.angular_velocity
        assert (w.x, w.y) == pytest.approx((0.0, 0.0), abs=1e-9)  # constant roll and pitch
        assert w.z == pytest.approx(rate, rel=1e-6)
        assert imu.orientation_covariance[0] == -1.0 and imu.linear_acceleration_covariance[0] == -1.0
        assert not np.any(imu.angular_velocity_covariance)  # unknown
    # Heading pi/2 (east) with the car moving east at 0.2 m/s: forward speed 0.2; heading 0 (north): 0.1.
    assert msgs[TOPIC_WHEEL_ODOM][1][1].twist.twist.linear.x == pytest.approx(VE)
    assert msgs[TOPIC_WHEEL_ODOM][0][1].twist.twist.linear.x == pytest.approx(VN)
    # Clockwise heading 0 -> pi/2 in 20 ms is a right turn: negative (clockwise) ENU yaw rate.
    assert msgs[TOPIC_IMU][0][1].angular_velocity.z == pytest.approx(-(math.pi / 2) / 0.02, rel=1e-6)


def test_without_undistortion_table_refused_unless_allow_distorted(tmp_path, cvgl_bin):
    run = write_robotcar_run(tmp_path)
    no_lut = write_models(tmp_path, lut=False)
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    for models in ([], ["--models", str(no_lut)]):
        r = subprocess.run([cvgl_bin, "import", "robotcar", "--run", str(run), "--out", str(out_parent / "bag"),
                            "--quiet", *models], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "would stay distorted" in lines[0] and "--allow-distorted" in lines[0], r.stderr
        assert list(out_parent.iterdir()) == []
    with pytest.raises(InputError, match="distortion_lut.bin"):
        import_robotcar(run, out_parent / "bag", models_dir=no_lut, progress=False)
    # Allowed: the images as they are, a loud warning, and no CameraInfo claiming a pinhole camera.
    r = subprocess.run([cvgl_bin, "import", "robotcar", "--run", str(run), "--out", str(out_parent / "bag"),
                        "--quiet", "--allow-distorted"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "WARNING" in r.stderr and "DISTORTED" in r.stderr and "no /camera/camera_info" in r.stderr
    topics = bag_topics(out_parent / "bag")
    assert TOPIC_CAMERA_INFO not in topics and topics[TOPIC_IMAGE][1] == 3 and topics[TOPIC_GNSS_FIX][1] == 2


def test_models_dir_intrinsics_and_undistortion(tmp_path):
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:, :32] = (220, 40, 40)
    rgb[:, 32:] = (40, 40, 220)
    run = write_robotcar_run(tmp_path, rgb)
    models = write_models(tmp_path, shift_px=4, intrinsics=(50.0, 51.0, 32.5, 24.5))
    plain, undist = tmp_path / "plain", tmp_path / "undist"
    import_robotcar(run, plain, progress=False, allow_distorted=True)
    import_robotcar(run, undist, models_dir=models, progress=False)
    assert TOPIC_CAMERA_INFO not in bag_topics(plain) and bag_topics(undist)[TOPIC_CAMERA_INFO][1] == 3
    a = np.asarray(next(read_messages(plain, [TOPIC_IMAGE]))[3].data).reshape(H, W, 3)
    b = np.asarray(next(read_messages(undist, [TOPIC_IMAGE]))[3].data).reshape(H, W, 3)
    row = H // 2
    assert a[row, 29, 0] > 180 and b[row, 29, 2] > 180  # the edge moved 4 px left: source x = x + 4
    assert b[row, 26, 0] > 180
    k = next(read_messages(undist, [TOPIC_CAMERA_INFO]))[3].k.reshape(3, 3)
    assert k[0, 0] == pytest.approx(50.0 * W / 1280) and k[1, 1] == pytest.approx(51.0 * H / 960)
    assert k[0, 2] == pytest.approx((32.5 + 0.5) * W / 1280 - 0.5)


def test_frames_without_png_are_skipped_and_counted(tmp_path):
    run = write_robotcar_run(tmp_path)
    (run / "stereo" / "centre" / f"{IMAGE_US[1]}.png").unlink()
    summary = import_robotcar(run, tmp_path / "bag", progress=False, allow_distorted=True)
    assert summary["frames"] == 2 and summary["missing_images"] == 1
    assert bag_topics(tmp_path / "bag")[TOPIC_IMAGE][1] == 2


def test_cli_import_robotcar(tmp_path, cvgl_bin):
    run = write_robotcar_run(tmp_path)
    out = tmp_path / "cli_bag"
    r = subprocess.run([cvgl_bin, "import", "robotcar", "--run", str(run), "--out", str(out), "--quiet", "--compressed",
                        "--models", str(write_models(tmp_path))], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3 frames" in r.stdout and "2 GPS and 4 INS rows" in r.stdout
    assert bag_topics(out)["/camera/image_raw/compressed"] == ("sensor_msgs/msg/CompressedImage", 3)


def _truncate(path: Path, keep_lines: int, cut_last: int = 0):
    lines = path.read_text().splitlines()[:keep_lines]
    if cut_last:
        lines[-1] = lines[-1][:cut_last]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("damage, message", [
    (lambda r: _truncate(r / "gps/gps.csv", 3, 20), "gps.csv line 3: expected 12 columns"),
    (lambda r: _truncate(r / "gps/ins.csv", 4, 40), "ins.csv line 4: expected 15 columns"),
    (lambda r: (r / "gps/ins.csv").write_text("timestamp,latitude,longitude\n1,2,3\n"), "ins.csv line 1: header lacks"),
    (lambda r: (r / "gps/gps.csv").write_text(""), "gps.csv line 1: empty file"),
    (lambda r: (r / "gps/ins.csv").write_text(
        (r / "gps/ins.csv").read_text().replace(",0.3000000000\n", ",abc\n")), "ins.csv line 4: yaw 'abc'"),
    (lambda r: (r / "stereo.timestamps").write_text(f"{IMAGE_US[0]} 1\n{IMAGE_US[1]}\n"), "stereo.timestamps line 2"),
    (lambda r: (r / "stereo/centre" / f"{IMAGE_US[2]}.png").write_bytes(
        (r / "stereo/centre" / f"{IMAGE_US[2]}.png").read_bytes()[:70]), f"{IMAGE_US[2]}.png: not a readable PNG"),
    (lambda r: (r / "gps/gps.csv").unlink(), "missing"),
])
def test_bad_input_one_line_exit_2_no_partial_output(tmp_path, cvgl_bin, damage, message):
    run = write_robotcar_run(tmp_path)
    damage(run)
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    r = subprocess.run([cvgl_bin, "import", "robotcar", "--run", str(run), "--out", str(out_parent / "bag"), "--quiet",
                        "--allow-distorted"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert list(out_parent.iterdir()) == []


def test_not_a_run(tmp_path):
    with pytest.raises(InputError, match="stereo.timestamps"):
        import_robotcar(tmp_path, tmp_path / "bag", progress=False, allow_distorted=True)
    assert not (tmp_path / "bag").exists()
