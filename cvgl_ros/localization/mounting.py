"""Sensor mounting from /tf_static, ROS-free: where the camera and the GNSS antenna sit in base_link.

The nodes take the mounting from their parameters, or, with `mounting_source`
tf_static_then_parameters (the default), from /tf_static when it has the frames (issue 14):

- Frames. The camera's frame is its messages' frame_id (or the `camera_frame` parameter), the
  antenna's the NavSatFix's (or `gnss_antenna_frame`). `StaticTransforms` holds the static
  tree as tf2 does (T_parent_child, one parent per child, the latest wins) and looks up
  T_base_link_frame through any chain of static frames: base_link -> sensor_rack -> camera,
  or frames that hang from a common parent (base_footprint -> base_link, base_footprint -> camera).
- Camera. x, y, z: its origin in base_link. roll, pitch, yaw: REP-103 angles (tf2's getRPY;
  pitch > 0 looks down) of its rotation in the body convention (x forward): an optical frame
  (x right, y down, z forward) is told apart by its rotation, not its name (the axis nearer
  to vertical is y, not z: `geo.frames.is_optical_frame`) and converted first.
  Height above the ground: the camera's z in `base_footprint` (REP-120: base_link's
  projection on the ground) when /tf_static links the two, else its z in base_link, which is
  then taken to be on the ground (a base_link at the rear axle, ~0.3 m up, gives a camera
  that much too low: publish base_footprint -> base_link). The yaw is reported, not
  corrected: the network takes the camera's heading for the vehicle's (a note above 1 deg).
- Antenna. x, y: its origin in base_link (the lever arm).

A part (camera, antenna) comes from /tf_static whole, and only within the parameters' ranges;
otherwise that part's parameters stay and the reason says why. Where /tf_static gives a part,
it wins over the parameters; a parameter set away from its default that disagrees with it is
named in `MountingChoice.overridden`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from cvgl_ros.config import specs
from cvgl_ros.errors import InputError
from cvgl_ros.filter.particle_filter import ParticleFilterConfig
from cvgl_ros.geo.frames import camera_body_rotation, roll_pitch_yaw
from cvgl_ros.geo.transforms import RigidTransform, rotation_matrix
from cvgl_ros.localization.tf_policy import frame_name

MOUNTING_SOURCES = ("tf_static_then_parameters", "parameters")
CAMERA_FIELDS = ("camera_x_m", "camera_y_m", "camera_height_m", "camera_roll_deg", "camera_pitch_deg")
ANTENNA_FIELDS = ("antenna_x_m", "antenna_y_m")
# the lever-arm parameters' range (filter.camera_x_m, ..., antenna_y_m), read from their declaration
MAX_OFFSET_M = min(min(-s.low, s.high) for s in specs(ParticleFilterConfig) if s.name in CAMERA_FIELDS + ANTENNA_FIELDS)
# the cross-view node's camera_roll_deg / camera_pitch_deg and camera_height_m ranges: declared in
# nodes/cross_view_parameters.py, which the core does not import; test_localization_mounting
# holds the two in step
MAX_TILT_DEG = 45.0
HEIGHT_RANGE_M = (0.1, 20.0)
YAW_NOTE_DEG = 1.0            # a camera yawed more than this in base_link gets a note
SAME = 1e-6                   # a parameter this close to /tf_static's value agrees with it


class StaticTransforms:
    """The /tf_static tree: each child frame's parent and T_parent_child (module docstring)."""

    def __init__(self):
        self.parents: dict[str, tuple[str, RigidTransform]] = {}
        self.refused: dict[str, str] = {}  # child -> why its transform was refused

    def add(self, parent: str, child: str, translation, rotation) -> str | None:
        """Hold T_parent_child (translation x, y, z; quaternion x, y, z, w); why it was refused,
        or None. A transform that is no rigid transform also drops the one held for that child."""
        parent, child = frame_name(parent), frame_name(child)
        if not parent or not child or parent == child:
            return f"/tf_static {parent or '?'} -> {child or '?'} refused: a transform needs two different frame names"
        try:
            transform = RigidTransform(translation, rotation)
        except InputError as exc:
            self.refused[child] = f"/tf_static {parent} -> {child} refused: {exc}"
            self.parents.pop(child, None)
            return self.refused[child]
        self.parents[child] = (parent, transform)
        self.refused.pop(child, None)
        return None

    def _from_root(self, frame: str) -> tuple[str, RigidTransform]:
        """(the root of `frame`'s chain, T_root_frame)."""
        transform, seen = RigidTransform(), [frame]
        while frame in self.parents:
            frame, t_parent_frame = self.parents[frame]
            transform = t_parent_frame @ transform
            if frame in seen:
                raise InputError(f"/tf_static has a loop: {' -> '.join(reversed(seen + [frame]))}")
            seen.append(frame)
        return frame, transform

    def lookup(self, target: str, source: str) -> RigidTransform:
        """T_target_source (source's frame in target's), chained; InputError says why not."""
        target, source = frame_name(target), frame_name(source)
        root_t, t_root_target = self._from_root(target)
        root_s, t_root_source = self._from_root(source)
        if root_t != root_s:
            why = self.refused.get(root_s) or self.refused.get(root_t)
            raise InputError(why or f"no transform from {target} to {source} on /tf_static")
        return t_root_target.inverse() @ t_root_source


