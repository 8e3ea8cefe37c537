"""ROS messages <-> cvgl_ros core types (the only place the nodes touch message fields).

Likelihood cloud (`/cvgl/likelihood`, `sensor_msgs/PointCloud2`, frame `map`): one point
per kept cell of a `LikelihoodVolume`, fields

    x, y, z, yaw, log_likelihood : float32  (cell centre east/north in `map`, z = 0, ENU yaw)
    k, row, col                  : uint16   (the cell's yaw bin, row and column)

so RViz draws it (x, y, z; colour by `log_likelihood`) and the filter node rebuilds the
volume. Kept cells: every cell within `threshold_nats` of the volume's maximum plus the
best cell below that cut, at most `max_points` of them (always the largest values). Points
0 and 1 are always the grid's first and last cells, (0, 0, 0) and (K-1, H-1, W-1): their
positions and yaws give the grid's centre, cell size and yaw bins. `cloud_to_volume` fills
every cell that was not sent with the smallest value sent besides the corners (the best
cell below the cut, or the last one the cap let through): an upper bound of every cell not
sent, so a thresholded volume is never more peaked than the original. With the defaults (12 nats) a cell not sent is at
least e^12 ~ 160 000 times less likely than the peak.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, PoseWithCovarianceStamped, Vector3Stamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import NavSatFix, NavSatStatus, PointCloud2, PointField

from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import quaternion_to_yaw, yaw_to_quaternion
from cvgl_ros.imaging import decode_compressed, decode_image
from cvgl_ros.likelihood import LikelihoodVolume
from cvgl_ros.stamps import ns_to_sec_nanosec, stamp_to_ns

# -- time (the conversion itself is cvgl_ros.stamps) -----------------------------------

def to_stamp(ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time (InputError: a stamp a ROS time cannot hold)."""
    sec, nanosec = ns_to_sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


# -- camera -----------------------------------------------------------------------------


def image_to_rgb(msg) -> np.ndarray:
    """`sensor_msgs/Image` or `CompressedImage` -> HxWx3 uint8 RGB (InputError if bad)."""
    if hasattr(msg, "encoding"):
        return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    return decode_compressed(msg.format, msg.data)


def camera_info_to_k(msg) -> tuple[np.ndarray, int, int]:
    """`CameraInfo` -> (3x3 K, width, height); InputError when the intrinsics are unusable."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise InputError(f"camera_info has unusable intrinsics fx={k[0, 0]:g} fy={k[1, 1]:g}")
    return k, int(msg.width), int(msg.height)


# -- GNSS -------------------------------------------------------------------------------


@dataclass
class GnssFix:
    stamp_ns: int
    east_m: float
    north_m: float
    up_m: float
    sigma_m: float
    status_ok: bool


def navsatfix_sigma_m(msg, default_sigma_m: float) -> float:
    """1-sigma horizontal error the receiver reports (mean of the E and N variances)."""
    if msg.position_covariance_type != NavSatFix.COVARIANCE_TYPE_UNKNOWN:
        var = 0.5 * (float(msg.position_covariance[0]) + float(msg.position_covariance[4]))
        if math.isfinite(var) and var > 0:
            return math.sqrt(var)
    return float(default_sigma_m)


def check_navsatfix(msg) -> None:
    """InputError unless the fix is a finite position with a fix status."""
    if msg.status.status < NavSatStatus.STATUS_FIX:
        raise InputError("GNSS fix has status NO_FIX")
    values = (msg.latitude, msg.longitude, msg.altitude)
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"GNSS fix holds a non-finite position (lat={msg.latitude}, lon={msg.longitude}, alt={msg.altitude})")
    if abs(msg.latitude) > 90 or abs(msg.longitude) > 180:
        raise InputError(f"GNSS fix lat={msg.latitude} lon={msg.longitude} is outside WGS84 range")


def navsatfix_to_enu(msg, datum, default_sigma_m: float) -> GnssFix:
    """A valid NavSatFix -> GnssFix in the `map` frame of `datum` (InputError if invalid)."""
    check_navsatfix(msg)
    e, n, u = datum.to_enu(msg.latitude, msg.longitude, msg.altitude)
    return GnssFix(stamp_to_ns(msg.header.stamp), float(e), float(n), float(u),
                   navsatfix_sigma_m(msg, default_sigma_m), True)


# -- poses ------------------------------------------------------------------------------


def covariance_6x6(cov_xy_yaw: np.ndarray) -> list[float]:
    """3x3 covariance over (x, y, yaw) -> the 36 floats of a planar ROS pose covariance.

    z, roll and pitch are not estimated: their rows are 0, as planar localizers publish.
    """
    c3 = np.asarray(cov_xy_yaw, dtype=np.float64).reshape(3, 3)
    c6 = np.zeros((6, 6))
    idx = [0, 1, 5]
    for i, a in enumerate(idx):
        for j, b in enumerate(idx):
            c6[a, b] = c3[i, j]
    return c6.reshape(-1).tolist()


def pose_msg(east_m: float, north_m: float, yaw_enu_rad: float, up_m: float = 0.0) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = float(east_m), float(north_m), float(up_m)
    qx, qy, qz, qw = (float(v) for v in yaw_to_quaternion(yaw_enu_rad))
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
    return pose


def pose_stamped_msg(stamp: int, frame_id: str, east_m: float, north_m: float, yaw_enu_rad: float) -> PoseStamped:
    out = PoseStamped()
    out.header.stamp = to_stamp(stamp)
    out.header.frame_id = frame_id
    out.pose = pose_msg(east_m, north_m, yaw_enu_rad)
    return out


def pose_with_covariance_msg(stamp: int, frame_id: str, east_m: float, north_m: float, yaw_enu_rad: float,
                             cov_xy_yaw: np.ndarray) -> PoseWithCovarianceStamped:
    msg = PoseWithCovarianceStamped()
    msg.header.stamp = to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.pose.pose = pose_msg(east_m, north_m, yaw_enu_rad)
    msg.pose.covariance = covariance_6x6(cov_xy_yaw)
    return msg


def pose_msg_to_xy_yaw(msg) -> tuple[float, float, float, np.ndarray]:
    """PoseWithCovarianceStamped -> (east, north, yaw, 3x3 covariance over x, y, yaw)."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    c6 = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)
    c3 = c6[np.ix_([0, 1, 5], [0, 1, 5])]
    return float(p.x), float(p.y), float(quaternion_to_yaw(q.x, q.y, q.z, q.w)), c3


