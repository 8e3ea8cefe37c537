"""`cvgl import kitti`: a tiny KITTI raw drive written in the real formats, checked by hand."""
import json
import math
import os
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvgl_ros.datasets.bag import (
    GNSS_MODEL_KEY, TOPIC_CAMERA_INFO, TOPIC_GNSS_FIX, TOPIC_GT_FIX, TOPIC_GT_POSE, TOPIC_IMAGE,
    TOPIC_IMAGE_COMPRESSED, TOPIC_IMU, TOPIC_WHEEL_ODOM, bag_custom_data, bag_datum, bag_topics, read_messages,
)
from cvgl_ros.datasets.kitti import OXTS_FIELDS, import_kitti, oxts_trajectory, read_kitti_drive, satmap_mpp
from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import quaternion_to_yaw
from cvgl_ros.stamps import stamp_to_ns
from cvgl_ros.imaging import decode_compressed

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3
LAT0, LON0, ALT0 = 49.0, 8.4, 110.0
W, H = 40, 16
# P_rect_02 of a real 2011_09_26 calibration, scaled to a 40 x 16 image.
P_RECT_02 = [24.0, 0.0, 19.6, 1.4, 0.0, 24.0, 7.4, 0.0, 0.0, 0.0, 1.0, 0.0027]
# (dlat deg, dlon deg, dalt m, yaw rad, pos_accuracy m) per frame.
FRAMES = [(0.0, 0.0, 0.0, 0.5, 0.05), (1e-4, 0.0, 0.0, 0.5, 0.10), (1e-4, 1e-4, 2.0, 3.5, 0.20)]
STAMPS = ["2011-09-26 13:02:25.964389445", "2011-09-26 13:02:26.068731208", "2011-09-26 13:02:26.172981024"]
# calendar.timegm(2011-09-26 13:02:25 UTC) = 1317042145 s
STAMPS_NS = [1317042145_964389445, 1317042146_068731208, 1317042146_172981024]
# OXTS motion per frame: vf m/s, wz rad/s, (wx, wy), (ax, ay, az) m/s^2, vel_accuracy m/s.
MOTION = [(8.5, 0.12, (0.01, -0.02), (0.4, 1.02, 9.79), 0.02), (9.0, -0.3, (0.0, 0.03), (-1.1, -2.7, 9.83), 0.05),
          (9.2, 0.0, (-0.01, 0.0), (0.0, 0.1, 9.81), 0.0)]


def _colour(i):
    return (30 + 80 * i, 200 - 50 * i, 60)  # RGB, distinct per frame


