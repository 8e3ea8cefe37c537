"""rosbag2 reading and writing with `rosbags` (pure Python; no rosbag2 install needed).

Bags are written as MCAP (rosbag2 format version 9, with metadata.yaml) into a temporary
directory beside the target and renamed into place when closed, so an interrupted writer
never leaves a half bag under the final name. Message builders here construct the standard
messages of the Kilted typestore; stamps are integer nanoseconds of ROS time, converted to and
from a header's (sec, nanosec) by `cvgl_ros.stamps` (`stamp_to_ns` reads a message's stamp).
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from cvgl_ros.atomic import atomic_dir
from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum
from cvgl_ros.geo.yaw import yaw_to_quaternion
from cvgl_ros.stamps import ns_to_sec_nanosec

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
T = TYPESTORE.types  # message classes by type name

# The topics every recording and importer uses (README has the full table).
TOPIC_IMAGE = "/camera/image_raw"
TOPIC_IMAGE_COMPRESSED = "/camera/image_raw/compressed"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_GNSS_FIX = "/gnss/fix"
TOPIC_GT_POSE = "/ground_truth/pose"
TOPIC_GT_FIX = "/ground_truth/fix"
TOPIC_CLOCK = "/clock"
TOPIC_IMU = "/imu/data"
TOPIC_WHEEL_ODOM = "/odom/wheel"

# metadata.yaml custom_data key holding the `map` frame datum as "lat,lon,alt".
DATUM_KEY = "cvgl.datum"
# custom_data key holding the motion sensors' error model (JSON) of a simulated drive.
MOTION_SENSORS_KEY = "cvgl.motion_sensors"
# custom_data key holding the simulated receiver model (JSON) that degraded an import's /gnss/fix.
GNSS_MODEL_KEY = "cvgl.gnss_model"

MSG_IMAGE = "sensor_msgs/msg/Image"
MSG_COMPRESSED = "sensor_msgs/msg/CompressedImage"
MSG_CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
MSG_NAVSATFIX = "sensor_msgs/msg/NavSatFix"
MSG_POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
MSG_IMU = "sensor_msgs/msg/Imu"
MSG_ODOMETRY = "nav_msgs/msg/Odometry"

NAVSAT_STATUS_NO_FIX = -1
NAVSAT_STATUS_FIX = 0
NAVSAT_SERVICE_GPS = 1
COVARIANCE_TYPE_UNKNOWN = 0
COVARIANCE_TYPE_APPROXIMATED = 1
COVARIANCE_TYPE_DIAGONAL_KNOWN = 2

IMU_FRAME = "imu_link"
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
UNKNOWN_VARIANCE = 1e6  # a diagonal entry of an Odometry covariance that the sensor does not measure


# -- message builders -------------------------------------------------------------------

def header(stamp_ns: int, frame_id: str):
    """A std_msgs/Header (InputError: a stamp a ROS time cannot hold, `cvgl_ros.stamps`)."""
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera", encoding: str = "rgb8"):
    """An uncompressed Image from an HxWx3 (rgb8/bgr8) or HxW (mono8) uint8 array."""
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return T[MSG_IMAGE](
        header=header(stamp_ns, frame_id), height=arr.shape[0], width=arr.shape[1], encoding=encoding,
        is_bigendian=0, step=arr.shape[1] * channels, data=arr.reshape(-1),
    )


def compressed_image_msg(data: bytes, stamp_ns: int, frame_id: str = "camera", fmt: str = "jpeg"):
    return T[MSG_COMPRESSED](header=header(stamp_ns, frame_id), format=fmt, data=np.frombuffer(data, dtype=np.uint8))


def camera_info_msg(k: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str = "camera",
                    distortion: Iterable[float] = (0.0, 0.0, 0.0, 0.0, 0.0)):
    """A pinhole CameraInfo (plumb_bob) from a 3x3 intrinsic matrix."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T[MSG_CAMERA_INFO](
        header=header(stamp_ns, frame_id), height=int(height), width=int(width), distortion_model="plumb_bob",
        d=np.asarray(list(distortion), dtype=np.float64), k=k.reshape(-1), r=np.eye(3).reshape(-1),
        p=p.reshape(-1), binning_x=0, binning_y=0, roi=roi,
    )


