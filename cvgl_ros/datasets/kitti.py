"""KITTI raw drives (and the cross-view benchmark's satellite images) -> our bag and MBTiles.

Input, as "Vision meets Robotics: The KITTI Dataset" distributes a synchronized raw drive
(`2011_09_26/2011_09_26_drive_0001_sync/`):

    image_02/data/0000000000.png ...   left colour camera, rectified, 8-bit RGB PNG
    image_02/timestamps.txt            one "YYYY-MM-DD HH:MM:SS.nnnnnnnnn" per image
    oxts/data/0000000000.txt ...       one line of the 30 OXTS fields (OXTS_FIELDS order)
    oxts/timestamps.txt                one stamp per OXTS file
    ../calib_cam_to_cam.txt            (beside the drive folder, or inside it) P_rect_02, S_rect_02

OXTS conventions (the raw data's `dataformat.txt`): lat/lon in degrees, alt in metres,
yaw in radians with 0 = east and positive counter-clockwise, which *is* the REP-103 ENU yaw
(no compass conversion; only wrapped to [-pi, pi)); `pos_accuracy` is the position
accuracy in metres (north/east). Stamps are read as UTC to the nanosecond.

Output bag: `/camera/image_raw` (rgb8, or JPEG on `/camera/image_raw/compressed`) and
`/camera/camera_info` (K = the left 3x3 of P_rect_02, size S_rect_02) at the image stamps;
`/ground_truth/fix` and `/ground_truth/pose` (frame `map`, ENU at the datum = the first OXTS
fix, planar yaw) at the OXTS stamps, and from the same records the motion sensors:

* `/imu/data` (sensor_msgs/Imu, frame `imu_link`): angular_velocity = (wx, wy, wz) and
  linear_acceleration = (ax, ay, az), the OXTS body-frame rates and accelerations as
  recorded (the unit's axes are x forward, y left, z up: REP-103; wz is the yaw rate,
  counter-clockwise positive). No orientation (orientation_covariance[0] = -1: roll, pitch
  and yaw are on /ground_truth/pose). The OXTS record carries no accuracy for rates and
  accelerations, so their covariances are all zeros, which Imu.msg defines as "unknown".
* `/odom/wheel` (nav_msgs/Odometry `odom` -> `base_link`): twist.twist.linear.x = vf, the
  forward velocity parallel to the earth's surface, with twist.covariance[0] =
  vel_accuracy^2 (0, unknown, where the record has none); the pose is not measured
  (covariance diagonal 1e6). The rate is the OXTS rate: ~10 Hz in a synced drive.

`/gnss/fix` is, by default, the OXTS record with pos_accuracy as sigma. OXTS gives only a
horizontal (north/east) accuracy, so its covariance (sigma^2, sigma^2, (2 sigma)^2) is
marked COVARIANCE_TYPE_APPROXIMATED. The unit is RTK-corrected: that fix is nearly the
truth, and a replay of it never exercises the GNSS side of a filter. With `gnss_model`
(`cvgl import kitti --gnss-model PROFILE --seed S [--gnss-hz 5]`) the fix is instead what a
simulated receiver of `cvgl_ros.sim.gnss` reports on the OXTS trajectory
(`oxts_trajectory`: the ENU track, yaw, vf and wz of the records): `GnssModel.from_name(
PROFILE, S).simulate(trajectory, gnss_hz)` at the sky model's default openness, stamped at
the first OXTS stamp + k / gnss_hz, with the true (OXTS) altitude; NO_FIX epochs have NaN
position and unknown covariance. The bag's metadata records the profile, seed and rate
under `cvgl.gnss_model` (JSON).

Satellite images (`--satmap`): the KITTI cross-view benchmark of Shi & Li ("Beyond
Cross-view Image Retrieval: Highly Accurate Vehicle Localization Using Satellite Image",
used by "Learning Dense Flow Field for Highly-accurate Cross-view Camera Localization" and
"Federated Learning for Cross-view Geo-localization") gives every frame a north-up
satellite image `satmap/<date>/<drive>/<frame>.png`, 512 x 512 px, centred at the frame's
OXTS (GPS) position. It was fetched from a Web Mercator map service at zoom 18 with scale 2,
so its ground resolution is 156543.03392 * cos(lat) / 2**18 / 2 m/px (0.196 m/px at
Karlsruhe's 49.0 deg, the "about 0.2 m per pixel, about 100 x 100 m" those papers quote);
`satmap_mpp` computes it per frame, `--satmap-mpp` overrides it. The images are painted as
`EnuRaster`s into z19 tiles (0.196 m/px there too) of an MBTiles file with overviews; frames
closer than `SATMAP_SPACING_M` to an already painted one are skipped (they show the same
ground).
"""
from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum
from cvgl_ros.geo.yaw import wrap_angle

