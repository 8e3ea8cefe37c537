"""Sensor mounting from /tf_static (localization/mounting.py): a direct transform, a chain, an
optical frame, the height above the ground, a missing frame (the parameters stay, with the
reason), refused transforms, ranges, and which set parameters /tf_static overrides."""
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.geo.frames import OPTICAL_IN_BODY, camera_body_rotation, is_optical_frame, roll_pitch_yaw
from cvgl_ros.geo.transforms import RigidTransform, rotation_matrix
from cvgl_ros.localization.mounting import MountingFromTf, StaticTransforms

pytestmark = pytest.mark.core

FILTER = {"camera_x_m": 0.0, "camera_y_m": 0.0, "antenna_x_m": 0.0, "antenna_y_m": 0.0}  # the filter node's fields
CROSS_VIEW = {"camera_height_m": 0.0, "camera_roll_deg": 0.0, "camera_pitch_deg": 0.0}  # the cross-view node's


def quaternion(roll_deg=0.0, pitch_deg=0.0, yaw_deg=0.0):
    """(x, y, z, w) of R = Rz(yaw) Ry(pitch) Rx(roll), as tf2's setRPY."""
    r, p, y = (math.radians(a) / 2 for a in (roll_deg, pitch_deg, yaw_deg))
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def optical_quaternion(roll_deg=0.0, pitch_deg=0.0, yaw_deg=0.0):
    """The optical frame's rotation of a camera body with these angles (R_body OPTICAL_IN_BODY)."""
    body = RigidTransform((0, 0, 0), quaternion(roll_deg, pitch_deg, yaw_deg))
    m = rotation_matrix(body.rotation) @ OPTICAL_IN_BODY
    w = math.sqrt(max(0.0, 1 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    return ((m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w), (m[1, 0] - m[0, 1]) / (4 * w), w)


def test_rpy_round_trip_and_the_optical_convention_is_told_by_the_rotation():
    for angles in [(0.0, 3.0, 0.0), (2.0, -4.0, 10.0), (-5.0, 20.0, -30.0)]:
        r = rotation_matrix(RigidTransform((0, 0, 0), quaternion(*angles)).rotation)
        np.testing.assert_allclose(np.degrees(roll_pitch_yaw(r)), angles, atol=1e-9)
        assert not is_optical_frame(r)
        optical = rotation_matrix(RigidTransform((0, 0, 0), optical_quaternion(*angles)).rotation)
        assert is_optical_frame(optical)
        body, was_optical = camera_body_rotation(optical)
        np.testing.assert_allclose(body, r, atol=1e-12)
        assert was_optical
    # pitch > 0 looks down (REP-103): the forward axis gets a negative z
    assert rotation_matrix(quaternion(pitch_deg=3.0))[2, 0] < 0
    with pytest.raises(InputError, match="vertical"):  # looking straight down: neither convention
        is_optical_frame(rotation_matrix(RigidTransform((0, 0, 0), quaternion(pitch_deg=90.0)).rotation))


def test_a_direct_transform_gives_the_filter_its_lever_arms():
    m = MountingFromTf()
    assert m.add("base_link", "camera", (1.5, 0.2, 1.65), quaternion(pitch_deg=3.0)) is None
    assert m.add("/base_link", "gnss", (-1.0, 0.0, 1.9), (0, 0, 0, 1)) is None  # tf2 ignores a leading '/'
    choice = m.choose(FILTER, FILTER, "camera", "gnss")
    assert choice.values == pytest.approx({"camera_x_m": 1.5, "camera_y_m": 0.2, "antenna_x_m": -1.0,
                                           "antenna_y_m": 0.0}, abs=1e-12)
    assert choice.source.startswith("camera: tf_static base_link -> camera (x 1.500 y 0.200 z 1.650 m")
    assert "antenna: tf_static base_link -> gnss (x -1.000 y 0.000 m)" in choice.source
    assert choice.overridden == () and choice.notes == ()
    cv = m.choose(CROSS_VIEW, CROSS_VIEW, "camera", "gnss")  # the cross-view node: no antenna
    assert cv.values == pytest.approx({"camera_height_m": 1.65, "camera_roll_deg": 0.0, "camera_pitch_deg": 3.0})
    assert "antenna" not in cv.source


def test_a_chain_through_a_sensor_rack_and_the_height_from_base_footprint():
    m = MountingFromTf()
    m.add("base_footprint", "base_link", (0.0, 0.0, 0.3), (0, 0, 0, 1))
    m.add("base_link", "sensor_rack", (1.0, 0.0, 1.2), quaternion(yaw_deg=90.0))
    m.add("sensor_rack", "camera", (0.0, -0.5, 0.2), quaternion(yaw_deg=-90.0, pitch_deg=2.0))
    camera = m.camera("camera")
    # the rack turned left 90 deg: its -y is base_link's +x
    assert (camera.x_m, camera.y_m, camera.z_m) == pytest.approx((1.5, 0.0, 1.4), abs=1e-12)
    assert camera.height_m == pytest.approx(1.7)  # z in base_footprint: base_link is 0.3 m up
    assert (camera.roll_deg, camera.pitch_deg, camera.yaw_deg) == pytest.approx((0.0, 2.0, 0.0), abs=1e-9)
    # a camera hanging from base_footprint, beside base_link, resolves through the common parent
    m.add("base_footprint", "gnss", (-1.0, 0.5, 2.0), (0, 0, 0, 1))
    assert m.antenna("gnss") == pytest.approx({"antenna_x_m": -1.0, "antenna_y_m": 0.5})


def test_an_optical_frame_with_3_degrees_pitch():
    m = MountingFromTf()
    m.add("base_link", "camera_optical_frame", (1.5, 0.0, 1.65), optical_quaternion(pitch_deg=3.0))
    camera = m.camera("camera_optical_frame")
    assert camera.optical
    assert (camera.roll_deg, camera.pitch_deg, camera.yaw_deg) == pytest.approx((0.0, 3.0, 0.0), abs=1e-9)
    # the name is not what tells: a body-convention frame called *_optical_frame stays a body frame
    m.add("base_link", "misnamed_optical_frame", (1.5, 0.0, 1.65), quaternion(pitch_deg=3.0))
    misnamed = m.camera("misnamed_optical_frame")
    assert not misnamed.optical and misnamed.pitch_deg == pytest.approx(3.0)
    # and an optical frame under a body frame (camera_link -> camera_optical_frame, as drivers publish)
    m.add("base_link", "camera_link", (1.5, 0.0, 1.65), quaternion(pitch_deg=3.0))
    m.add("camera_link", "camera_link_optical", (0, 0, 0), optical_quaternion())
    chained = m.camera("camera_link_optical")
    assert chained.optical and chained.pitch_deg == pytest.approx(3.0) and chained.x_m == pytest.approx(1.5)


def test_a_missing_frame_leaves_the_parameters_and_says_why():
    m = MountingFromTf()
    m.add("base_link", "camera", (1.5, 0.0, 1.65), (0, 0, 0, 1))
    params = dict(FILTER, antenna_x_m=-0.8)
    choice = m.choose(params, FILTER, "camera", "gnss")
    assert choice.values["antenna_x_m"] == -0.8 and choice.values["camera_x_m"] == pytest.approx(1.5)
    assert "antenna: parameters (no transform from base_link to gnss on /tf_static)" in choice.source
    nothing = MountingFromTf().choose(FILTER, FILTER, "camera", "gnss")
    assert nothing.values == FILTER
    assert nothing.source == ("camera: parameters (no transform from base_link to camera on /tf_static); "
                              "antenna: parameters (no transform from base_link to gnss on /tf_static)")


def test_mounting_source_parameters_never_takes_tf_static():
    m = MountingFromTf("parameters")
    m.add("base_link", "camera", (1.5, 0.0, 1.65), (0, 0, 0, 1))
    choice = m.choose(FILTER, FILTER, "camera", "gnss")
    assert choice.values == FILTER and "camera: parameters (mounting_source is parameters)" in choice.source
    with pytest.raises(InputError, match="not one of"):
        MountingFromTf("tf")


@pytest.mark.parametrize("rotation", [(0.0, 0.0, 0.0, 0.0), (math.nan, 0.0, 0.0, 1.0), (0.0, 0.0, math.inf, 1.0)])
def test_a_degenerate_or_non_finite_quaternion_is_refused_with_the_reason(rotation):
    m = MountingFromTf()
    m.add("base_link", "rack", (1.0, 0.0, 1.0), (0, 0, 0, 1))
    m.add("rack", "camera", (0.5, 0.0, 0.6), (0, 0, 0, 1))
    reason = m.add("base_link", "rack", (1.0, 0.0, 1.0), rotation)  # the rack's transform replaced by a bad one
    assert reason.startswith("/tf_static base_link -> rack refused:") and "not a rotation" in reason
    choice = m.choose(FILTER, FILTER, "camera", "gnss")
    assert choice.values == FILTER and f"camera: parameters ({reason})" in choice.source
    assert "finite" in m.add("base_link", "gnss", (math.nan, 0, 0), (0, 0, 0, 1))
    assert "two different" in m.add("camera", "camera", (0, 0, 0), (0, 0, 0, 1))
    m.add("base_link", "rack", (1.0, 0.0, 1.0), (0, 0, 0, 1))  # a good one again: the chain resolves
    assert m.camera("camera").x_m == pytest.approx(1.5)


def test_out_of_range_mountings_and_loops_are_refused():
    m = MountingFromTf()
    m.add("base_link", "tilted", (1.0, 0.0, 1.6), quaternion(pitch_deg=50.0))
    m.add("base_link", "low", (1.0, 0.0, 0.05), (0, 0, 0, 1))
    m.add("base_link", "far", (80.0, 0.0, 1.6), (0, 0, 0, 1))
    for frame, why in (("tilted", "beyond 45 deg"), ("low", "base_footprint -> base_link"), ("far", "beyond 50 m")):
        with pytest.raises(InputError, match=why):
            m.camera(frame)
    with pytest.raises(InputError, match="beyond 50 m"):
        m.antenna("far")
    t = StaticTransforms()
    t.add("a", "b", (1, 0, 0), (0, 0, 0, 1))
    t.add("b", "a", (1, 0, 0), (0, 0, 0, 1))
    with pytest.raises(InputError, match="loop"):
        t.lookup("base_link", "a")


def test_tf_static_wins_and_names_the_set_parameters_it_overrides():
    m = MountingFromTf()
    m.add("base_link", "camera", (1.5, 0.0, 1.65), quaternion(pitch_deg=3.0, yaw_deg=4.0))
    set_params = {"camera_height_m": 1.4, "camera_roll_deg": 0.0, "camera_pitch_deg": 3.0}
    choice = m.choose(set_params, CROSS_VIEW, "camera", "gnss")
    assert choice.values["camera_height_m"] == pytest.approx(1.65)
    # height set to 1.4 disagrees; the roll is at its default; the pitch agrees: only the height is named
    assert choice.overridden == ("camera_height_m 1.4 -> 1.65",)
    assert choice.notes and "yaw 4.0 deg" in choice.notes[0]

