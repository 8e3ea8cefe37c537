"""Oxford RobotCar runs -> our bag format.

Input, one run folder as the dataset's tar chunks extract (`2014-12-09-13-21-02/`), with the
columns the RobotCar dataset SDK documents:

    stereo.timestamps          "<UNIX us> <chunk>" per line, one per stereo frame
    stereo/centre/<us>.png     Bumblebee XB3 centre image: 8-bit raw Bayer, pattern GBRG
    gps/gps.csv                timestamp,num_satellites,latitude,longitude,altitude,
                               latitude_sigma,longitude_sigma,altitude_sigma,northing,easting,down,utm_zone
    gps/ins.csv                timestamp,ins_status,latitude,longitude,altitude,northing,easting,down,
                               utm_zone,velocity_north,velocity_east,velocity_down,roll,pitch,yaw

Timestamps are UNIX microseconds; angles radians. The INS (NovAtel SPAN) gives roll/pitch/yaw
in the NED convention: yaw is a compass heading, clockwise from north, converted to REP-103
ENU yaw by `cvgl_ros.geo.yaw.heading_deg_to_yaw_enu`.

Output bag:

* `/camera/image_raw` (demosaiced to rgb8 with OpenCV, or JPEG on
  `/camera/image_raw/compressed`), undistorted with the SDK model's look-up table
  `models/stereo_narrow_left_distortion_lut.bin` (`--models DIR`), and `/camera/camera_info`
  at the image stamps: the pinhole intrinsics of that model's `stereo_narrow_left.txt`
  (scaled if the images were resized: `cvgl_ros.geo.pinhole`), D = 0, which is then true.
  The centre camera's lens distorts noticeably and the SDK describes it only by that table,
  so without `--models`, or with a models folder that has no table, the import is refused
  (InputError) unless `allow_distorted`: then the images stay distorted and NO CameraInfo is
  written (a pinhole CameraInfo with D = 0 would claim a rectification that was never done;
  consumers that need intrinsics then see none rather than wrong ones).
* `/gnss/fix` from gps.csv with the receiver's per-axis sigmas as the ENU covariance
  diagonal: longitude_sigma^2 (east), latitude_sigma^2 (north), altitude_sigma^2 (up),
  COVARIANCE_TYPE_DIAGONAL_KNOWN (an axis whose sigma is not a finite number > 0 makes the
  covariance UNKNOWN).
* `/ground_truth/pose` (frame `map`, ENU at the datum = the first INS fix) and
  `/ground_truth/fix` from ins.csv at its own rate, and from the same rows the motion
  sensors (ins.csv has no raw rates or accelerations; these are derived, and documented):
  - `/odom/wheel` (nav_msgs/Odometry `odom` -> `base_link`): twist.twist.linear.x = the
    INS velocity projected on the heading h (clockwise from north): v = velocity_north
    cos h + velocity_east sin h, signed (negative when reversing), where hypot(north, east)
    would lose the direction; its covariance unknown (0: ins.csv gives no velocity sigma);
    pose not measured (covariance diagonal 1e6).
  - `/imu/data` (sensor_msgs/Imu, frame `imu_link`, REP-103 FLU body axes): angular_velocity
    = the time derivatives (numpy.gradient: central differences, one-sided at the ends) of
    roll, -pitch and the unwrapped ENU yaw (= -d heading / dt), i.e. the Euler-angle rates,
    which equal the body rates for a near-level car (|roll|, |pitch| of a few degrees); the
    NED -> FLU flip negates pitch and yaw. angular_velocity.z is thus the yaw rate,
    counter-clockwise positive. Covariance unknown (zeros, as Imu.msg defines). No
    orientation and no linear acceleration (covariance[0] = -1 on both: not provided).

Frames listed in stereo.timestamps whose PNG is absent (a chunk not downloaded) are
skipped and counted; a PNG that is present but unreadable is an error.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum
from cvgl_ros.geo.pinhole import scale_intrinsics
from cvgl_ros.geo.yaw import heading_deg_to_yaw_enu

GPS_COLUMNS = ("timestamp", "num_satellites", "latitude", "longitude", "altitude", "latitude_sigma",
               "longitude_sigma", "altitude_sigma", "northing", "easting", "down", "utm_zone")
INS_COLUMNS = ("timestamp", "ins_status", "latitude", "longitude", "altitude", "northing", "easting", "down",
               "utm_zone", "velocity_north", "velocity_east", "velocity_down", "roll", "pitch", "yaw")
BAYER_ENCODING = "bayer_gbrg8"  # the SDK's BAYER_STEREO pattern
CAMERA_MODEL = "stereo_narrow_left"  # the SDK's model for stereo/centre
DEFAULT_INTRINSICS = (983.044006, 983.044006, 643.646973, 493.378998)  # fx, fy, cx, cy
DEFAULT_SIZE = (1280, 960)


def read_csv_columns(path: Path, columns: tuple[str, ...], numeric: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A RobotCar CSV with a header -> {column: array}; `numeric` columns as float64 (timestamp int64).

    InputError naming the file and line for a missing column, a short row or a bad number.
    """
    if not path.is_file():
        raise InputError(f"missing {path}")
    with open(path, newline="", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise InputError(f"{path} line 1: empty file, expected a header with {', '.join(columns)}")
        header = [h.strip() for h in header]
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(f"{path} line 1: header lacks column(s) {', '.join(missing)}")
        index = {c: header.index(c) for c in columns}
        rows: dict[str, list] = {c: [] for c in columns}
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise InputError(f"{path} line {lineno}: expected {len(header)} columns, got {len(row)} (truncated?)")
            for c in columns:
                cell = row[index[c]].strip()
                if c == "timestamp":
                    if not cell.isdigit():
                        raise InputError(f"{path} line {lineno}: timestamp {cell!r} is not integer microseconds")
                    rows[c].append(int(cell))
                elif c in numeric:
                    try:
                        rows[c].append(float(cell))
                    except ValueError:
                        raise InputError(f"{path} line {lineno}: {c} {cell!r} is not a number") from None
                else:
                    rows[c].append(cell)
    if not rows["timestamp"]:
        raise InputError(f"{path} holds no data rows")
    out = {c: np.asarray(v, dtype=np.int64 if c == "timestamp" else (np.float64 if c in numeric else object))
           for c, v in rows.items()}
    if np.any(np.diff(out["timestamp"]) <= 0):
        bad = int(np.flatnonzero(np.diff(out["timestamp"]) <= 0)[0]) + 3
        raise InputError(f"{path} line {bad}: timestamps must increase")
    return out


def read_stereo_timestamps(path: Path) -> np.ndarray:
    """stereo.timestamps -> int64 microseconds."""
    if not path.is_file():
        raise InputError(f"missing {path}")
    stamps = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1].lstrip("-").isdigit():
            raise InputError(f"{path} line {lineno}: expected '<timestamp us> <chunk>', got {line.strip()!r}")
        stamps.append(int(parts[0]))
    if not stamps:
        raise InputError(f"{path} holds no timestamps")
    out = np.asarray(stamps, dtype=np.int64)
    if np.any(np.diff(out) <= 0):
        bad = int(np.flatnonzero(np.diff(out) <= 0)[0]) + 2
        raise InputError(f"{path} line {bad}: timestamps must increase")
    return out


