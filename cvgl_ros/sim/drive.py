"""A simulated drive through a generated world, recorded as a rosbag2 in the project's topics.

`record_drive(world_dir, out_bag, seed, duration_s, gnss)`:

1. `World.load(world_dir)`; a route of the road graph (`world.route(seed, length)`), long
   enough that the car never reaches its end at 15 m/s;
2. `simulate_drive(route.points_en, route.stop_s, seed, duration_s)`: the ground truth
   (100 Hz internally; see `cvgl_ros.sim.trajectory`);
3. the GNSS model (`cvgl_ros.sim.gnss`) at `gnss_hz`, with `world.sky_openness` driving the
   urban-canyon errors;
4. (unless `motion_sensors=False`) the IMU at 100 Hz and the wheel-speed odometry at
   50 Hz of `cvgl_ros.sim.motion_sensors`, measuring the same truth, with their noise from
   their own random stream (so the other outputs of a seed stay the same);
5. the ground camera (`default_camera(width, height)`, KITTI-like, and `GroundRenderer` of
   `cvgl_ros.sim.ground_camera` with the drive seed as its appearance: time of day, season,
   traffic) at `camera_hz`;
6. everything written in stamp order by `BagWriter` (atomic: no bag appears unless complete).

Topics and stamps. Simulated time t (s) maps to ROS time `SIM_EPOCH_NS + t * 1e9` (a fixed
epoch, so the same seed gives the same bag). Camera frames at t = k / camera_hz:
`/camera/image_raw` (rgb8) or `/camera/image_raw/compressed` (JPEG) + `/camera/camera_info`.
GNSS epochs at t = k / gnss_hz: `/gnss/fix` (NavSatStatus FIX with the receiver's reported
sigma as diagonal covariance; NO_FIX with NaN position and unknown covariance during a
drop-out) and `/ground_truth/fix` (the true position). `/ground_truth/pose` (frame `map`,
ENU at the world datum, REP-103 yaw) at every camera and GNSS stamp. Heights: the ground is
the datum's up = 0 plane; fixes carry the WGS84 altitude of that point.
Motion sensors at t = k / 100 and k / 50: `/imu/data` (sensor_msgs/Imu, frame `imu_link`
aligned with base_link: angular_velocity.z the yaw rate, linear_acceleration = (dv/dt,
v * yaw rate, +g), no orientation: orientation_covariance[0] = -1; the covariance
diagonals are the white-noise variances at the sample rate) and `/odom/wheel`
(nav_msgs/Odometry, `odom` -> `base_link`, twist.twist.linear.x the wheel speed with its
variance in twist.covariance[0]; the pose is not measured: covariance diagonal 1e6). The
bag's metadata records the error model and its seed under `cvgl.motion_sensors` (JSON).

Sensor mounting (`SensorMounting`; `cvgl sim drive --camera-x-m ... --antenna-x-m ...`). By
default camera and antenna sit at base_link's origin (the camera at the KITTI height, level).
A camera mounted at (x, y) in base_link (REP-103: x forward, y left), z above the ground,
pitched down by theta renders from p + R(yaw)(x, y) with its rays tilted by theta; an antenna
at (x, y) makes GNSS (and `/ground_truth/fix`) measure p + R(yaw)(x, y). `/ground_truth/pose`
stays base_link's. The bag's metadata records it under `cvgl.mounting` (JSON: the nodes'
parameter names and values, `SensorMounting.node_parameters`), so that a replay can be given
the same mounting.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.sim.gnss import MODEL_NAMES, STATUS_NO_FIX, GnssModel, GnssTrack
from cvgl_ros.sim.motion_sensors import ImuTrack, MotionSensorModel, WheelOdometryTrack
from cvgl_ros.sim.trajectory import Trajectory, simulate_drive

SIM_EPOCH_NS = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z: t = 0 of every simulated drive
TRAJECTORY_HZ = 100.0
MAX_SPEED_MPS = 15.0
MAX_RATE_HZ = 100.0
JPEG_QUALITY = 90


MOUNTING_KEY = "cvgl.mounting"


@dataclass(frozen=True)
class SensorMounting:
    """Where the camera and the GNSS antenna sit in base_link (REP-103; metres, degrees)."""

    camera_x_m: float = 0.0
    camera_y_m: float = 0.0
    camera_z_m: float | None = None  # None: the camera model's default height (KITTI's)
    camera_pitch_deg: float = 0.0    # > 0 looks down
    antenna_x_m: float = 0.0
    antenna_y_m: float = 0.0

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise InputError(f"sensor mounting {name} must be a finite number, got {value!r}")
        if any(abs(v) > 20.0 for v in (self.camera_x_m, self.camera_y_m, self.antenna_x_m, self.antenna_y_m)):
            raise InputError("sensor mounting offsets beyond 20 m: not on a car")

    @property
    def at_origin(self) -> bool:
        return self == SensorMounting(camera_z_m=self.camera_z_m)

    def node_parameters(self, camera_height_m: float) -> dict:
        """The same mounting as the nodes' parameters (particle filter: the `filter.*` lever
        arms; cross-view node: height and pitch)."""
        return {"filter.camera_x_m": self.camera_x_m, "filter.camera_y_m": self.camera_y_m,
                "filter.antenna_x_m": self.antenna_x_m, "filter.antenna_y_m": self.antenna_y_m,
                "camera_pitch_deg": self.camera_pitch_deg, "camera_mount_height_m": float(camera_height_m)}


@dataclass(frozen=True)
class DriveResult:
    """What `record_drive` wrote: the truth, the GNSS track, and the message counts."""

    out_bag: Path
    trajectory: Trajectory
    gnss: GnssTrack
    counts: dict
    camera_frames: int
    image_size: tuple[int, int]
    imu: ImuTrack | None = None
    odometry: WheelOdometryTrack | None = None
    mounting_parameters: dict | None = None  # the nodes' parameters for the drive's sensor mounting

    def gnss_error_stats(self) -> dict:
        return self.gnss.error_stats()


def sim_time_to_ns(t_s) -> np.ndarray:
    """Simulated seconds -> integer ROS time nanoseconds (rounded to the nanosecond)."""
    return SIM_EPOCH_NS + np.rint(np.asarray(t_s, dtype=float) * 1e9).astype(np.int64)


def check_drive_args(duration_s: float, gnss: str, camera_hz: float, gnss_hz: float) -> None:
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"drive duration must be a positive number of seconds, got {duration_s}")
    if gnss not in MODEL_NAMES:
        raise InputError(f"unknown GNSS model {gnss!r}; expected one of {', '.join(MODEL_NAMES)}")
    for name, hz in (("camera", camera_hz), ("GNSS", gnss_hz)):
        if not (math.isfinite(hz) and 0 < hz <= MAX_RATE_HZ):
            raise InputError(f"{name} rate must be in (0, {MAX_RATE_HZ:g}] Hz, got {hz}")


def _renderer(world, width: int | None, height: int | None, appearance_seed: int, mounting: SensorMounting):
    """The ground camera (KITTI-like, `default_camera`, at the mounting's height and pitch) and
    its renderer under the drive's appearance."""
    from cvgl_ros.sim.ground_camera import GroundRenderer, default_camera

    kwargs = {}
    if width is not None:
        kwargs["width"] = int(width)
    if height is not None:
        kwargs["height"] = int(height)
    if mounting.camera_z_m is not None:
        kwargs["height_m"] = float(mounting.camera_z_m)
    camera = default_camera(**kwargs)
    if mounting.camera_pitch_deg:
        camera = dataclasses.replace(camera, pitch_deg=float(mounting.camera_pitch_deg))
    return GroundRenderer(world, camera, appearance_seed=appearance_seed), camera


def record_drive(world_dir: str | Path, out_bag: str | Path, seed: int, duration_s: float, gnss: str = "urban_canyon",
                 camera_hz: float = 10.0, gnss_hz: float = 5.0, compressed: bool = False,
                 width: int | None = None, height: int | None = None, progress: bool = True,
                 turn_rich: bool = False, motion_sensors: bool = True,
                 mounting: SensorMounting | None = None, gnss_offset=None) -> DriveResult:
    """Simulate a drive and write it as a bag (see the module docstring); `turn_rich` picks a
    route that turns at (almost) every intersection (`RoadGraph.route`); `mounting` puts the
    camera and the antenna off base_link's origin; `gnss_offset` (a `cvgl_ros.sim.gnss.GnssOffset`)
    moves the fixes of a time window (a fault on top of the profile)."""
    from tqdm import tqdm

    from cvgl_ros.datasets import bag as B
    from cvgl_ros.datasets.kitti import check_output_path
    from cvgl_ros.sim.world import World

    check_drive_args(duration_s, gnss, camera_hz, gnss_hz)
    out_bag = check_output_path(out_bag)
    world = World.load(world_dir)
    mounting = mounting or SensorMounting()
    sensed = _simulate(world, seed, float(duration_s), gnss, gnss_hz, motion_sensors, turn_rich, mounting)  # 1.-4.
    if gnss_offset is not None:
        sensed = dataclasses.replace(sensed, gnss=gnss_offset.apply(sensed.gnss))
    renderer, camera = _renderer(world, width, height, appearance_seed=seed, mounting=mounting)          # 5.
    frames = _CameraFrames(renderer, camera, sensed.truth.mounted(mounting.camera_x_m, mounting.camera_y_m),
                           duration_s, camera_hz, compressed)
    streams = _streams(world, sensed, frames)
    bar = tqdm(total=frames.count, desc="camera frames", unit="frame", disable=not progress)
    try:
        with B.BagWriter(out_bag) as bag:                                                            # 6.
            bag.set_datum(world.datum)
            bag.set_custom_data("cvgl.source", f"sim:world_seed={world.seed},style={world.style},drive_seed={seed},"
                                               f"gnss={gnss}")
            if not mounting.at_origin:
                bag.set_custom_data(MOUNTING_KEY, json.dumps(mounting.node_parameters(camera.height_m), sort_keys=True))
            if sensed.imu is not None:
                bag.set_custom_data(B.MOTION_SENSORS_KEY, json.dumps(sensed.motion_model.metadata(), sort_keys=True))
            for stamp, _, kind, i in _events(streams):
                streams[kind].write(bag, stamp, i)
                if kind == "camera":
                    bar.update(1)
            counts = dict(bag.counts)
    finally:
        bar.close()
    return DriveResult(out_bag, sensed.truth, sensed.gnss, counts, frames.count, (frames.width, frames.height),
                       sensed.imu, sensed.odometry, mounting.node_parameters(camera.height_m))


@dataclass(frozen=True)
class _Sensed:
    """Steps 1 to 4 of the module docstring: the truth and what the sensors measured of it."""

    truth: Trajectory
    gnss: GnssTrack
    motion_model: MotionSensorModel
    imu: ImuTrack | None
    odometry: WheelOdometryTrack | None


def _simulate(world, seed: int, duration_s: float, gnss: str, gnss_hz: float, motion_sensors: bool,
              turn_rich: bool, mounting: SensorMounting) -> _Sensed:
    route = world.route(seed, duration_s * MAX_SPEED_MPS * 1.2 + 100.0, turn_rich=turn_rich)
    truth = simulate_drive(route.points_en, route.stop_s, seed=seed, duration_s=duration_s,
                           rate_hz=TRAJECTORY_HZ, max_speed_mps=MAX_SPEED_MPS)
    antenna = truth.mounted(mounting.antenna_x_m, mounting.antenna_y_m)
    track = GnssModel.from_name(gnss, seed).simulate(antenna, gnss_hz, world.sky_openness)
    motion_model = MotionSensorModel(seed=seed)
    imu, odometry = motion_model.simulate(truth) if motion_sensors else (None, None)
    return _Sensed(truth, track, motion_model, imu, odometry)


class _CameraFrames:
    """Step 5: the frames at t = k / camera_hz, rendered when written (rgb8, or JPEG)."""

    def __init__(self, renderer, camera, truth: Trajectory, duration_s: float, camera_hz: float, compressed: bool):
        self.renderer, self.camera, self.compressed = renderer, camera, compressed
        self.width, self.height = int(camera.width), int(camera.height)
        self.count = int(math.floor(duration_s * camera_hz + 1e-9)) + 1
        self.t_s = np.arange(self.count) / float(camera_hz)
        self.pose = truth.sample(self.t_s)

    def write(self, bag, stamp: int, i: int) -> None:
        import cv2

        from cvgl_ros.datasets import bag as B

        rgb = self.renderer.render(self.pose.east_m[i], self.pose.north_m[i], self.pose.yaw_enu_rad[i],
                                   time_s=float(self.t_s[i]))
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise RuntimeError(f"ground renderer returned {rgb.dtype} {rgb.shape}, expected uint8 "
                               f"({self.height}, {self.width}, 3)")
        if self.compressed:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise RuntimeError("JPEG encoding of a rendered frame failed")
            bag.write(B.TOPIC_IMAGE_COMPRESSED, B.MSG_COMPRESSED, stamp, B.compressed_image_msg(buf.tobytes(), stamp))
        else:
            bag.write(B.TOPIC_IMAGE, B.MSG_IMAGE, stamp, B.image_msg(rgb, stamp))
        bag.write(B.TOPIC_CAMERA_INFO, B.MSG_CAMERA_INFO, stamp, self.camera.to_camera_info(stamp))


@dataclass(frozen=True)
class _Stream:
    """One kind of message: its stamps (ns), its rank among equal stamps, and how sample i is written."""

    stamps_ns: np.ndarray
    rank: int
    write: Callable


def _streams(world, sensed: _Sensed, frames: _CameraFrames) -> dict[str, _Stream]:
    """Every kind of message the bag holds; at equal stamps the truth comes before the sensors."""
    from cvgl_ros.datasets import bag as B

    track, imu, odometry = sensed.gnss, sensed.imu, sensed.odometry
    fix_lat, fix_lon, fix_alt = world.datum.to_wgs84(np.nan_to_num(track.east_m), np.nan_to_num(track.north_m),
                                                     np.zeros(len(track)))
    true_lat, true_lon, true_alt = world.datum.to_wgs84(track.true_east_m, track.true_north_m, np.zeros(len(track)))
    pose_t = np.union1d(frames.t_s, track.t_s)
    pose = sensed.truth.sample(pose_t)

    def write_pose(bag, stamp, i):
        bag.write(B.TOPIC_GT_POSE, B.MSG_POSE_STAMPED, stamp,
                  B.pose_stamped_msg(pose.east_m[i], pose.north_m[i], 0.0, pose.yaw_enu_rad[i], stamp))

    def write_gnss(bag, stamp, i):
        if track.status[i] == STATUS_NO_FIX:
            fix = B.navsatfix_msg(math.nan, math.nan, math.nan, stamp, sigma_m=None, status=B.NAVSAT_STATUS_NO_FIX)
        else:
            fix = B.navsatfix_msg(fix_lat[i], fix_lon[i], fix_alt[i], stamp, sigma_m=float(track.reported_sigma_m[i]),
                                  status=int(track.status[i]))
        bag.write(B.TOPIC_GNSS_FIX, B.MSG_NAVSATFIX, stamp, fix)
        bag.write(B.TOPIC_GT_FIX, B.MSG_NAVSATFIX, stamp,
                  B.navsatfix_msg(true_lat[i], true_lon[i], true_alt[i], stamp, sigma_m=None, frame_id="base_link"))

    streams = {"pose": _Stream(sim_time_to_ns(pose_t), 0, write_pose),
               "gnss": _Stream(sim_time_to_ns(track.t_s), 1, write_gnss),
               "camera": _Stream(sim_time_to_ns(frames.t_s), 2, frames.write)}
    if imu is not None:
        streams["imu"] = _Stream(sim_time_to_ns(imu.t_s), 3, lambda bag, stamp, i: bag.write(
            B.TOPIC_IMU, B.MSG_IMU, stamp, B.imu_msg(stamp, imu.gyro_radps[i], imu.accel_mps2[i],
                                                     angular_velocity_variance=imu.gyro_variance,
                                                     linear_acceleration_variance=imu.accel_variance)))
        streams["odom"] = _Stream(sim_time_to_ns(odometry.t_s), 4, lambda bag, stamp, i: bag.write(
            B.TOPIC_WHEEL_ODOM, B.MSG_ODOMETRY, stamp,
            B.wheel_odometry_msg(stamp, float(odometry.speed_mps[i]), float(odometry.variance_mps2[i]))))
    return streams


def _events(streams: dict[str, _Stream]) -> list[tuple[int, int, str, int]]:
    """(stamp, rank, kind, index) of every message, in the order they are written."""
    return sorted((int(t), stream.rank, kind, i) for kind, stream in streams.items()
                  for i, t in enumerate(stream.stamps_ns))
