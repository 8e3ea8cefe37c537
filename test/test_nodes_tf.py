"""The filter node's /tf over real DDS, as robot_localization publishes it: map -> base_link
(the fused pose), and map -> odom when odometry puts odom -> base_link on /tf, composing
with it to the pose; back to map -> base_link when odometry goes stale. tf2_msgs is built
into .venv by `make setup` (the PyPI wheels have none)."""
import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped

from cvgl_ros.datasets.bag import TYPESTORE
from cvgl_ros.geo.transforms import RigidTransform
from cvgl_ros.nodes.conversions import pose_msg_to_xy_yaw, to_stamp
from cvgl_ros.nodes.tf import TF_QOS, transform_from_msg
from cvgl_ros.stamps import stamp_to_ns
from test_nodes_filter_node import T0, Harness

TFMessage = pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built: run `make setup`").TFMessage

STEP_NS = 200_000_000  # Harness.fix(i) is at T0 + i * 0.2 s


class TfHarness(Harness):
    """The filter node and a probe that also records /tf and publishes odom -> base_link."""

    def __init__(self, **params):
        super().__init__(**params)
        self.tf = []
        self.probe.create_subscription(TFMessage, "/tf", lambda m: self.tf.extend(m.transforms), TF_QOS)
        self.pub_tf = self.probe.create_publisher(TFMessage, "/tf", TF_QOS)
        listeners = 1 + (self.node.tf is not None)  # the probe, and the node when it publishes TF
        assert self.spin_until(lambda: self.pub_tf.get_subscription_count() >= listeners)

    def sent(self, child: str) -> dict:
        """{stamp_ns: transform} of what the node sent from map to `child`."""
        out = {}
        for t in self.tf:
            if (t.header.frame_id, t.child_frame_id) == ("map", child):
                assert stamp_to_ns(t.header.stamp) not in out, "a transform sent twice at one stamp"
                out[stamp_to_ns(t.header.stamp)] = transform_from_msg(t.transform)
        return out

    def poses(self) -> dict:
        """{stamp_ns: map -> base_link} of /cvgl/pose (the last at each stamp)."""
        return {stamp_to_ns(m.header.stamp): RigidTransform.planar(*pose_msg_to_xy_yaw(m)[:3])
                for m in self.got["/cvgl/pose"]}

    def odom(self, t_ns: int, transform: RigidTransform) -> None:
        tf = TransformStamped()
        tf.header.stamp = to_stamp(t_ns)
        tf.header.frame_id, tf.child_frame_id = "odom", "base_link"
        (tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z) = transform.translation
        (tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z,
         tf.transform.rotation.w) = transform.rotation
        self.pub_tf.publish(TFMessage(transforms=[tf]))
        def received():  # this sample, not a neighbour's within odom_tf_max_gap_s
            held = self.node.tf.odom_to_base(t_ns)
            return held is not None and np.allclose(held.matrix(), transform.matrix(), atol=1e-12)

        assert self.spin_until(received), "odom -> base_link not received"


@pytest.fixture
def tf_harness():
    h = TfHarness()
    yield h
    h.close()


def assert_same(a: RigidTransform, b: RigidTransform):
    np.testing.assert_allclose(a.matrix(), b.matrix(), atol=1e-9)


def test_without_odometry_map_to_base_link_is_the_published_pose(tf_harness):
    h = tf_harness
    h.drive(8, speed=5.0)
    assert h.spin_until(lambda: len(h.sent("base_link")) >= 8)
    sent, poses = h.sent("base_link"), h.poses()
    assert set(sent) <= set(poses)
    for stamp, transform in sent.items():
        assert_same(transform, poses[stamp])
    assert not h.sent("odom")
    assert h.diag()["tf"] == "map -> base_link"
    # the type is upstream's: a real ROS 2 install (type hashes in discovery) sees the same one
    info = h.probe.get_publishers_info_by_topic("/tf")
    assert {str(i.topic_type_hash) for i in info} == {TYPESTORE.hash_rihs01("tf2_msgs/msg/TFMessage")}


def test_with_odometry_map_to_odom_composes_with_it_to_the_pose_and_stale_odometry_falls_back(tf_harness):
    h = tf_harness
    h.drive(3, speed=5.0)  # the filter starts on GNSS alone: map -> base_link

    def odom_at(t_ns):  # wheel odometry: its own frame, drifting in scale and heading
        s = (t_ns - T0) * 1e-9
        return RigidTransform.planar(2.0 + 0.9 * 5.0 * s, -1.0 + 0.05 * s, 0.3 + 0.01 * s)

    for i in range(3, 13):  # odometry at each fix's stamp and halfway to the next one
        t = T0 + i * STEP_NS
        h.odom(t, odom_at(t))
        h.odom(t + STEP_NS // 2, odom_at(t + STEP_NS // 2))
        before = h.fix(i, east=5.0 * 0.2 * i)
        assert h.spin_until(lambda: len(h.got["/cvgl/pose"]) > before), f"no pose after fix {i}"
    assert h.spin_until(lambda: len(h.sent("odom")) >= 10)
    to_odom, poses = h.sent("odom"), h.poses()
    assert sorted(to_odom) == [T0 + i * STEP_NS for i in range(3, 13)]
    for stamp, map_to_odom in to_odom.items():
        assert_same(map_to_odom @ odom_at(stamp), poses[stamp])  # map -> odom -> base_link = /cvgl/pose
    assert h.diag()["tf"] == "map -> odom"
    # odometry stops: 1 s later (> odom_tf_max_gap_s 0.5 s) the node sends map -> base_link again
    n_base = len(h.sent("base_link"))
    h.drive(3, start=18, speed=5.0)
    assert h.spin_until(lambda: len(h.sent("base_link")) >= n_base + 3)
    late = {s: t for s, t in h.sent("base_link").items() if s >= T0 + 18 * STEP_NS}
    for stamp, transform in late.items():
        assert_same(transform, h.poses()[stamp])


def test_publish_tf_false_sends_nothing_and_says_so():
    h = TfHarness(publish_tf=False)
    try:
        h.drive(4)
        assert h.node.tf is None and not h.sent("base_link") and not h.sent("odom")
        assert h.diag()["tf"] == "off: publish_tf is false"
    finally:
        h.close()


def test_without_tf2_msgs_the_node_runs_and_diagnostics_say_tf_is_off(monkeypatch):
    import cvgl_ros.nodes.tf as tf_module

    reason = "TF off: neither tf2_ros nor tf2_msgs imports (No module named 'tf2_msgs')"
    monkeypatch.setattr(tf_module, "TF_UNAVAILABLE", reason)
    h = TfHarness()
    try:
        h.drive(4)
        assert h.node.tf is None and not h.sent("base_link")
        d = h.diag()
        assert d["tf"] == reason and reason in d["recent_problems"]
    finally:
        h.close()
