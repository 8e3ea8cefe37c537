"""Rigid transforms (SE(3)) as tf2 holds them, ROS-free.

`RigidTransform` T_parent_child is what a `geometry_msgs/TransformStamped` from `frame_id`
(parent) to `child_frame_id` carries: the child frame's origin and orientation in the
parent frame, so that a point maps as

    p_parent = R p_child + t,   R from the unit quaternion q = (x, y, z, w) (Hamilton, as
                                geometry_msgs/Quaternion), t the translation.

Composition follows the frames: (T_a_b @ T_b_c) = T_a_c, i.e. R = R_ab R_bc and
t = R_ab t_bc + t_ab; the inverse is T_b_a = (R^T, -R^T t). `interpolate` blends two
transforms of one frame pair as tf2 does between two stamps: translation linearly, rotation
by spherical linear interpolation (slerp) along the shorter arc.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import quaternion_to_yaw


def _unit_quaternion(q) -> tuple[float, float, float, float]:
    q = np.asarray(q, dtype=np.float64).reshape(4)
    norm = float(np.linalg.norm(q))
    if not np.all(np.isfinite(q)) or norm < 1e-9:
        raise InputError(f"rotation quaternion (x, y, z, w) = {tuple(q.tolist())} is not a rotation")
    q = q / norm
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def _quaternion_product(a, b) -> tuple[float, float, float, float]:
    """Hamilton product a * b of (x, y, z, w) quaternions: rotation b, then a."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz)


def rotation_matrix(q) -> np.ndarray:
    """3x3 rotation matrix of a unit (x, y, z, w) quaternion."""
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@dataclass(frozen=True)
class RigidTransform:
    """T_parent_child (module docstring): `translation` (x, y, z) m and `rotation` (x, y, z, w),
    normalized on construction (InputError if it is no rotation or anything is not finite)."""

    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)

    def __post_init__(self):
        t = tuple(float(v) for v in self.translation)
        if len(t) != 3 or not all(math.isfinite(v) for v in t):
            raise InputError(f"translation {self.translation} must be 3 finite numbers")
        object.__setattr__(self, "translation", t)
        object.__setattr__(self, "rotation", _unit_quaternion(self.rotation))

    @classmethod
    def planar(cls, x_m: float, y_m: float, yaw_rad: float, z_m: float = 0.0) -> "RigidTransform":
        """A pose in the plane: position (x, y[, z]) and a rotation yaw about +z."""
        half = 0.5 * float(yaw_rad)
        return cls((x_m, y_m, z_m), (0.0, 0.0, math.sin(half), math.cos(half)))

    def __matmul__(self, other: "RigidTransform") -> "RigidTransform":
        """T_a_b @ T_b_c = T_a_c."""
        moved = rotation_matrix(self.rotation) @ np.asarray(other.translation) + np.asarray(self.translation)
        return RigidTransform(tuple(moved), _quaternion_product(self.rotation, other.rotation))

    def inverse(self) -> "RigidTransform":
        """T_b_a of T_a_b."""
        x, y, z, w = self.rotation
        conjugate = (-x, -y, -z, w)
        return RigidTransform(tuple(-(rotation_matrix(conjugate) @ np.asarray(self.translation))), conjugate)

    def apply(self, point) -> np.ndarray:
        """p_parent of a point p_child (3,)."""
        return rotation_matrix(self.rotation) @ np.asarray(point, dtype=np.float64) + np.asarray(self.translation)

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix [[R, t], [0, 1]]."""
        m = np.eye(4)
        m[:3, :3] = rotation_matrix(self.rotation)
        m[:3, 3] = self.translation
        return m

    @property
    def yaw_rad(self) -> float:
        """Rotation about +z (of the x axis projected on the xy plane), in [-pi, pi)."""
        return float(quaternion_to_yaw(*self.rotation))


def interpolate(a: RigidTransform, b: RigidTransform, fraction: float) -> RigidTransform:
    """The transform `fraction` of the way from a (0) to b (1): lerp and slerp (module docstring)."""
    f = float(fraction)
    ta, tb = np.asarray(a.translation), np.asarray(b.translation)
    qa, qb = np.asarray(a.rotation), np.asarray(b.rotation)
    dot = float(qa @ qb)
    if dot < 0.0:  # q and -q are the same rotation: take the shorter arc
        qb, dot = -qb, -dot
    if dot > 1.0 - 1e-12:
        q = qa + f * (qb - qa)
    else:
        theta = math.acos(min(dot, 1.0))
        q = (math.sin((1.0 - f) * theta) * qa + math.sin(f * theta) * qb) / math.sin(theta)
    return RigidTransform(tuple(ta + f * (tb - ta)), tuple(q))
