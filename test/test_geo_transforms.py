"""Rigid transforms: composition, inverse and interpolation, against exact planar cases and
scipy's rotations."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from cvgl_ros.errors import InputError
from cvgl_ros.geo.transforms import RigidTransform, interpolate

pytestmark = pytest.mark.core


def random_transform(rng) -> RigidTransform:
    return RigidTransform(tuple(rng.uniform(-20, 20, 3)), tuple(Rotation.random(random_state=rng).as_quat()))


def test_planar_composition_and_inverse_are_exact():
    a = RigidTransform.planar(1.0, 2.0, math.pi / 2)  # at (1, 2), facing +y
    b = RigidTransform.planar(3.0, 0.0, 0.0)  # 3 m ahead
    c = a @ b
    np.testing.assert_allclose(c.translation, (1.0, 5.0, 0.0), atol=1e-12)
    assert c.yaw_rad == pytest.approx(math.pi / 2)
    back = a.inverse()
    np.testing.assert_allclose(back.translation, (-2.0, 1.0, 0.0), atol=1e-12)
    assert back.yaw_rad == pytest.approx(-math.pi / 2)
    np.testing.assert_allclose((a @ back).matrix(), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(a.apply((3.0, 0.0, 0.0)), (1.0, 5.0, 0.0), atol=1e-12)


def test_composition_inverse_and_apply_match_homogeneous_matrices():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = random_transform(rng), random_transform(rng)
        np.testing.assert_allclose((a @ b).matrix(), a.matrix() @ b.matrix(), atol=1e-10)
        np.testing.assert_allclose(a.inverse().matrix(), np.linalg.inv(a.matrix()), atol=1e-10)
        np.testing.assert_allclose(a.matrix()[:3, :3], Rotation.from_quat(a.rotation).as_matrix(), atol=1e-12)
        p = rng.uniform(-5, 5, 3)
        np.testing.assert_allclose(a.apply(p), (a.matrix() @ np.r_[p, 1.0])[:3], atol=1e-10)


def test_interpolation_is_lerp_and_slerp_along_the_shorter_arc():
    rng = np.random.default_rng(4)
    a, b = random_transform(rng), random_transform(rng)
    slerp = Slerp([0.0, 1.0], Rotation.from_quat([a.rotation, b.rotation]))
    for f in (0.0, 0.25, 0.5, 0.9, 1.0):
        mid = interpolate(a, b, f)
        np.testing.assert_allclose(mid.translation, (1 - f) * np.array(a.translation) + f * np.array(b.translation),
                                   atol=1e-12)
        np.testing.assert_allclose(mid.matrix()[:3, :3], slerp([f]).as_matrix()[0], atol=1e-9)
    # yaw 170 deg to -170 deg: the midpoint is 180 deg, not 0
    mid = interpolate(RigidTransform.planar(0, 0, math.radians(170)), RigidTransform.planar(0, 0, math.radians(-170)),
                      0.5)
    assert abs(abs(mid.yaw_rad) - math.pi) < 1e-9
    same = RigidTransform.planar(1, 1, 0.3)
    assert interpolate(same, same, 0.4).yaw_rad == pytest.approx(0.3)


def test_quaternions_are_normalized_and_bad_values_refused():
    t = RigidTransform((0, 0, 0), (0.0, 0.0, 2.0, 0.0))
    assert t.rotation == (0.0, 0.0, 1.0, 0.0)
    for bad in ((0, 0, 0, 0), (math.nan, 0, 0, 1)):
        with pytest.raises(InputError, match="not a rotation"):
            RigidTransform((0, 0, 0), bad)
    with pytest.raises(InputError, match="translation"):
        RigidTransform((0, math.inf, 0))