def odometry_msg(stamp: int, frame_id: str, child_frame_id: str, east_m: float, north_m: float,
                 yaw_enu_rad: float, cov_xy_yaw: np.ndarray, speed_mps: float, speed_var: float) -> Odometry:
    msg = Odometry()
    msg.header.stamp = to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id
    msg.pose.pose = pose_msg(east_m, north_m, yaw_enu_rad)
    msg.pose.covariance = covariance_6x6(cov_xy_yaw)
    msg.twist.twist.linear.x = float(speed_mps)  # in base_link: forward speed
    twist_cov = np.zeros(36)
    twist_cov[0] = float(speed_var)
    msg.twist.covariance = twist_cov.tolist()
    return msg


def fused_navsatfix_msg(stamp: int, frame_id: str, datum, east_m: float, north_m: float, up_m: float,
                        cov_xy_yaw: np.ndarray, up_var: float) -> NavSatFix:
    """The fused position as a NavSatFix with its ENU covariance (type KNOWN)."""
    lat, lon, alt = datum.to_wgs84(east_m, north_m, up_m)
    msg = NavSatFix()
    msg.header.stamp = to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.status.status = NavSatStatus.STATUS_FIX
    msg.status.service = NavSatStatus.SERVICE_GPS
    msg.latitude, msg.longitude, msg.altitude = float(lat), float(lon), float(alt)
    c3 = np.asarray(cov_xy_yaw, dtype=np.float64).reshape(3, 3)
    cov = np.zeros((3, 3))
    cov[:2, :2] = c3[:2, :2]
    cov[2, 2] = float(up_var)
    msg.position_covariance = cov.reshape(-1).tolist()
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
    return msg


def pose_array_msg(stamp: int, frame_id: str, east_m, north_m, yaw_enu_rad) -> PoseArray:
    """Planar poses -> PoseArray (the quaternions computed at once, not per pose)."""
    msg = PoseArray()
    msg.header.stamp = to_stamp(stamp)
    msg.header.frame_id = frame_id
    _, _, qz, qw = yaw_to_quaternion(yaw_enu_rad)
    poses = []
    for e, n, z, w in zip(np.asarray(east_m, float).tolist(), np.asarray(north_m, float).tolist(),
                          np.asarray(qz).tolist(), np.asarray(qw).tolist()):
        pose = Pose()
        position, orientation = pose.position, pose.orientation
        position.x, position.y = e, n
        orientation.z, orientation.w = z, w
        poses.append(pose)
    msg.poses = poses
    return msg