def navsatfix_msg(lat_deg: float, lon_deg: float, alt_m: float, stamp_ns: int, *, sigma_m: float | None,
                  status: int = NAVSAT_STATUS_FIX, frame_id: str = "gnss",
                  variances_enu: tuple[float, float, float] | None = None, covariance_type: int | None = None):
    """A NavSatFix; `sigma_m` is the receiver's reported 1-sigma horizontal error (None: unknown).

    The covariance is the ENU diagonal (east, north, up; as NavSatFix defines it):
    `variances_enu` when given (per-axis variances, m^2), else sigma_m^2, sigma_m^2 and
    (2 sigma_m)^2 (vertical error about twice the horizontal). Its type is DIAGONAL_KNOWN
    unless `covariance_type` says otherwise (APPROXIMATED when the source gives only a
    horizontal accuracy); UNKNOWN with no sigma.
    """
    cov = np.zeros(9)
    cov_type = COVARIANCE_TYPE_UNKNOWN
    if variances_enu is not None and all(math.isfinite(v) and v >= 0 for v in variances_enu):
        cov[0], cov[4], cov[8] = (float(v) for v in variances_enu)
        cov_type = COVARIANCE_TYPE_DIAGONAL_KNOWN if covariance_type is None else int(covariance_type)
    elif sigma_m is not None and math.isfinite(sigma_m):
        cov[0] = cov[4] = sigma_m**2
        cov[8] = (2.0 * sigma_m) ** 2
        cov_type = COVARIANCE_TYPE_DIAGONAL_KNOWN if covariance_type is None else int(covariance_type)
    return T[MSG_NAVSATFIX](
        header=header(stamp_ns, frame_id),
        status=T["sensor_msgs/msg/NavSatStatus"](status=int(status), service=NAVSAT_SERVICE_GPS),
        latitude=float(lat_deg), longitude=float(lon_deg), altitude=float(alt_m),
        position_covariance=cov, position_covariance_type=cov_type,
    )


def _vector3(xyz):
    x, y, z = (float(v) for v in xyz)
    return T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)


def imu_msg(stamp_ns: int, angular_velocity_radps, linear_acceleration_mps2, *,
            angular_velocity_variance: float | tuple | None, linear_acceleration_variance: float | tuple | None,
            frame_id: str = IMU_FRAME):
    """A sensor_msgs/Imu without orientation (orientation_covariance[0] = -1, as Imu.msg defines).

    Variances are per-axis (a number for all three, or three numbers) and fill the
    covariance diagonals; None leaves the matrix all zeros, which Imu.msg reads as
    "covariance unknown". A vector given as None is "not provided": zeros with
    covariance[0] = -1.
    """
    def block(vector, variance):
        cov = np.zeros(9)
        if vector is None:
            cov[0] = -1.0
            return _vector3((0.0, 0.0, 0.0)), cov
        if variance is not None:
            cov[[0, 4, 8]] = np.broadcast_to(np.asarray(variance, dtype=float), (3,))
        return _vector3(vector), cov

    w, w_cov = block(angular_velocity_radps, angular_velocity_variance)
    a, a_cov = block(linear_acceleration_mps2, linear_acceleration_variance)
    orientation_cov = np.zeros(9)
    orientation_cov[0] = -1.0
    return T[MSG_IMU](
        header=header(stamp_ns, frame_id),
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=orientation_cov, angular_velocity=w, angular_velocity_covariance=w_cov,
        linear_acceleration=a, linear_acceleration_covariance=a_cov,
    )