# The 30 values of one OXTS line, in the order of KITTI raw's dataformat.txt.
OXTS_FIELDS = (
    "lat", "lon", "alt", "roll", "pitch", "yaw",
    "vn", "ve", "vf", "vl", "vu",
    "ax", "ay", "az", "af", "al", "au",
    "wx", "wy", "wz", "wf", "wl", "wu",
    "pos_accuracy", "vel_accuracy", "navstat", "numsats", "posmode", "velmode", "orimode",
)
OXTS = {name: i for i, name in enumerate(OXTS_FIELDS)}

SATMAP_ZOOM = 18
SATMAP_SCALE = 2
SATMAP_SPACING_M = 10.0
TILE_ZOOM = 19
OVERVIEW_MIN_ZOOM = 14
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?$")


def satmap_mpp(lat_deg: float) -> float:
    """Ground resolution (m/px) of a benchmark satellite image at a latitude (zoom 18, scale 2)."""
    return 156543.03392 * math.cos(math.radians(lat_deg)) / 2**SATMAP_ZOOM / SATMAP_SCALE


def parse_timestamp_ns(text: str, where: str) -> int:
    """'2011-09-26 13:02:25.964389445' (UTC) -> integer nanoseconds since the UNIX epoch."""
    m = _TIMESTAMP.match(text.strip())
    if m is None:
        raise InputError(f"{where}: {text.strip()!r} is not a 'YYYY-MM-DD HH:MM:SS.nnnnnnnnn' timestamp")
    try:
        whole = calendar.timegm(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timetuple())
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None
    frac = (m.group(2) or "").ljust(9, "0")
    return whole * 1_000_000_000 + int(frac)


def read_timestamps(path: Path) -> np.ndarray:
    """A KITTI timestamps.txt -> int64 nanoseconds, one per non-empty line."""
    if not path.is_file():
        raise InputError(f"missing {path}")
    stamps = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if line.strip():
            stamps.append(parse_timestamp_ns(line, f"{path} line {lineno}"))
    if not stamps:
        raise InputError(f"{path} holds no timestamps")
    out = np.asarray(stamps, dtype=np.int64)
    if np.any(np.diff(out) < 0):
        bad = int(np.flatnonzero(np.diff(out) < 0)[0]) + 2
        raise InputError(f"{path} line {bad}: timestamp goes backwards")
    return out


def read_oxts_file(path: Path) -> np.ndarray:
    """One OXTS file -> its 30 values (InputError naming the file and line when malformed)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if not lines:
        raise InputError(f"{path} line 1: empty OXTS file, expected {len(OXTS_FIELDS)} numbers")
    parts = lines[0].split()
    if len(parts) != len(OXTS_FIELDS):
        raise InputError(f"{path} line 1: expected {len(OXTS_FIELDS)} OXTS numbers, got {len(parts)}")
    try:
        values = np.array([float(p) for p in parts])
    except ValueError:
        raise InputError(f"{path} line 1: OXTS values must be numbers") from None
    if not np.all(np.isfinite(values[:6])):
        raise InputError(f"{path} line 1: lat/lon/alt/roll/pitch/yaw must be finite")
    if abs(values[0]) > 90 or abs(values[1]) > 180:
        raise InputError(f"{path} line 1: lat {values[0]:g} / lon {values[1]:g} out of range")
    return values


def read_calib_cam_to_cam(path: Path) -> dict[str, np.ndarray]:
    """calib_cam_to_cam.txt -> {key: numbers} for every numeric line (calib_time is skipped)."""
    out: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if ":" not in line:
            if line.strip():
                raise InputError(f"{path} line {lineno}: expected 'KEY: values'")
            continue
        key, _, rest = line.partition(":")
        if key.strip() == "calib_time":
            continue
        try:
            out[key.strip()] = np.array([float(v) for v in rest.split()])
        except ValueError:
            raise InputError(f"{path} line {lineno}: {key.strip()} must be numbers") from None
    return out


def camera_02_intrinsics(calib: dict[str, np.ndarray], path: Path) -> tuple[np.ndarray, int, int]:
    """(K 3x3, width, height) of the rectified left colour camera from P_rect_02 / S_rect_02."""
    p = calib.get("P_rect_02")
    s = calib.get("S_rect_02")
    if p is None or p.size != 12:
        raise InputError(f"{path}: P_rect_02 missing or not 12 numbers")
    if s is None or s.size != 2:
        raise InputError(f"{path}: S_rect_02 missing or not 2 numbers")
    k = p.reshape(3, 4)[:, :3].copy()
    return k, int(round(s[0])), int(round(s[1]))


@dataclass(frozen=True)
class KittiDrive:
    """A validated KITTI raw drive: file lists, stamps, OXTS records and camera intrinsics."""

    root: Path
    image_paths: list[Path]
    image_stamps_ns: np.ndarray
    oxts: np.ndarray  # (N, 30) in OXTS_FIELDS order
    oxts_stamps_ns: np.ndarray
    k: np.ndarray
    width: int
    height: int

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def datum(self) -> Datum:
        lat, lon, alt = self.oxts[0, :3]
        return Datum(float(lat), float(lon), float(alt))

    @property
    def oxts_t_s(self) -> np.ndarray:
        """OXTS stamps in seconds since the first one."""
        return (self.oxts_stamps_ns - self.oxts_stamps_ns[0]) / 1e9

    def poses_enu(self):
        """(east, north, up, yaw_enu_rad) of every OXTS record in the datum's ENU frame."""
        e, n, u = self.datum.to_enu(self.oxts[:, OXTS["lat"]], self.oxts[:, OXTS["lon"]], self.oxts[:, OXTS["alt"]])
        return e, n, u, wrap_angle(self.oxts[:, OXTS["yaw"]])