@dataclass(frozen=True)
class CameraExtrinsics:
    """base_link -> camera: origin (m), height above the ground (m), REP-103 angles (deg) of its
    body-convention rotation, and whether its frame was an optical one."""

    x_m: float
    y_m: float
    z_m: float
    height_m: float
    roll_deg: float
    pitch_deg: float
    yaw_deg: float
    optical: bool

    def values(self) -> dict[str, float]:
        """As the mounting fields (CAMERA_FIELDS)."""
        return {"camera_x_m": self.x_m, "camera_y_m": self.y_m, "camera_height_m": self.height_m,
                "camera_roll_deg": self.roll_deg, "camera_pitch_deg": self.pitch_deg}

    def describe(self) -> str:
        return (f"x {self.x_m:.3f} y {self.y_m:.3f} z {self.z_m:.3f} m, height {self.height_m:.3f} m, roll "
                f"{self.roll_deg:.2f} pitch {self.pitch_deg:.2f} yaw {self.yaw_deg:.2f} deg, "
                f"{'optical' if self.optical else 'body'} frame")


def camera_extrinsics(t_base_camera: RigidTransform, height_m: float) -> CameraExtrinsics:
    """The camera's mounting of T_base_link_camera and its height above the ground; InputError
    outside the parameters' ranges."""
    r_body, optical = camera_body_rotation(rotation_matrix(t_base_camera.rotation))
    roll, pitch, yaw = (math.degrees(a) for a in roll_pitch_yaw(r_body))
    x, y, z = t_base_camera.translation
    if max(abs(x), abs(y)) > MAX_OFFSET_M:
        raise InputError(f"camera at x {x:.2f} y {y:.2f} m: beyond {MAX_OFFSET_M:g} m of base_link")
    if max(abs(roll), abs(pitch)) > MAX_TILT_DEG:
        raise InputError(f"camera roll {roll:.1f} pitch {pitch:.1f} deg: beyond {MAX_TILT_DEG:g} deg")
    if not HEIGHT_RANGE_M[0] <= height_m <= HEIGHT_RANGE_M[1]:
        raise InputError(f"camera height {height_m:.3f} m above the ground is outside {list(HEIGHT_RANGE_M)} m "
                         f"(base_link is taken to be on the ground unless base_footprint -> base_link is on /tf_static)")
    return CameraExtrinsics(x, y, z, float(height_m), roll, pitch, yaw, optical)