# -- likelihood cloud ---------------------------------------------------------------------

_CLOUD_DTYPE = np.dtype({
    "names": ["x", "y", "z", "yaw", "log_likelihood", "k", "row", "col"],
    "formats": ["<f4", "<f4", "<f4", "<f4", "<f4", "<u2", "<u2", "<u2"],
    "offsets": [0, 4, 8, 12, 16, 20, 22, 24],
    "itemsize": 28,
})
_FIELD_TYPES = {np.dtype("<f4"): PointField.FLOAT32, np.dtype("<u2"): PointField.UINT16,
                np.dtype("<f8"): PointField.FLOAT64, np.dtype("<u4"): PointField.UINT32}
_NUMPY_OF = {PointField.FLOAT32: "<f4", PointField.FLOAT64: "<f8", PointField.UINT16: "<u2",
             PointField.UINT32: "<u4", PointField.INT32: "<i4", PointField.UINT8: "u1"}


def select_cells(volume: LikelihoodVolume, threshold_nats: float, max_points: int) -> np.ndarray:
    """Flat indices of the cells a cloud carries: both grid corners first, then the kept cells."""
    flat = volume.log_likelihood.reshape(-1)
    if flat.size <= 2:
        return np.arange(flat.size)
    corners = np.array([0, flat.size - 1])
    inner = flat.astype(np.float64)
    inner[corners] = -np.inf  # the corners are sent anyway; choose among the other cells
    peak = float(inner.max())
    # the cells above the cut plus the best one below it (so the smallest value sent bounds
    # every cell not sent), at most max_points of them: the n largest
    n = min(int(np.count_nonzero(inner >= peak - threshold_nats)) + 1, max(max_points - 2, 1), flat.size - 2)
    keep = np.argpartition(-inner, n - 1)[:n]
    keep.sort()
    return np.concatenate([corners, keep])


def volume_to_cloud(volume: LikelihoodVolume, frame_id: str = "map", threshold_nats: float = 12.0,
                    max_points: int = 5000) -> PointCloud2:
    """LikelihoodVolume -> PointCloud2 of its likely cells (see the module docstring)."""
    k_bins, h, w = volume.shape
    if max(k_bins, h, w) > 65535:
        raise InputError(f"likelihood volume {volume.shape} is too large for a uint16-indexed cloud")
    idx = select_cells(volume, threshold_nats, max_points)
    k, r, c = np.unravel_index(idx, volume.shape)
    east, north = volume.cell_centres()
    pts = np.zeros(idx.size, dtype=_CLOUD_DTYPE)
    pts["x"] = east[r, c]
    pts["y"] = north[r, c]
    pts["yaw"] = volume.yaw_bins_rad[k]
    pts["log_likelihood"] = volume.log_likelihood.reshape(-1)[idx]
    pts["k"], pts["row"], pts["col"] = k, r, c
    return points_to_cloud(pts, volume.stamp_ns, frame_id)


def points_to_cloud(pts: np.ndarray, stamp_ns: int, frame_id: str) -> PointCloud2:
    """A structured array of little-endian fields (`_FIELD_TYPES`) -> one unorganized, dense
    PointCloud2 row; `cloud_points` reads it back."""
    msg = PointCloud2()
    msg.header.stamp = to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = 1, int(pts.size)
    msg.fields = [PointField(name=name, offset=pts.dtype.fields[name][1],
                             datatype=_FIELD_TYPES[pts.dtype.fields[name][0]], count=1)
                  for name in pts.dtype.names]
    msg.is_bigendian = False
    msg.point_step = pts.dtype.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = pts.tobytes()
    return msg


def cloud_points(msg) -> np.ndarray:
    """A PointCloud2 -> structured numpy array of its points (fields as the message says)."""
    if msg.is_bigendian:
        raise InputError("big-endian PointCloud2 is not supported")
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.datatype not in _NUMPY_OF or f.count != 1:
            raise InputError(f"PointCloud2 field {f.name!r} has an unsupported type {f.datatype}/count {f.count}")
        names.append(f.name)
        formats.append(_NUMPY_OF[f.datatype])
        offsets.append(f.offset)
    n = int(msg.width) * int(msg.height)
    if msg.point_step <= 0 or len(msg.data) != n * msg.point_step:
        raise InputError(f"PointCloud2 data holds {len(msg.data)} bytes, expected {n} points x {msg.point_step}")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(msg.point_step)})
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=n)