def oxts_trajectory(drive: KittiDrive):
    """The drive's OXTS records as a `cvgl_ros.sim.trajectory.Trajectory` (ENU at the datum).

    Speed is vf, yaw rate wz, distance the length of the ENU polyline. InputError when the
    stamps do not increase (a trajectory needs a clock) or there is a single record.
    """
    from cvgl_ros.sim.trajectory import Trajectory

    t = drive.oxts_t_s
    if len(t) < 2 or np.any(np.diff(t) <= 0):
        raise InputError(f"{drive.root / 'oxts' / 'timestamps.txt'}: a simulated receiver needs at least two OXTS "
                         "records with increasing stamps")
    e, n, _, yaw = drive.poses_enu()
    for name in ("vf", "wz"):
        if not np.all(np.isfinite(drive.oxts[:, OXTS[name]])):
            raise InputError(f"{drive.root / 'oxts' / 'data'}: OXTS {name} must be finite for a simulated receiver")
    distance = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(e), np.diff(n)))])
    return Trajectory(t_s=t, east_m=e, north_m=n, yaw_enu_rad=yaw, speed_mps=drive.oxts[:, OXTS["vf"]].copy(),
                      yaw_rate_radps=drive.oxts[:, OXTS["wz"]].copy(), distance_m=distance)


def simulated_gnss(drive: KittiDrive, profile: str, seed: int, rate_hz: float):
    """(GnssTrack, stamps ns, lat, lon, alt) of a simulated receiver on the drive's OXTS trajectory."""
    from cvgl_ros.sim.gnss import GnssModel

    if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and 0 < rate_hz <= 100):
        raise InputError(f"GNSS rate must be in (0, 100] Hz, got {rate_hz}")
    model = GnssModel.from_name(profile, seed)
    track = model.simulate(oxts_trajectory(drive), float(rate_hz))
    stamps = drive.oxts_stamps_ns[0] + np.rint(track.t_s * 1e9).astype(np.int64)
    _, _, u, _ = drive.poses_enu()
    up = np.interp(track.t_s, drive.oxts_t_s, u)
    lat, lon, alt = drive.datum.to_wgs84(np.nan_to_num(track.east_m), np.nan_to_num(track.north_m), up)
    return track, stamps, np.atleast_1d(lat), np.atleast_1d(lon), np.atleast_1d(alt)


def _find_calib(root: Path) -> Path:
    for candidate in (root / "calib_cam_to_cam.txt", root.parent / "calib_cam_to_cam.txt"):
        if candidate.is_file():
            return candidate
    raise InputError(f"no calib_cam_to_cam.txt in {root} or {root.parent}")


