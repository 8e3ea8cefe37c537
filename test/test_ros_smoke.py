"""Proof that ROS 2 works here: two real rclpy nodes exchange a NavSatFix over Fast DDS."""
import time

import pytest

pytestmark = pytest.mark.colcon  # `colcon test` runs it beside the core tests: ROS 2 works here


def test_navsatfix_travels_between_two_nodes():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import NavSatFix

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        pub_node = rclpy.create_node("smoke_publisher", context=context)
        sub_node = rclpy.create_node("smoke_subscriber", context=context)
        received = []
        sub_node.create_subscription(NavSatFix, "/smoke/fix", received.append, 10)
        pub = pub_node.create_publisher(NavSatFix, "/smoke/fix", 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(pub_node)
        executor.add_node(sub_node)
        msg = NavSatFix()
        msg.latitude, msg.longitude, msg.altitude = 49.0123, 8.4567, 115.0
        deadline = time.monotonic() + 30.0
        while not received and time.monotonic() < deadline:
            pub.publish(msg)
            executor.spin_once(timeout_sec=0.1)
        assert received, "no NavSatFix arrived over DDS within 30 s"
        assert received[0].latitude == pytest.approx(49.0123)
        assert received[0].longitude == pytest.approx(8.4567)
        executor.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