def write_kitti_drive(root: Path, frames=FRAMES) -> Path:
    """A KITTI raw drive in the layout and file formats of the real one."""
    date_dir = root / "2011_09_26"
    drive = date_dir / "2011_09_26_drive_0001_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    (drive / "oxts" / "data").mkdir(parents=True)
    (date_dir / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        "S_02: 1.392000e+03 5.120000e+02\n"
        "K_02: 9.597910e+02 0.000000e+00 6.960217e+02 0.000000e+00 9.569251e+02 2.241806e+02 0.000000e+00 0.000000e+00 1.000000e+00\n"
        f"S_rect_02: {W:.6e} {H:.6e}\n"
        "R_rect_02: 9.998817e-01 1.511453e-02 -2.841595e-03 -1.511724e-02 9.998853e-01 -9.338510e-04 2.827154e-03 9.766976e-04 9.999955e-01\n"
        "P_rect_02: " + " ".join(f"{v:.6e}" for v in P_RECT_02) + "\n")
    for i, (dlat, dlon, dalt, yaw, acc) in enumerate(frames):
        img = np.zeros((H, W, 3), np.uint8)
        img[:] = _colour(i)
        img[:, :4] = (255, 255, 255)  # a white stripe on the left: orientation check
        cv2.imwrite(str(drive / "image_02" / "data" / f"{i:010d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        values = dict.fromkeys(OXTS_FIELDS, 0.0)
        values.update(lat=LAT0 + dlat, lon=LON0 + dlon, alt=ALT0 + dalt, yaw=yaw, pos_accuracy=acc,
                      navstat=4, numsats=9, posmode=5, velmode=5, orimode=6)
        if i < len(MOTION):
            vf, wz, (wx, wy), (ax, ay, az), vel_acc = MOTION[i]
            values.update(vf=vf, wz=wz, wx=wx, wy=wy, ax=ax, ay=ay, az=az, vel_accuracy=vel_acc)
        (drive / "oxts" / "data" / f"{i:010d}.txt").write_text(" ".join(
            f"{values[k]:.14g}" if k not in ("navstat", "numsats", "posmode", "velmode", "orimode") else str(int(values[k]))
            for k in OXTS_FIELDS) + "\n")
    (drive / "image_02" / "timestamps.txt").write_text("\n".join(STAMPS[: len(frames)]) + "\n")
    (drive / "oxts" / "timestamps.txt").write_text("\n".join(STAMPS[: len(frames)]) + "\n")
    return drive


def _hand_enu(dlat_deg, dlon_deg):
    """East/north of a small offset from the datum by the ellipsoid's radii of curvature."""
    phi = math.radians(LAT0)
    w = 1.0 - WGS84_E2 * math.sin(phi) ** 2
    n_radius = WGS84_A / math.sqrt(w)
    m_radius = WGS84_A * (1.0 - WGS84_E2) / w**1.5
    return n_radius * math.cos(phi) * math.radians(dlon_deg), m_radius * math.radians(dlat_deg)


def _by_topic(bag):
    out = {}
    for topic, _, t, msg in read_messages(bag):
        out.setdefault(topic, []).append((t, msg))
    return out


def test_kitti_drive_to_bag_poses_stamps_and_enu(tmp_path):
    drive = write_kitti_drive(tmp_path)
    out = tmp_path / "kitti_bag"
    summary = import_kitti(drive, out, progress=False)
    assert summary["frames"] == 3 and summary["tiles"] is None
    topics = bag_topics(out)
    assert topics == {
        TOPIC_IMAGE: ("sensor_msgs/msg/Image", 3), TOPIC_CAMERA_INFO: ("sensor_msgs/msg/CameraInfo", 3),
        TOPIC_GNSS_FIX: ("sensor_msgs/msg/NavSatFix", 3), TOPIC_GT_FIX: ("sensor_msgs/msg/NavSatFix", 3),
        TOPIC_GT_POSE: ("geometry_msgs/msg/PoseStamped", 3),
        TOPIC_IMU: ("sensor_msgs/msg/Imu", 3), TOPIC_WHEEL_ODOM: ("nav_msgs/msg/Odometry", 3),
    }
    datum = bag_datum(out)
    assert (datum.lat_deg, datum.lon_deg, datum.alt_m) == (LAT0, LON0, ALT0)
    assert GNSS_MODEL_KEY not in bag_custom_data(out)
    msgs = _by_topic(out)

    # Stamps: the text timestamps to the nanosecond, as log time and header stamp.
    for topic in topics:
        assert [t for t, _ in msgs[topic]] == STAMPS_NS
        assert [stamp_to_ns(m.header.stamp) for _, m in msgs[topic]] == STAMPS_NS

    # Poses: ENU from the first fix, by hand; yaw is OXTS yaw (0 = east, CCW) wrapped.
    for (t, pose), (dlat, dlon, dalt, yaw, _) in zip(msgs[TOPIC_GT_POSE], FRAMES):
        e, n = _hand_enu(dlat, dlon)
        p = pose.pose.position
        assert pose.header.frame_id == "map"
        assert p.x == pytest.approx(e, abs=0.01) and p.y == pytest.approx(n, abs=0.01)
        assert p.z == pytest.approx(dalt, abs=0.01)
        q = pose.pose.orientation
        assert float(quaternion_to_yaw(q.x, q.y, q.z, q.w)) == pytest.approx(math.remainder(yaw, 2 * math.pi), abs=1e-9)
    assert msgs[TOPIC_GT_POSE][1][1].pose.position.y == pytest.approx(11.12, abs=0.005)  # 1e-4 deg of latitude at 49 deg

    # GNSS fix: the OXTS position with pos_accuracy as the receiver's sigma, horizontal only:
    # the covariance is APPROXIMATED.
    for (t, fix), (dlat, dlon, dalt, _, acc) in zip(msgs[TOPIC_GNSS_FIX], FRAMES):
        assert fix.latitude == pytest.approx(LAT0 + dlat, abs=1e-12) and fix.longitude == pytest.approx(LON0 + dlon, abs=1e-12)
        assert fix.altitude == pytest.approx(ALT0 + dalt)
        assert fix.position_covariance[0] == pytest.approx(acc**2) and fix.position_covariance[4] == pytest.approx(acc**2)
        assert fix.position_covariance_type == 1  # NavSatFix.COVARIANCE_TYPE_APPROXIMATED
        assert fix.status.status == 0

    # Motion sensors: the OXTS rates, accelerations and forward velocity as recorded.
    for (_, imu), (_, odo), (vf, wz, (wx, wy), (ax, ay, az), vel_acc) in zip(msgs[TOPIC_IMU], msgs[TOPIC_WHEEL_ODOM],
                                                                              MOTION):
        assert imu.header.frame_id == "imu_link" and imu.orientation_covariance[0] == -1.0
        w, a = imu.angular_velocity, imu.linear_acceleration
        assert (w.x, w.y, w.z) == pytest.approx((wx, wy, wz)) and (a.x, a.y, a.z) == pytest.approx((ax, ay, az))
        assert not np.any(imu.angular_velocity_covariance) and not np.any(imu.linear_acceleration_covariance)  # unknown
        assert odo.header.frame_id == "odom" and odo.child_frame_id == "base_link"
        assert odo.twist.twist.linear.x == pytest.approx(vf)
        assert odo.twist.covariance[0] == pytest.approx(vel_acc**2)  # 0 (unknown) where OXTS has no accuracy
        assert odo.pose.covariance[0] >= 1e6
    assert [t for t, _ in msgs[TOPIC_IMU]] == STAMPS_NS

    # Camera: K is P_rect_02's left 3x3, the image is the PNG in RGB order.
    info = msgs[TOPIC_CAMERA_INFO][0][1]
    assert (info.width, info.height) == (W, H)
    assert np.allclose(info.k.reshape(3, 3), np.array(P_RECT_02).reshape(3, 4)[:, :3])
    for i, (_, img) in enumerate(msgs[TOPIC_IMAGE]):
        assert img.encoding == "rgb8" and (img.width, img.height) == (W, H)
        rgb = np.asarray(img.data).reshape(H, W, 3)
        assert tuple(rgb[H // 2, W - 1]) == _colour(i) and tuple(rgb[H // 2, 0]) == (255, 255, 255)


def test_compressed_images(tmp_path):
    drive = write_kitti_drive(tmp_path)
    out = tmp_path / "bag"
    import_kitti(drive, out, compressed=True, progress=False)
    topics = bag_topics(out)
    assert TOPIC_IMAGE not in topics and topics[TOPIC_IMAGE_COMPRESSED] == ("sensor_msgs/msg/CompressedImage", 3)
    _, _, _, msg = next(read_messages(out, [TOPIC_IMAGE_COMPRESSED]))
    rgb = decode_compressed(msg.format, msg.data)
    assert rgb.shape == (H, W, 3) and np.abs(rgb[H // 2, W - 8].astype(int) - _colour(0)).max() < 12


def test_satmap_mosaic_into_mbtiles(tmp_path):
    from cvgl_ros.tiles.mbtiles import MBTilesStore
    from cvgl_ros.tiles.patch import PatchSampler

    drive = write_kitti_drive(tmp_path)
    # The benchmark layout: satmap/<date>/<drive>/<frame>.png, north-up, centred at the frame's GPS.
    sat_dir = tmp_path / "satmap" / "2011_09_26" / drive.name
    sat_dir.mkdir(parents=True)
    size = 128
    for i in range(3):
        img = np.zeros((size, size, 3), np.uint8)
        img[:, : size // 2] = (200, 30, 30)   # west half red
        img[:, size // 2:] = (30, 30, 200)    # east half blue
        img[: size // 4, :] = (30, 200, 30)   # northern quarter green
        cv2.imwrite(str(sat_dir / f"{i:010d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out = tmp_path / "bag"
    summary = import_kitti(drive, out, satmap_dir=tmp_path / "satmap", progress=False)
    tiles = Path(summary["tiles"])
    assert tiles == tmp_path / "bag_tiles.mbtiles" and tiles.is_file()
    # Frames 0 and 1 are 11 m apart (> 10 m spacing); frame 2 is 8 m east of frame 1: skipped.
    assert summary["satmap_frames_painted"] == 2
    store = MBTilesStore.open(tiles)
    meta = store.metadata
    store.close()
    assert meta["format"] == "png" and meta["maxzoom"] == "19" and meta["minzoom"] == "14"
    assert len(meta["bounds"].split(",")) == 4
    mpp = satmap_mpp(LAT0)
    assert mpp == pytest.approx(0.1959, abs=1e-4)
    half = size / 2 * mpp  # 12.5 m: frame 0 covers north -12.5..12.5, frame 1 (painted last) -1.4..23.6
    datum = bag_datum(out)
    with PatchSampler(tiles) as sampler:
        def colour_at(e, n):
            p = sampler.patch_enu(datum, e, n, 3, 0.2)
            assert p.valid[1, 1]
            return tuple(int(v) for v in p.rgb[1, 1])
        assert colour_at(-half / 2, -5.0) == pytest.approx((200, 30, 30), abs=6)
        assert colour_at(half / 2, -5.0) == pytest.approx((30, 30, 200), abs=6)
        assert colour_at(half / 2, 11.12 + half - 1.5) == pytest.approx((30, 200, 30), abs=6)  # frame 1's north
        assert colour_at(half / 2, 8.0) == pytest.approx((30, 30, 200), abs=6)  # frame 1 painted over 0's green
        # The edge between red and blue is at the frames' east (0 m): 1 m either side differs.
        assert colour_at(-1.0, -5.0)[0] > 150 and colour_at(1.0, -5.0)[2] > 150
        assert not sampler.patch_enu(datum, 40.0, 0.0, 3, 0.2).valid[1, 1]  # nothing painted there


def write_long_oxts(drive: Path, duration_s: float = 60.0, rate_hz: float = 10.0, speed_mps: float = 10.0,
                    heading_rad: float = math.radians(30.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replace the drive's OXTS records by a straight constant-speed run; returns (t s, east m, north m)."""
    phi = math.radians(LAT0)
    w = 1.0 - WGS84_E2 * math.sin(phi) ** 2
    n_radius, m_radius = WGS84_A / math.sqrt(w), WGS84_A * (1.0 - WGS84_E2) / w**1.5
    t = np.arange(int(duration_s * rate_hz) + 1) / rate_hz
    east, north = speed_mps * t * math.cos(heading_rad), speed_mps * t * math.sin(heading_rad)
    data = drive / "oxts" / "data"
    for p in data.glob("*.txt"):
        p.unlink()
    stamps = []
    for i, (ti, e, n) in enumerate(zip(t, east, north)):
        values = dict.fromkeys(OXTS_FIELDS, 0.0)
        values.update(lat=LAT0 + math.degrees(n / m_radius), lon=LON0 + math.degrees(e / (n_radius * math.cos(phi))),
                      alt=ALT0, yaw=heading_rad, vf=speed_mps, pos_accuracy=0.02, vel_accuracy=0.02, az=9.81)
        (data / f"{i:010d}.txt").write_text(" ".join(f"{values[k]:.15g}" for k in OXTS_FIELDS) + "\n")
        ns = STAMPS_NS[0] + int(round(ti * 1e9))
        sec, frac = divmod(ns, 1_000_000_000)
        stamps.append(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec)) + f".{frac:09d}")
    (drive / "oxts" / "timestamps.txt").write_text("\n".join(stamps) + "\n")
    return t, east, north


def _fix_errors(bag: Path):
    """Horizontal errors of the bag's valid fixes against the OXTS truth (/ground_truth/fix, interpolated
    to the fix stamps), the number of epochs, the reported sigmas and the stamps."""
    datum = bag_datum(bag)
    truth = [(t, m) for _, _, t, m in read_messages(bag, [TOPIC_GT_FIX])]
    gt_t = (np.array([t for t, _ in truth]) - STAMPS_NS[0]) / 1e9
    gt_e, gt_n, _ = datum.to_enu(np.array([m.latitude for _, m in truth]), np.array([m.longitude for _, m in truth]),
                                 np.array([m.altitude for _, m in truth]))
    fixes = [(t, m) for _, _, t, m in read_messages(bag, [TOPIC_GNSS_FIX])]
    valid = [(t, m) for t, m in fixes if m.status.status == 0]
    assert all(math.isnan(m.latitude) and m.position_covariance_type == 0 for _, m in fixes if m.status.status != 0)
    t = (np.array([t for t, _ in valid]) - STAMPS_NS[0]) / 1e9
    e, n, _ = datum.to_enu(np.array([m.latitude for _, m in valid]), np.array([m.longitude for _, m in valid]),
                           np.array([m.altitude for _, m in valid]))
    err = np.hypot(e - np.interp(t, gt_t, gt_e), n - np.interp(t, gt_t, gt_n))
    sigma = np.sqrt([m.position_covariance[0] for _, m in valid])
    return err, len(fixes), sigma, [t for t, _ in fixes]


def test_gnss_model_degrades_the_fix_like_the_profile(tmp_path, cvgl_bin):
    from cvgl_ros.sim.gnss import PRESETS, GnssModel

    drive = write_kitti_drive(tmp_path)
    write_long_oxts(drive)
    out = tmp_path / "degraded"
    r = subprocess.run([cvgl_bin, "import", "kitti", "--raw", str(drive), "--out", str(out), "--quiet",
                        "--gnss-model", "urban_canyon", "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "simulated urban_canyon receiver, seed 3, 5 Hz" in r.stdout
    assert json.loads(bag_custom_data(out)[GNSS_MODEL_KEY]) == {
        "profile": "urban_canyon", "seed": 3, "rate_hz": 5.0, "model": "cvgl_ros.sim.gnss on the OXTS trajectory"}
    topics = bag_topics(out)
    assert topics[TOPIC_GT_FIX][1] == 601 and topics[TOPIC_IMU][1] == 601 and topics[TOPIC_GNSS_FIX][1] == 301
    err, n_epochs, sigma, stamps = _fix_errors(out)
    assert stamps[0] == STAMPS_NS[0] and np.allclose(np.diff(stamps), 0.2e9, atol=1)

    # The same receiver simulated on the same OXTS trajectory: the same error statistics.
    track = GnssModel.from_name("urban_canyon", 3).simulate(oxts_trajectory(read_kitti_drive(drive)), 5.0)
    stats = track.error_stats()
    assert n_epochs == stats["n_epochs"] and len(err) == stats["n_fixes"]
    p50, p95, p99 = np.percentile(err, [50, 95, 99])
    assert (err.mean(), p50, p95, p99) == pytest.approx(
        (stats["mean_m"], stats["p50_m"], stats["p95_m"], stats["p99_m"]), abs=0.01)
    # ... and the profile's own parameters: at its default openness the per-axis error is
    # sqrt(sigma_w^2 + sigma_b^2), which the receiver also reports (median of a lognormal jitter).
    p = PRESETS["urban_canyon"]
    c = 1.0 - p.default_openness
    sw = p.white_sigma_open_m + (p.white_sigma_canyon_m - p.white_sigma_open_m) * c
    sb = p.bias_sigma_open_m + (p.bias_sigma_canyon_m - p.bias_sigma_open_m) * c
    assert np.median(sigma) == pytest.approx(math.hypot(sw, sb), rel=0.05)
    assert 0.6 * math.hypot(sw, sb) * math.sqrt(math.pi / 2) < np.median(err) < 2.0 * math.hypot(sw, sb)
    assert err.mean() > 50 * 0.02  # far from the RTK record (pos_accuracy 2 cm) it replaced

    # The seed is the receiver's: another one gives other errors.
    other = GnssModel.from_name("urban_canyon", 4).simulate(oxts_trajectory(read_kitti_drive(drive)), 5.0)
    assert other.error_stats()["mean_m"] != pytest.approx(err.mean(), abs=0.01)


def test_gnss_profiles_of_the_cli_are_the_simulator_s():
    from cvgl_ros.cli.importers import GNSS_PROFILES
    from cvgl_ros.sim.gnss import MODEL_NAMES

    assert GNSS_PROFILES == MODEL_NAMES


def test_cli_import_kitti(tmp_path, cvgl_bin):
    drive = write_kitti_drive(tmp_path)
    out = tmp_path / "cli_bag"
    r = subprocess.run([cvgl_bin, "import", "kitti", "--raw", str(drive), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3 frames" in r.stdout and "datum lat=49.000000000" in r.stdout
    assert bag_topics(out)[TOPIC_GT_POSE][1] == 3


def _leftovers(parent: Path, stem: str):
    return [p.name for p in parent.iterdir() if p.name.startswith(stem) or p.name.startswith("." + stem)]


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "oxts/data/0000000001.txt").write_text("49.0 8.4 110.0 0 0\n"), "0000000001.txt line 1: expected 30"),
    (lambda d: (d / "oxts/data/0000000002.txt").write_text(""), "0000000002.txt line 1: empty"),
    (lambda d: (d / "oxts/timestamps.txt").write_text(STAMPS[0] + "\n2011-09-26 13:02\n"), "timestamps.txt line 2"),
    (lambda d: (d / "image_02/timestamps.txt").write_text(STAMPS[0] + "\n"), "1 stamps for 3 images"),
    (lambda d: (d / "image_02/data/0000000002.png").write_bytes(
        (d / "image_02/data/0000000002.png").read_bytes()[:60]), "0000000002.png: not a readable PNG (truncated"),
    (lambda d: (d.parent / "calib_cam_to_cam.txt").write_text("P_rect_02: 1 2 3\nS_rect_02: 40 16\n"), "P_rect_02"),
    (lambda d: (d.parent / "calib_cam_to_cam.txt").unlink(), "no calib_cam_to_cam.txt"),
    ("--seed", "give --gnss-model PROFILE"),
])
def test_bad_input_one_line_exit_2_no_partial_output(tmp_path, cvgl_bin, damage, message):
    drive = write_kitti_drive(tmp_path)
    extra = []
    if damage == "--seed":
        extra = ["--seed", "3"]  # a receiver seed without a receiver
    else:
        damage(drive)
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    r = subprocess.run([cvgl_bin, "import", "kitti", "--raw", str(drive), "--out", str(out_parent / "bag"), "--quiet",
                        *extra], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert list(out_parent.iterdir()) == []


def test_truncated_satmap_leaves_neither_bag_nor_tiles(tmp_path):
    drive = write_kitti_drive(tmp_path)
    sat_dir = tmp_path / "sat"
    sat_dir.mkdir()
    cv2.imwrite(str(sat_dir / "0000000000.png"), np.full((64, 64, 3), 90, np.uint8))
    (sat_dir / "0000000001.png").write_bytes((sat_dir / "0000000000.png").read_bytes()[:50])
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    with pytest.raises(InputError, match="0000000001.png"):
        import_kitti(drive, out_parent / "bag", satmap_dir=sat_dir, progress=False)
    assert list(out_parent.iterdir()) == []


def test_unwritable_output(tmp_path, cvgl_bin):
    drive = write_kitti_drive(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    r = subprocess.run([cvgl_bin, "import", "kitti", "--raw", str(drive), "--out", str(blocker / "bag"), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "is not a directory" in r.stderr


def test_reader_rejects_a_folder_that_is_not_a_drive(tmp_path):
    with pytest.raises(InputError, match="missing image_02/data"):
        read_kitti_drive(tmp_path)
    assert os.listdir(tmp_path) == []