def read_kitti_drive(raw_dir: str | Path) -> KittiDrive:
    """Read and check a KITTI raw drive folder (images are only listed, not decoded)."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise InputError(f"no such KITTI drive directory: {root}")
    image_dir = root / "image_02" / "data"
    oxts_dir = root / "oxts" / "data"
    for d in (image_dir, oxts_dir):
        if not d.is_dir():
            raise InputError(f"{root} is not a KITTI raw drive: missing {d.relative_to(root)}/")
    image_paths = sorted(image_dir.glob("*.png"))
    oxts_paths = sorted(oxts_dir.glob("*.txt"))
    if not image_paths:
        raise InputError(f"no PNG images in {image_dir}")
    if not oxts_paths:
        raise InputError(f"no OXTS files in {oxts_dir}")
    image_stamps = read_timestamps(root / "image_02" / "timestamps.txt")
    oxts_stamps = read_timestamps(root / "oxts" / "timestamps.txt")
    if len(image_stamps) != len(image_paths):
        raise InputError(f"{root / 'image_02' / 'timestamps.txt'}: {len(image_stamps)} stamps for {len(image_paths)} images")
    if len(oxts_stamps) != len(oxts_paths):
        raise InputError(f"{root / 'oxts' / 'timestamps.txt'}: {len(oxts_stamps)} stamps for {len(oxts_paths)} OXTS files")
    oxts = np.stack([read_oxts_file(p) for p in oxts_paths])
    calib_path = _find_calib(root)
    k, width, height = camera_02_intrinsics(read_calib_cam_to_cam(calib_path), calib_path)
    return KittiDrive(root, image_paths, image_stamps, oxts, oxts_stamps, k, width, height)


def decode_png(path: Path, flags: int) -> np.ndarray:
    """Decode a PNG file with OpenCV `flags`; InputError naming the file when missing, truncated or corrupt.

    A PNG ends with an IEND chunk: a file without one is truncated. OpenCV's own warnings
    are muted while decoding so that the error stays one line.
    """
    import cv2

    if not path.is_file():
        raise InputError(f"missing image {path}")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size < 8 or bytes(data[:8]) != b"\x89PNG\r\n\x1a\n":
        raise InputError(f"{path}: not a PNG file")
    if b"IEND" not in bytes(data[-12:]):
        raise InputError(f"{path}: not a readable PNG (truncated: no IEND chunk)")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        img = cv2.imdecode(data, flags)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if img is None or img.size == 0:
        raise InputError(f"{path}: not a readable PNG (corrupt)")
    return img


def load_png_rgb(path: Path, expect_wh: tuple[int, int] | None = None) -> np.ndarray:
    """A colour PNG -> RGB uint8, optionally checking its width x height."""
    import cv2

    img = decode_png(path, cv2.IMREAD_COLOR)
    if expect_wh is not None and (img.shape[1], img.shape[0]) != tuple(expect_wh):
        raise InputError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, calibration says {expect_wh[0]}x{expect_wh[1]}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def camera_frame_message(rgb: np.ndarray, stamp_ns: int, compressed: bool, jpeg_quality: int):
    """(topic, msgtype, message) of one camera frame."""
    import cv2

    from cvgl_ros.datasets import bag as B

    if compressed:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise InputError("JPEG encoding failed")
        return B.TOPIC_IMAGE_COMPRESSED, B.MSG_COMPRESSED, B.compressed_image_msg(buf.tobytes(), stamp_ns)
    return B.TOPIC_IMAGE, B.MSG_IMAGE, B.image_msg(rgb, stamp_ns)


def camera_source(drive: KittiDrive, compressed: bool, jpeg_quality: int):
    """The bag's camera: each frame (raw or JPEG) and its CameraInfo, at the image stamps."""
    from cvgl_ros.datasets import bag as B

    def messages(stamp: int, i: int):
        rgb = load_png_rgb(drive.image_paths[i], (drive.width, drive.height))
        yield camera_frame_message(rgb, stamp, compressed, jpeg_quality)
        yield B.TOPIC_CAMERA_INFO, B.MSG_CAMERA_INFO, B.camera_info_msg(drive.k, drive.width, drive.height, stamp)

    return B.MessageSource(drive.image_stamps_ns, messages)