@dataclass(frozen=True)
class MountingChoice:
    """What a node uses: `values` (each mounting field it takes, by name), `source` (where each
    part came from, for /diagnostics), `overridden` ("name parameter -> tf_static" for each
    parameter set away from its default that /tf_static overrode) and `notes` (problems)."""

    values: dict[str, float]
    source: str
    overridden: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class MountingFromTf:
    """The mounting a node uses, of its parameters and /tf_static (module docstring). `source`
    is one of MOUNTING_SOURCES; `add` takes each /tf_static transform, `choose` decides."""

    def __init__(self, source: str = "tf_static_then_parameters", base_link: str = "base_link",
                 ground_frame: str = "base_footprint"):
        if source not in MOUNTING_SOURCES:
            raise InputError(f"mounting source {source!r} is not one of {', '.join(MOUNTING_SOURCES)}")
        self.source = source
        self.base_link, self.ground_frame = frame_name(base_link), frame_name(ground_frame)
        self.transforms = StaticTransforms()

    def add(self, parent: str, child: str, translation, rotation) -> str | None:
        """A /tf_static transform; why it was refused, or None."""
        return self.transforms.add(parent, child, translation, rotation)

    def camera(self, frame: str) -> CameraExtrinsics:
        """base_link -> `frame` as a camera mounting; InputError says why not."""
        t_base_camera = self.transforms.lookup(self.base_link, frame)
        try:
            height = self.transforms.lookup(self.ground_frame, frame).translation[2]
        except InputError:
            height = t_base_camera.translation[2]  # base_link on the ground (module docstring)
        return camera_extrinsics(t_base_camera, height)

    def antenna(self, frame: str) -> dict[str, float]:
        """base_link -> `frame` as the antenna's lever arm (ANTENNA_FIELDS); InputError says why not."""
        x, y, _ = self.transforms.lookup(self.base_link, frame).translation
        if max(abs(x), abs(y)) > MAX_OFFSET_M:
            raise InputError(f"antenna at x {x:.2f} y {y:.2f} m: beyond {MAX_OFFSET_M:g} m of base_link")
        return {"antenna_x_m": x, "antenna_y_m": y}

    def _found(self, part: str, frame: str) -> tuple[dict[str, float], str, list[str]]:
        """(values, what they are, notes) of a part found on /tf_static; InputError: not found."""
        if part == "antenna":
            values = self.antenna(frame)
            return values, f"x {values['antenna_x_m']:.3f} y {values['antenna_y_m']:.3f} m", []
        camera = self.camera(frame)
        notes = [f"camera yaw {camera.yaw_deg:.1f} deg in {self.base_link} is not corrected for: the heading is "
                 f"the camera's"] if abs(camera.yaw_deg) > YAW_NOTE_DEG else []
        return camera.values(), camera.describe(), notes

    def choose(self, parameters: dict[str, float], defaults: dict[str, float], camera_frame: str,
               antenna_frame: str) -> MountingChoice:
        """The mounting of the fields in `parameters` (their values now; `defaults`: the
        parameters' defaults): each part from /tf_static when it has it, else the parameters."""
        values, sources, overridden, notes = dict(parameters), [], [], []
        for part, fields, frame in (("camera", CAMERA_FIELDS, camera_frame), ("antenna", ANTENNA_FIELDS, antenna_frame)):
            used = [f for f in fields if f in parameters]
            if not used:
                continue
            if self.source == "parameters":
                sources.append(f"{part}: parameters (mounting_source is parameters)")
                continue
            try:
                found, text, part_notes = self._found(part, frame)
            except InputError as exc:
                sources.append(f"{part}: parameters ({exc})")
                continue
            sources.append(f"{part}: tf_static {self.base_link} -> {frame_name(frame)} ({text})")
            notes += part_notes
            for f in used:
                if abs(found[f] - parameters[f]) > SAME and parameters[f] != defaults.get(f):
                    overridden.append(f"{f} {parameters[f]:g} -> {found[f]:.6g}")
                values[f] = found[f]
        return MountingChoice(values, "; ".join(sources), tuple(overridden), tuple(notes))