def read_camera_model(models_dir: str | Path | None) -> tuple[tuple[float, float, float, float], np.ndarray | None]:
    """((fx, fy, cx, cy) at 1280 x 960, undistortion look-up table or None) of the centre camera."""
    if models_dir is None:
        return DEFAULT_INTRINSICS, None
    models_dir = Path(models_dir)
    path = models_dir / f"{CAMERA_MODEL}.txt"
    if not path.is_file():
        raise InputError(f"no camera model {path}")
    first = path.read_text(errors="replace").splitlines()[:1]
    try:
        fx, fy, cx, cy = (float(v) for v in first[0].split()[:4])
    except (ValueError, IndexError):
        raise InputError(f"{path} line 1: expected 'fx fy cx cy'") from None
    lut_path = models_dir / f"{CAMERA_MODEL}_distortion_lut.bin"
    lut = np.fromfile(lut_path, dtype=np.float64) if lut_path.is_file() else None
    return (fx, fy, cx, cy), lut


def undistortion_maps(lut: np.ndarray, width: int, height: int, where: str):
    """The SDK's look-up table (all x, then all y source coordinates per undistorted pixel) -> cv2.remap maps."""
    if lut.size != 2 * width * height:
        raise InputError(f"{where}: {lut.size} values, expected 2 x {width} x {height} for the run's images")
    map_x = lut[: width * height].reshape(height, width).astype(np.float32)
    map_y = lut[width * height:].reshape(height, width).astype(np.float32)
    return map_x, map_y


def intrinsics_matrix(fx_fy_cx_cy, width: int, height: int) -> np.ndarray:
    """K for the run's image size: the model's 1280 x 960 intrinsics scaled if the images were resized."""
    fx, fy, cx, cy = fx_fy_cx_cy
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return scale_intrinsics(k, width / DEFAULT_SIZE[0], height / DEFAULT_SIZE[1])