def oxts_source(drive: KittiDrive, oxts_fix: bool):
    """What each OXTS record gives (module docstring): the ground truth, the motion sensors and,
    with `oxts_fix`, /gnss/fix."""
    from cvgl_ros.datasets import bag as B

    e, n, u, yaw = drive.poses_enu()
    lat, lon, alt = (drive.oxts[:, OXTS[k]] for k in ("lat", "lon", "alt"))
    sigma = drive.oxts[:, OXTS["pos_accuracy"]]
    vel_accuracy = drive.oxts[:, OXTS["vel_accuracy"]]

    def messages(stamp: int, i: int):
        s = float(sigma[i]) if np.isfinite(sigma[i]) and sigma[i] > 0 else None
        if oxts_fix:
            yield B.TOPIC_GNSS_FIX, B.MSG_NAVSATFIX, B.navsatfix_msg(
                lat[i], lon[i], alt[i], stamp, sigma_m=s, covariance_type=B.COVARIANCE_TYPE_APPROXIMATED)
        o = drive.oxts[i]
        rates = o[[OXTS["wx"], OXTS["wy"], OXTS["wz"]]]
        accels = o[[OXTS["ax"], OXTS["ay"], OXTS["az"]]]
        yield B.TOPIC_IMU, B.MSG_IMU, B.imu_msg(  # a non-finite vector is "not provided"
            stamp, rates if np.all(np.isfinite(rates)) else None, accels if np.all(np.isfinite(accels)) else None,
            angular_velocity_variance=None, linear_acceleration_variance=None)
        v_acc = float(vel_accuracy[i])
        if math.isfinite(o[OXTS["vf"]]):
            yield B.TOPIC_WHEEL_ODOM, B.MSG_ODOMETRY, B.wheel_odometry_msg(
                stamp, float(o[OXTS["vf"]]), v_acc**2 if math.isfinite(v_acc) and v_acc > 0 else None)
        yield B.TOPIC_GT_FIX, B.MSG_NAVSATFIX, B.navsatfix_msg(lat[i], lon[i], alt[i], stamp, sigma_m=s,
                                                               frame_id="base_link")
        yield B.TOPIC_GT_POSE, B.MSG_POSE_STAMPED, B.pose_stamped_msg(e[i], n[i], u[i], yaw[i], stamp)

    return B.MessageSource(drive.oxts_stamps_ns, messages)


def receiver_source(gnss):
    """/gnss/fix of a simulated receiver (`simulated_gnss`): its fix, or NO_FIX with a NaN position."""
    from cvgl_ros.datasets import bag as B

    track, stamps, lat, lon, alt = gnss

    def messages(stamp: int, i: int):
        if track.valid[i]:
            fix = B.navsatfix_msg(lat[i], lon[i], alt[i], stamp, sigma_m=float(track.reported_sigma_m[i]),
                                  status=int(track.status[i]))
        else:
            fix = B.navsatfix_msg(math.nan, math.nan, math.nan, stamp, sigma_m=None, status=B.NAVSAT_STATUS_NO_FIX)
        yield B.TOPIC_GNSS_FIX, B.MSG_NAVSATFIX, fix

    return B.MessageSource(stamps, messages)


def write_kitti_satmap_tiles(drive: KittiDrive, satmap_dir: str | Path, tiles_out: str | Path,
                             mpp: float | None = None, spacing_m: float = SATMAP_SPACING_M, progress: bool = True):
    """Paint the benchmark's per-frame satellite images into an MBTiles file (not yet closed).

    Returns the open store (call `close()` to publish it atomically, `abort()` to drop it)
    and the number of frames painted.
    """
    from tqdm import tqdm

    from cvgl_ros.tiles.mbtiles import MBTilesStore
    from cvgl_ros.tiles.raster import EnuRaster, add_enu_raster, build_overviews

    satmap_dir = Path(satmap_dir)
    if not satmap_dir.is_dir():
        raise InputError(f"no such satellite image directory: {satmap_dir}")
    frame_names = [p.name for p in drive.image_paths]
    nested = satmap_dir / drive.name[:10] / drive.name
    folder = next((d for d in (satmap_dir, nested) if (d / frame_names[0]).is_file()), None)
    if folder is None:
        raise InputError(f"{satmap_dir}: no satellite image {frame_names[0]} (looked in it and in {nested})")
    datum = drive.datum
    e, n, _, _ = drive.poses_enu()
    n_frames = min(len(frame_names), len(drive.oxts))
    store = MBTilesStore.create(tiles_out, name=f"KITTI {drive.name} satellite", image_format="png",
                                description="KITTI cross-view benchmark satellite images, mosaicked")
    painted: list[tuple[float, float]] = []
    try:
        for i in tqdm(range(n_frames), desc="satellite images", unit="frame", disable=not progress):
            path = folder / frame_names[i]
            if not path.is_file():
                continue
            if any(math.hypot(e[i] - pe, n[i] - pn) < spacing_m for pe, pn in painted[-50:]):
                continue
            rgb = load_png_rgb(path)
            frame_mpp = mpp if mpp is not None else satmap_mpp(drive.oxts[i, OXTS["lat"]])
            add_enu_raster(store, EnuRaster(rgb, datum, float(e[i]), float(n[i]), frame_mpp), zoom=TILE_ZOOM)
            painted.append((float(e[i]), float(n[i])))
        if not painted:
            raise InputError(f"{folder}: none of the drive's frames has a satellite image")
        build_overviews(store, OVERVIEW_MIN_ZOOM)
        store.commit()
    except BaseException:
        store.abort()
        raise
    return store, len(painted)