def cloud_to_volume(msg) -> LikelihoodVolume:
    """A likelihood PointCloud2 written by `volume_to_cloud` -> LikelihoodVolume (InputError if not)."""
    pts = cloud_points(msg)
    need = ("x", "y", "yaw", "log_likelihood", "k", "row", "col")
    missing = [n for n in need if n not in (pts.dtype.names or ())]
    if missing:
        raise InputError(f"likelihood cloud lacks field(s) {', '.join(missing)}")
    if pts.size < 1:
        raise InputError("likelihood cloud has no points")
    k = pts["k"].astype(np.int64)
    r = pts["row"].astype(np.int64)
    c = pts["col"].astype(np.int64)
    if k[0] != 0 or r[0] != 0 or c[0] != 0:
        raise InputError("likelihood cloud does not start with the grid's first cell (0, 0, 0)")
    last = 1 if pts.size > 1 else 0
    shape = (int(k[last]) + 1, int(r[last]) + 1, int(c[last]) + 1)
    if np.any(k >= shape[0]) or np.any(r >= shape[1]) or np.any(c >= shape[2]):
        raise InputError("likelihood cloud holds a cell outside the grid its corners define")
    x = pts["x"].astype(np.float64)
    y = pts["y"].astype(np.float64)
    ll = pts["log_likelihood"].astype(np.float32)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(ll))
            and np.all(np.isfinite(pts["yaw"]))):
        raise InputError("likelihood cloud holds NaN or Inf")
    _, h, w = shape
    if w > 1:
        cell_m = (x[last] - x[0]) / (w - 1)
    elif h > 1:
        cell_m = (y[0] - y[last]) / (h - 1)
    else:
        raise InputError("likelihood cloud grid of one cell has no cell size")
    yaw0, yaw1 = float(pts["yaw"][0]), float(pts["yaw"][last])
    yaws = np.linspace(yaw0, yaw1, shape[0]) if shape[0] > 1 else np.array([yaw0])
    fill = float(ll[2:].min()) if ll.size > 2 else float(ll.min())
    volume = np.full(shape, fill, dtype=np.float32)
    volume[k, r, c] = ll
    return LikelihoodVolume(volume, center_e_m=0.5 * (x[0] + x[last]), center_n_m=0.5 * (y[0] + y[last]),
                            cell_m=float(cell_m), yaw_bins_rad=yaws, stamp_ns=stamp_to_ns(msg.header.stamp))


# -- motion sensors and integrity ------------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) and value >= 0 else None


def imu_yaw_rate(msg) -> tuple[int, float, float | None]:
    """sensor_msgs/Imu -> (stamp_ns, yaw rate about the body z axis in rad/s, its variance or
    None when unknown). REP-103: z up, counter-clockwise positive; the IMU is assumed
    mounted with its z axis along base_link's. Per the message definition, covariance[0] =
    -1 means the angular velocity is not provided (InputError), an all-zero covariance that
    its covariance is unknown (None, not a perfect gyro)."""
    cov = msg.angular_velocity_covariance
    if cov[0] == -1.0:
        raise InputError("IMU message provides no angular velocity (angular_velocity_covariance[0] = -1)")
    rate = float(msg.angular_velocity.z)
    if not math.isfinite(rate):
        raise InputError(f"IMU yaw rate is not finite: {rate}")
    variance = None if not any(cov) else _finite_or_none(float(cov[8]))
    return stamp_to_ns(msg.header.stamp), rate, variance


def odometry_speed(msg) -> tuple[int, float, float | None]:
    """nav_msgs/Odometry (wheel odometry) -> (stamp_ns, forward speed twist.linear.x in m/s,
    its variance twist.covariance[0] or None when zero/invalid)."""
    speed = float(msg.twist.twist.linear.x)
    if not math.isfinite(speed):
        raise InputError(f"wheel speed is not finite: {speed}")
    variance = _finite_or_none(float(msg.twist.covariance[0]))
    return stamp_to_ns(msg.header.stamp), speed, variance if variance else None


def protection_level_msg(stamp: int, frame_id: str, horizontal_m: float) -> Vector3Stamped:
    """The horizontal protection level of /cvgl/pose: vector.x in metres (y, z unused: 0)."""
    msg = Vector3Stamped()
    msg.header.stamp = to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.vector.x = float(horizontal_m)
    return msg
