"""The TF the filter node sends: map -> odom when odom -> base_link is known at the pose's
stamp, else map -> base_link; the odometry sample at a stamp; no repeated stamps."""
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.geo.transforms import RigidTransform
from cvgl_ros.localization.tf_policy import MapTfPolicy, TfFrames, TransformHistory, frame_name

pytestmark = pytest.mark.core

S = 1_000_000_000
T0 = 1_700_000_000 * S


def test_without_odometry_the_pose_is_map_to_base_link():
    policy = MapTfPolicy(TfFrames())
    pose = RigidTransform.planar(12.0, -3.0, 0.7)
    out = policy.transform(T0, pose, None)
    assert (out.parent, out.child, out.stamp_ns) == ("map", "base_link", T0)
    assert out.transform == pose


@pytest.mark.parametrize("odom", [RigidTransform.planar(4.0, 1.0, -0.4),
                                  RigidTransform((4.0, 1.0, 0.3), (0.02, -0.03, 0.2, 0.98))])
def test_with_odometry_map_to_odom_composes_with_it_to_the_pose(odom):
    policy = MapTfPolicy(TfFrames(map="world", odom="odom_wheel", base_link="base_footprint"))
    pose = RigidTransform.planar(12.0, -3.0, 0.7)
    out = policy.transform(T0, pose, odom)
    assert (out.parent, out.child) == ("world", "odom_wheel")
    np.testing.assert_allclose((out.transform @ odom).matrix(), pose.matrix(), atol=1e-12)
    # planar: map->odom is the exact SE(2) difference of the two poses
    if odom.rotation[0] == 0.0:
        assert out.transform.yaw_rad == pytest.approx(0.7 + 0.4)
        np.testing.assert_allclose(out.transform.apply((4.0, 1.0, 0.0)), (12.0, -3.0, 0.0), atol=1e-12)


def test_a_stamp_is_sent_once_and_a_jump_back_is_sent():
    policy = MapTfPolicy(TfFrames())
    pose = RigidTransform.planar(1.0, 2.0, 0.0)
    assert policy.transform(T0, pose, None) is not None
    assert policy.transform(T0, RigidTransform.planar(1.5, 2.0, 0.0), None) is None  # TF_REPEATED_DATA
    assert policy.transform(T0 + S // 10, pose, None) is not None
    assert policy.transform(T0 - 5 * S, pose, None) is not None  # a replay restarted


def test_frames_must_be_three_names_and_lose_a_leading_slash():
    assert frame_name("/odom") == "odom"
    assert TfFrames(map="/map", odom="/odom").odom == "odom"
    with pytest.raises(InputError, match="three different"):
        TfFrames(map="map", odom="/map", base_link="base_link")
    with pytest.raises(InputError, match="three different"):
        TfFrames(odom="")


def history_with(*samples, max_gap_s=0.5):
    h = TransformHistory(max_gap_s=max_gap_s)
    for stamp, x, yaw in samples:
        h.add(stamp, RigidTransform.planar(x, 0.0, yaw))
    return h


def test_history_interpolates_between_samples_around_the_stamp():
    h = history_with((T0, 0.0, 0.0), (T0 + S // 10, 1.0, 0.2))
    mid = h.at(T0 + S // 40)  # a quarter of the way
    assert mid.translation[0] == pytest.approx(0.25)
    assert mid.yaw_rad == pytest.approx(0.05)
    assert h.at(T0 + S // 10).translation[0] == 1.0


def test_history_takes_the_nearest_sample_within_max_gap_and_none_beyond():
    h = history_with((T0, 0.0, 0.0), (T0 + S, 1.0, 0.0), max_gap_s=0.3)
    assert h.at(T0 + S + S // 5).translation[0] == 1.0  # 0.2 s after the newest
    assert h.at(T0 - S // 5).translation[0] == 0.0  # 0.2 s before the oldest
    assert h.at(T0 + S + S // 2) is None  # 0.5 s after: stale odometry
    assert h.at(T0 + S // 2) is None  # between two samples, but 0.5 s from both
    assert TransformHistory(max_gap_s=1.0).at(T0) is None


def test_history_places_late_samples_keeps_its_span_and_restarts_when_time_jumps_back():
    h = history_with((T0 + S, 1.0, 0.0), (T0, 0.0, 0.0))  # out of order
    assert h.stamps == [T0, T0 + S]
    assert h.at(T0 + S // 2).translation[0] == pytest.approx(0.5)
    h.add(T0 + S, RigidTransform.planar(2.0, 0.0, 0.0))  # same stamp: replaced
    assert h.at(T0 + S).translation[0] == 2.0
    h.add(T0 + 11 * S, RigidTransform.planar(3.0, 0.0, 0.0))
    assert h.stamps == [T0 + S, T0 + 11 * S]  # the 10 s span
    h.add(T0 - 100 * S, RigidTransform.planar(-1.0, 0.0, 0.0))  # a replay restarted
    assert h.stamps == [T0 - 100 * S]


def test_a_static_transform_holds_at_every_stamp():
    h = TransformHistory(max_gap_s=0.1)
    h.set_static(RigidTransform.planar(0.5, 0.0, math.pi))
    assert h.at(T0).translation[0] == 0.5 and h.at(0).translation[0] == 0.5
