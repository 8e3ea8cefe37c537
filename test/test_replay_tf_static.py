"""`cvgl replay`'s player latches a bag's /tf_static (transient local, as tf2_ros's static
broadcaster): a subscriber that asks for the latched transforms, as the nodes' sensor mounting
and tf2_ros listeners do, matches it and gets them even when it joins after they went out."""
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from cvgl_ros.datasets.bag import TYPESTORE, BagWriter, read_messages
from cvgl_ros.nodes.tf import TF_STATIC_QOS
from cvgl_ros.replay.player import BagPlayer

TFMessage = pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built: run `make setup`").TFMessage

pytestmark = pytest.mark.ros

T0 = 1_700_000_000_000_000_000


def test_a_bags_tf_static_reaches_a_latched_subscriber_that_joins_late(tmp_path):
    T = TYPESTORE.types
    stamp = T["builtin_interfaces/msg/Time"](sec=T0 // 10**9, nanosec=0)
    tf = T["geometry_msgs/msg/TransformStamped"](
        header=T["std_msgs/msg/Header"](stamp=stamp, frame_id="base_link"), child_frame_id="camera",
        transform=T["geometry_msgs/msg/Transform"](translation=T["geometry_msgs/msg/Vector3"](x=1.5, y=0.0, z=1.6),
                                                   rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
    with BagWriter(tmp_path / "bag") as bag:
        bag.write("/tf_static", "tf2_msgs/msg/TFMessage", T0, T["tf2_msgs/msg/TFMessage"](transforms=[tf]))
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("player", context=context)
        player = BagPlayer(node, tmp_path / "bag")
        for topic, _type, t_ns, cdr in read_messages(tmp_path / "bag", raw=True):
            player.publish(topic, t_ns, cdr)
        got = []
        late = rclpy.create_node("late", context=context)
        late.create_subscription(TFMessage, "/tf_static", got.append, TF_STATIC_QOS)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(late)
        for _ in range(500):
            executor.spin_once(timeout_sec=0.02)
            if got:
                break
        assert got and got[0].transforms[0].child_frame_id == "camera"
        assert got[0].transforms[0].transform.translation.x == 1.5
    finally:
        rclpy.try_shutdown(context=context)
