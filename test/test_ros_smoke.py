"""Proof that the project works over ROS 2 here: a GNSS fix sent from one DDS participant reaches
the particle-filter node in another, which anchors the map frame at it (latched `/cvgl/datum`)
and publishes the next fix in that frame (`/cvgl/gnss/pose`, ENU metres from the datum)."""
import time

import pytest

from cvgl_ros.geo.datum import Datum

pytestmark = [pytest.mark.colcon, pytest.mark.ros]  # `colcon test` runs it beside the core tests

FIRST_FIX = Datum(49.0123, 8.4567, 115.0)
EAST_M, NORTH_M = 30.0, -40.0                          # where the second fix is, from the first


def navsatfix(lat, lon, alt, stamp_ns):
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    from cvgl_ros.nodes.conversions import to_stamp

    msg = NavSatFix()
    msg.header.stamp = to_stamp(stamp_ns)
    msg.header.frame_id = "gnss"
    msg.status.status = NavSatStatus.STATUS_FIX   # the message's default is STATUS_UNKNOWN: no fix
    msg.latitude, msg.longitude, msg.altitude = float(lat), float(lon), float(alt)
    msg.position_covariance = [4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 16.0]
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    return msg


def test_a_fix_over_dds_anchors_the_map_frame_and_the_next_one_arrives_in_it():
    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import NavSatFix

    from cvgl_ros.nodes.datum_topic import DATUM_QOS, DATUM_TOPIC
    from cvgl_ros.nodes.particle_filter_node import ParticleFilterNode
    from cvgl_ros.nodes.runner import RESULT_QOS

    node_context, probe_context = rclpy.Context(), rclpy.Context()  # two participants: the messages cross DDS
    rclpy.init(context=node_context)
    rclpy.init(context=probe_context)
    try:
        node = ParticleFilterNode(context=node_context)
        probe = rclpy.create_node("smoke_probe", context=probe_context)
        datums, poses = [], []
        probe.create_subscription(NavSatFix, DATUM_TOPIC, datums.append, DATUM_QOS)
        probe.create_subscription(PoseWithCovarianceStamped, "/cvgl/gnss/pose", poses.append, RESULT_QOS)
        pub = probe.create_publisher(NavSatFix, "/gnss/fix", RESULT_QOS)
        executors = []
        for context, member in ((node_context, node), (probe_context, probe)):
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(member)
            executors.append(executor)

        def spin_until(predicate, timeout_s=30.0):
            deadline = time.monotonic() + timeout_s
            while not predicate() and time.monotonic() < deadline:
                for executor in executors:
                    executor.spin_once(timeout_sec=0.02)
            return predicate()

        t0 = 1_700_000_000_000_000_000
        deadline = time.monotonic() + 30.0
        sent = 0
        while not (datums and poses) and time.monotonic() < deadline:  # until discovery has matched both ways
            pub.publish(navsatfix(FIRST_FIX.lat_deg, FIRST_FIX.lon_deg, FIRST_FIX.alt_m, t0 + sent * 1_000_000))
            sent += 1
            spin_until(lambda: bool(datums and poses), timeout_s=0.2)
        assert datums and poses, "no /cvgl/datum and /cvgl/gnss/pose within 30 s"
        lat, lon, alt = FIRST_FIX.to_wgs84(EAST_M, NORTH_M, 0.0)
        first_fixes = len(poses)
        pub.publish(navsatfix(lat, lon, alt, t0 + 500_000_000))
        assert spin_until(lambda: any(p.header.stamp.nanosec == 500_000_000 for p in poses)), \
            "the second fix never came back as /cvgl/gnss/pose"

        datum = datums[-1]
        assert len(datums) == 1 and datum.header.frame_id == "map"
        assert (datum.latitude, datum.longitude, datum.altitude) == pytest.approx(
            (FIRST_FIX.lat_deg, FIRST_FIX.lon_deg, FIRST_FIX.alt_m), abs=1e-9)
        first, second = poses[0].pose.pose.position, poses[-1].pose.pose.position
        assert (first.x, first.y) == pytest.approx((0.0, 0.0), abs=1e-6)
        assert (second.x, second.y) == pytest.approx((EAST_M, NORTH_M), abs=1e-3)
        assert poses[-1].header.frame_id == "map" and len(poses) == first_fixes + 1
        for executor in executors:
            executor.shutdown()
        node.close()
        node.destroy_node()
        probe.destroy_node()
    finally:
        rclpy.try_shutdown(context=node_context)
        rclpy.try_shutdown(context=probe_context)