def check_output_path(path: str | Path) -> Path:
    """InputError unless `path` can be created: its nearest existing ancestor must be a writable directory."""
    import os

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"output {path} exists and is not a directory")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot create output directory {path.parent}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"output directory {ancestor} is not writable")
    return path


def default_tiles_path(out_bag: str | Path) -> Path:
    out_bag = Path(out_bag)
    return out_bag.with_name(out_bag.name + "_tiles.mbtiles")


def import_kitti(raw_dir: str | Path, out_bag: str | Path, satmap_dir: str | Path | None = None,
                 tiles_out: str | Path | None = None, compressed: bool = False, jpeg_quality: int = 90,
                 satmap_mpp_override: float | None = None, progress: bool = True,
                 gnss_model: str | None = None, gnss_seed: int = 0, gnss_hz: float = 5.0) -> dict:
    """Write a KITTI raw drive as a bag (and its satellite images as MBTiles); returns a summary.

    `gnss_model` (a profile of `cvgl_ros.sim.gnss`) replaces the OXTS fix on /gnss/fix with
    that receiver's (module docstring). Nothing is left at `out_bag` or the tiles path
    unless both complete.
    """
    import json

    from cvgl_ros.datasets import bag as B

    check_output_path(out_bag)
    if satmap_dir is not None:
        tiles_out = Path(tiles_out) if tiles_out is not None else default_tiles_path(out_bag)
        if tiles_out.is_dir():
            raise InputError(f"tiles output {tiles_out} is a directory")
        check_output_path(tiles_out)
    drive = read_kitti_drive(raw_dir)
    # The first image decides the camera size check before anything is written.
    load_png_rgb(drive.image_paths[0], (drive.width, drive.height))
    datum = drive.datum
    gnss = None
    if gnss_model is not None:
        gnss = simulated_gnss(drive, gnss_model, gnss_seed, gnss_hz)

    store = None
    n_painted = 0
    if satmap_dir is not None:
        store, n_painted = write_kitti_satmap_tiles(drive, satmap_dir, tiles_out, satmap_mpp_override, progress=progress)
    try:
        with B.BagWriter(out_bag) as bag:
            bag.set_datum(datum)
            bag.set_custom_data("cvgl.source", f"kitti_raw:{drive.name}")
            if gnss is not None:
                bag.set_custom_data(B.GNSS_MODEL_KEY, json.dumps(
                    {"profile": gnss_model, "seed": int(gnss_seed), "rate_hz": float(gnss_hz),
                     "model": "cvgl_ros.sim.gnss on the OXTS trajectory"}, sort_keys=True))
            sources = [camera_source(drive, compressed, jpeg_quality), oxts_source(drive, oxts_fix=gnss is None)]
            if gnss is not None:
                sources.append(receiver_source(gnss))
            B.write_merged(bag, sources, "KITTI -> bag", progress)
            counts = dict(bag.counts)
    except BaseException:
        if store is not None:
            store.abort()
        raise
    if store is not None:
        try:
            store.close()
        except BaseException:
            B.remove_bag(out_bag)
            raise
    gnss_summary = None
    if gnss is not None:
        gnss_summary = {"profile": gnss_model, "seed": int(gnss_seed), "rate_hz": float(gnss_hz),
                        "error_stats": gnss[0].error_stats()}
    return {"drive": drive.name, "frames": len(drive.image_paths), "oxts": len(drive.oxts), "datum": datum.to_dict(),
            "counts": counts, "tiles": str(tiles_out) if store is not None else None, "satmap_frames_painted": n_painted,
            "gnss_model": gnss_summary}