def load_bayer_rgb(path: Path, maps=None) -> np.ndarray:
    """A raw GBRG Bayer PNG -> demosaiced (and optionally undistorted) RGB uint8."""
    import cv2

    from cvgl_ros.imaging import decode_image

    from cvgl_ros.datasets.kitti import decode_png

    raw = decode_png(path, cv2.IMREAD_UNCHANGED)
    if raw.ndim != 2 or raw.dtype != np.uint8:
        raise InputError(f"{path}: expected a single-channel 8-bit raw Bayer image, got {raw.dtype} {raw.shape}")
    rgb = decode_image(BAYER_ENCODING, raw.shape[0], raw.shape[1], raw.shape[1], raw)
    if maps is not None:
        if maps[0].shape != rgb.shape[:2]:
            raise InputError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, the distortion LUT is for "
                             f"{maps[0].shape[1]}x{maps[0].shape[0]}")
        rgb = cv2.remap(rgb, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return rgb


@dataclass(frozen=True)
class RobotCarRun:
    root: Path
    image_stamps_us: np.ndarray  # frames whose PNG exists
    image_paths: list[Path]
    missing_images: int
    gps: dict[str, np.ndarray]
    ins: dict[str, np.ndarray]

    @property
    def datum(self) -> Datum:
        return Datum(float(self.ins["latitude"][0]), float(self.ins["longitude"][0]), float(self.ins["altitude"][0]))

    def ins_poses_enu(self):
        """(east, north, up, yaw_enu_rad) of every INS row in the datum's ENU frame."""
        e, n, u = self.datum.to_enu(self.ins["latitude"], self.ins["longitude"], self.ins["altitude"])
        return e, n, u, heading_deg_to_yaw_enu(np.degrees(self.ins["yaw"]))


def read_robotcar_run(run_dir: str | Path) -> RobotCarRun:
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"no such RobotCar run directory: {root}")
    stamps = read_stereo_timestamps(root / "stereo.timestamps")
    image_dir = root / "stereo" / "centre"
    if not image_dir.is_dir():
        raise InputError(f"{root} is not a RobotCar run: missing stereo/centre/")
    paths = [image_dir / f"{t}.png" for t in stamps]
    present = np.array([p.is_file() for p in paths])
    if not present.any():
        raise InputError(f"{image_dir}: none of the {len(stamps)} frames of stereo.timestamps has a PNG")
    gps_numeric = tuple(c for c in GPS_COLUMNS if c not in ("timestamp", "utm_zone"))
    ins_numeric = tuple(c for c in INS_COLUMNS if c not in ("timestamp", "ins_status", "utm_zone"))
    gps = read_csv_columns(root / "gps" / "gps.csv", GPS_COLUMNS, gps_numeric)
    ins = read_csv_columns(root / "gps" / "ins.csv", INS_COLUMNS, ins_numeric)
    for name, table, path in (("gps", gps, "gps/gps.csv"), ("ins", ins, "gps/ins.csv")):
        lat, lon = table["latitude"], table["longitude"]
        bad = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
        if bad.any():
            raise InputError(f"{root / path} line {int(np.flatnonzero(bad)[0]) + 2}: latitude/longitude out of range")
    if not np.all(np.isfinite(ins["yaw"])):
        raise InputError(f"{root / 'gps/ins.csv'} line {int(np.flatnonzero(~np.isfinite(ins['yaw']))[0]) + 2}: yaw is not finite")
    return RobotCarRun(root, stamps[present], [p for p, ok in zip(paths, present) if ok],
                       int((~present).sum()), gps, ins)


