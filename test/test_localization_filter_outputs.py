"""When the particle-filter node publishes what, ROS-free: a late measurement's pose at its
stamp then everything at the newest, the throttled outputs, and the thinned path."""
import pytest

from cvgl_ros.localization.filter_outputs import LateMeasurements, PathRecorder, Publication, Throttle

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

S = 1_000_000_000


def test_a_measurement_in_order_publishes_everything_at_its_stamp():
    late = LateMeasurements()
    assert late.after(10 * S) == (Publication(10 * S),)
    assert late.after(11 * S) == (Publication(11 * S),)
    assert late.after(11 * S) == (Publication(11 * S),), "the same stamp again is not late"
    assert late.newest_ns == 11 * S


def test_a_late_measurement_publishes_its_pose_then_everything_again_at_the_newest_stamp():
    late = LateMeasurements()
    late.after(12 * S)
    assert late.after(11 * S) == (Publication(11 * S, pose_only=True), Publication(12 * S))
    assert late.newest_ns == 12 * S, "a late measurement does not move the newest stamp back"
    assert late.after(13 * S) == (Publication(13 * S),)


def test_after_a_reset_the_next_measurement_is_the_newest_whatever_its_stamp():
    late = LateMeasurements()
    late.after(50 * S)
    late.reset()
    assert late.after(5 * S) == (Publication(5 * S),) and late.newest_ns == 5 * S


def test_a_throttled_output_is_due_once_per_period_of_message_time_and_again_after_a_jump_back():
    throttle = Throttle(1.0)
    due = [t for t in (0.0, 0.4, 0.99, 1.0, 1.5, 2.2, 0.5, 0.6) if throttle.due(int(t * S))]
    assert due == [0.0, 1.0, 2.2, 0.5]
    always = Throttle(0.0)
    assert all(always.due(t) for t in (5, 5, 6))


def test_the_path_keeps_a_pose_per_min_step_and_drops_the_oldest_beyond_max_poses():
    path = PathRecorder(min_step_m=1.0, max_poses=3, period_s=10.0)
    first = path.add(0, 0.0, 0.0, 0.0)
    assert (first.appended, first.dropped, first.publish) == (True, 0, True)
    close = path.add(S, 0.6, 0.6, 0.1)   # 0.85 m from the last kept pose
    assert (close.appended, close.publish) == (False, False)
    assert path.add(2 * S, 0.8, 0.8, 0.2).appended, "1.13 m from the last kept pose"
    assert path.add(3 * S, 1.8, 0.8, 0.3).appended
    fourth = path.add(4 * S, 3.0, 0.8, 0.4)
    assert (fourth.appended, fourth.dropped) == (True, 1)
    assert [p[0] for p in path.poses] == [2 * S, 3 * S, 4 * S]
    assert path.poses[-1] == (4 * S, 3.0, 0.8, 0.4)
    assert path.add(10 * S, 3.1, 0.8, 0.4).publish, "the period has passed, though no pose was kept"
    with pytest.raises(ValueError, match="max_poses"):
        PathRecorder(1.0, 0, 1.0)