def wheel_odometry_msg(stamp_ns: int, speed_mps: float, speed_variance: float | None):
    """A nav_msgs/Odometry carrying only a forward speed: what wheel encoders measure.

    Frame `odom`, child `base_link`; twist.twist.linear.x = forward speed (m/s) with
    twist.covariance[0] its variance (0 when unknown). Everything else is unmeasured: the
    pose is the origin with identity orientation and UNKNOWN_VARIANCE (1e6) on its
    covariance diagonal, and the other twist components are 0 with UNKNOWN_VARIANCE.
    """
    pose_cov = np.zeros(36)
    pose_cov[::7] = UNKNOWN_VARIANCE
    twist_cov = np.zeros(36)
    twist_cov[::7] = UNKNOWN_VARIANCE
    twist_cov[0] = float(speed_variance) if speed_variance is not None and math.isfinite(speed_variance) else 0.0
    pose = T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
    )
    twist = T["geometry_msgs/msg/Twist"](linear=_vector3((speed_mps, 0.0, 0.0)), angular=_vector3((0.0, 0.0, 0.0)))
    return T[MSG_ODOMETRY](
        header=header(stamp_ns, ODOM_FRAME), child_frame_id=BASE_FRAME,
        pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=pose_cov),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=twist_cov),
    )


def pose_stamped_msg(east_m: float, north_m: float, up_m: float, yaw_enu_rad: float, stamp_ns: int,
                     frame_id: str = "map"):
    qx, qy, qz, qw = (float(v) for v in yaw_to_quaternion(yaw_enu_rad))
    pose = T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=float(east_m), y=float(north_m), z=float(up_m)),
        orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
    )
    return T[MSG_POSE_STAMPED](header=header(stamp_ns, frame_id), pose=pose)


# -- writing ----------------------------------------------------------------------------

class BagWriter:
    """Write a rosbag2 (MCAP) atomically: `with BagWriter(path) as bag: bag.write(topic, type, t, msg)`.

    Connections are added on first use of a topic. `write_raw` takes CDR bytes as they come
    from rclpy's raw subscriptions. The bag appears at `path` only when the block completes.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._dir_ctx = None
        self._writer: Writer | None = None
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.before_close: list = []  # called first on close (e.g. a recorder detaching, under its lock)

    def __enter__(self) -> "BagWriter":
        self._dir_ctx = atomic_dir(self.path)
        # rosbags creates the bag directory itself and names the storage file after it: write
        # to <tmp>/<final name>/ so the .mcap gets its final name, then lift it up on close.
        self._tmp = self._dir_ctx.__enter__()
        self._writer = Writer(self._tmp / self.path.name, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        return self

    def _connection(self, topic: str, msgtype: str):
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            self._connections[topic] = conn
        return conn

    def set_custom_data(self, key: str, value: str) -> None:
        """Store a string in metadata.yaml's custom_data (e.g. DATUM_KEY)."""
        self._writer.set_custom_data(key, str(value))

    def set_datum(self, datum: Datum) -> None:
        """Record the ENU datum of the `map` frame, so readers can convert fixes to `map`."""
        self.set_custom_data(DATUM_KEY, f"{datum.lat_deg!r},{datum.lon_deg!r},{datum.alt_m!r}")

    def write(self, topic: str, msgtype: str, stamp_ns: int, msg) -> None:
        self.write_raw(topic, msgtype, stamp_ns, TYPESTORE.serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, stamp_ns: int, cdr: bytes) -> None:
        self._writer.write(self._connection(topic, msgtype), int(stamp_ns), cdr)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def __exit__(self, exc_type, exc, tb):
        for detach in self.before_close:  # no other thread writes once these return
            detach()
        try:
            self._writer.close()
            inner = self._tmp / self.path.name
            for item in inner.iterdir():
                item.rename(self._tmp / item.name)
            inner.rmdir()
        except BaseException as close_exc:
            self._dir_ctx.__exit__(type(close_exc), close_exc, close_exc.__traceback__)
            raise
        self._dir_ctx.__exit__(exc_type, exc, tb)
        return False


# -- importing: several sources merged into one bag -------------------------------------

@dataclass(frozen=True)
class MessageSource:
    """One source of a recording an importer writes (camera frames, GNSS records, ...): its
    stamps, and `messages(stamp_ns, i)`, the (topic, msgtype, message)s of its record i."""

    stamps_ns: Sequence[int]
    messages: Callable[[int, int], Iterable[tuple[str, str, object]]]