def ins_motion(ins: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(forward speed m/s, FLU angular velocity (n, 3) rad/s) of every INS row (module docstring)."""
    t = (ins["timestamp"] - ins["timestamp"][0]) / 1e6
    heading = ins["yaw"]
    speed = ins["velocity_north"] * np.cos(heading) + ins["velocity_east"] * np.sin(heading)
    rates = np.zeros((len(t), 3))
    if len(t) >= 2:
        yaw_enu = np.unwrap(heading_deg_to_yaw_enu(np.degrees(heading)))
        rates[:, 0] = np.gradient(ins["roll"], t)
        rates[:, 1] = -np.gradient(ins["pitch"], t)
        rates[:, 2] = np.gradient(yaw_enu, t)
    else:
        rates[:] = np.nan  # one row: no rate
    return speed, rates


def distortion_refusal(models_dir) -> str:
    """The one-line reason the import refuses to publish distorted images as rectified."""
    where = "no --models" if models_dir is None else f"no {CAMERA_MODEL}_distortion_lut.bin in {models_dir}"
    return (f"RobotCar centre images would stay distorted ({where}): give the SDK's models/ folder with "
            f"{CAMERA_MODEL}_distortion_lut.bin, or --allow-distorted to import them distorted without CameraInfo")


def camera_source(run: RobotCarRun, first: np.ndarray, maps, k: np.ndarray | None, compressed: bool,
                  jpeg_quality: int):
    """The bag's camera: each frame (`first` is frame 0, already decoded) and, when `k` is given
    (undistorted images only have a pinhole model), its CameraInfo."""
    from cvgl_ros.datasets import bag as B
    from cvgl_ros.datasets.kitti import camera_frame_message

    height, width = first.shape[:2]

    def messages(stamp: int, i: int):
        rgb = first if i == 0 else load_bayer_rgb(run.image_paths[i], maps)
        if rgb.shape[:2] != (height, width):
            raise InputError(f"{run.image_paths[i]}: image is {rgb.shape[1]}x{rgb.shape[0]}, "
                             f"the run's first image is {width}x{height}")
        yield camera_frame_message(rgb, stamp, compressed, jpeg_quality)
        if k is not None:
            yield B.TOPIC_CAMERA_INFO, B.MSG_CAMERA_INFO, B.camera_info_msg(k, width, height, stamp)

    return B.MessageSource(run.image_stamps_us * 1000, messages)


def gps_source(run: RobotCarRun):
    """/gnss/fix from gps.csv with the per-axis sigmas as the ENU covariance (module docstring)."""
    from cvgl_ros.datasets import bag as B

    g = run.gps
    sigmas = np.column_stack([g["longitude_sigma"], g["latitude_sigma"], g["altitude_sigma"]])
    sigmas_known = np.all(np.isfinite(sigmas) & (sigmas > 0), axis=1)

    def messages(stamp: int, i: int):
        variances = tuple(float(v) for v in sigmas[i] ** 2) if sigmas_known[i] else None
        yield B.TOPIC_GNSS_FIX, B.MSG_NAVSATFIX, B.navsatfix_msg(
            g["latitude"][i], g["longitude"][i], g["altitude"][i], stamp, sigma_m=None, variances_enu=variances)

    return B.MessageSource(g["timestamp"] * 1000, messages)


def ins_source(run: RobotCarRun):
    """The ground truth and the motion sensors derived from ins.csv (module docstring)."""
    from cvgl_ros.datasets import bag as B

    r = run.ins
    e, n, u, yaw = run.ins_poses_enu()
    ins_speed, ins_rates = ins_motion(r)

    def messages(stamp: int, i: int):
        yield B.TOPIC_GT_FIX, B.MSG_NAVSATFIX, B.navsatfix_msg(
            r["latitude"][i], r["longitude"][i], r["altitude"][i], stamp, sigma_m=None, frame_id="base_link")
        yield B.TOPIC_GT_POSE, B.MSG_POSE_STAMPED, B.pose_stamped_msg(e[i], n[i], u[i], yaw[i], stamp)
        rates = ins_rates[i]
        yield B.TOPIC_IMU, B.MSG_IMU, B.imu_msg(stamp, rates if np.all(np.isfinite(rates)) else None, None,
                                                angular_velocity_variance=None, linear_acceleration_variance=None)
        if math.isfinite(ins_speed[i]):
            yield B.TOPIC_WHEEL_ODOM, B.MSG_ODOMETRY, B.wheel_odometry_msg(stamp, float(ins_speed[i]), None)

    return B.MessageSource(r["timestamp"] * 1000, messages)


def import_robotcar(run_dir: str | Path, out_bag: str | Path, compressed: bool = False, jpeg_quality: int = 90,
                    models_dir: str | Path | None = None, progress: bool = True, allow_distorted: bool = False) -> dict:
    """Write a RobotCar run as a bag; returns a summary. Nothing is left at `out_bag` on failure.

    Refused (InputError) without an undistortion table unless `allow_distorted` (module docstring).
    """
    from cvgl_ros.datasets import bag as B
    from cvgl_ros.datasets.kitti import check_output_path

    check_output_path(out_bag)
    intrinsics, lut = read_camera_model(models_dir)
    if lut is None and not allow_distorted:
        raise InputError(distortion_refusal(models_dir))
    run = read_robotcar_run(run_dir)
    first = load_bayer_rgb(run.image_paths[0])
    height, width = first.shape[:2]
    k = intrinsics_matrix(intrinsics, width, height)
    maps = None
    if lut is not None:
        maps = undistortion_maps(lut, width, height, f"{Path(models_dir) / CAMERA_MODEL}_distortion_lut.bin")
        first = load_bayer_rgb(run.image_paths[0], maps)
    datum = run.datum
    with B.BagWriter(out_bag) as bag:
        bag.set_datum(datum)
        bag.set_custom_data("cvgl.source", f"robotcar:{run.root.name}")
        camera = camera_source(run, first, maps, k if maps is not None else None, compressed, jpeg_quality)
        B.write_merged(bag, [camera, gps_source(run), ins_source(run)], "RobotCar -> bag", progress)
        counts = dict(bag.counts)
    return {"run": run.root.name, "frames": len(run.image_paths), "missing_images": run.missing_images,
            "gps": len(run.gps["timestamp"]), "ins": len(run.ins["timestamp"]), "datum": datum.to_dict(),
            "counts": counts, "undistorted": maps is not None}