def write_merged(bag: BagWriter, sources: Sequence[MessageSource], desc: str, progress: bool = True) -> None:
    """Write every source's messages into `bag` in stamp order, each logged at its record's stamp;
    records of one stamp in the order of `sources`, then in their own order."""
    from tqdm import tqdm

    records = sorted((int(t), order, i) for order, source in enumerate(sources)
                     for i, t in enumerate(source.stamps_ns))
    for stamp, order, i in tqdm(records, desc=desc, unit="msg", disable=not progress):
        for topic, msgtype, msg in sources[order].messages(stamp, i):
            bag.write(topic, msgtype, stamp, msg)


# -- reading ----------------------------------------------------------------------------

def _open_reader(path: str | Path) -> Reader:
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such bag: {path}")
    if not (path / "metadata.yaml").is_file():
        raise InputError(f"{path} is not a rosbag2 directory (no metadata.yaml)")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several types for damaged bags
        raise InputError(f"cannot open bag {path}: {exc}") from None
    return reader


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """{topic: (message type, message count)} of a bag."""
    reader = _open_reader(path)
    try:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    finally:
        reader.close()


def bag_custom_data(path: str | Path) -> dict[str, str]:
    """The custom_data dict of a bag's metadata.yaml (empty when absent)."""
    meta_file = Path(path) / "metadata.yaml"
    if not meta_file.is_file():
        raise InputError(f"{path} is not a rosbag2 directory (no metadata.yaml)")
    try:
        meta = yaml.safe_load(meta_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{meta_file} is not valid YAML: {exc}") from None
    return dict(meta.get("rosbag2_bagfile_information", {}).get("custom_data") or {})


def parse_datum_text(text: str, where: str = "datum") -> Datum:
    """'lat,lon[,alt]' (degrees, degrees, metres; what BagWriter.set_datum writes) -> Datum.

    Two or three finite numbers, latitude in [-90, 90] (and not within 0.1 deg of a pole,
    where a local ENU frame degenerates), longitude in [-180, 180]; anything else is an
    InputError naming `where` and the text, e.g. `nan,nan,0`, `95,8.4,0` or `garbage`."""
    fields = str(text).split(",")
    try:
        if len(fields) not in (2, 3):
            raise InputError(f"expected 'lat,lon[,alt]', got {len(fields)} field(s)")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise InputError("expected 'lat,lon[,alt]' as numbers") from None
        return Datum(*values)  # checks finiteness and ranges
    except InputError as exc:
        raise InputError(f"{where} {str(text)[:80]!r} is invalid: {exc}") from None


def recorded_datum(path: str | Path) -> Datum | None:
    """The `map` frame datum recorded in a bag (BagWriter.set_datum), validated; None when
    the bag records none. A recorded but invalid datum is an InputError, never None."""
    text = bag_custom_data(path).get(DATUM_KEY)
    if text is None:
        return None
    return parse_datum_text(text, f"bag {path}: datum ({DATUM_KEY} in metadata.yaml)")


def bag_datum(path: str | Path) -> Datum:
    """The `map` frame datum recorded in a bag by BagWriter.set_datum (see `recorded_datum`)."""
    datum = recorded_datum(path)
    if datum is None:
        raise InputError(f"bag {path} records no datum ({DATUM_KEY} missing from metadata.yaml custom_data)")
    return datum


def read_messages(path: str | Path, topics: Iterable[str] | None = None, raw: bool = False) -> Iterator[tuple[str, str, int, object]]:
    """Yield (topic, msgtype, log time ns, message) in log-time order.

    With `raw=True` the message is the CDR bytes (for replaying onto rclpy topics).
    """
    reader = _open_reader(path)
    try:
        wanted = set(topics) if topics is not None else None
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for conn, stamp, data in reader.messages(connections=conns):
            msg = data if raw else TYPESTORE.deserialize_cdr(data, conn.msgtype)
            yield conn.topic, conn.msgtype, stamp, msg
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"bag {path} is damaged: {exc}") from None
    finally:
        reader.close()


def remove_bag(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
