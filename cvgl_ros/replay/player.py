"""Play a rosbag2 onto real ROS 2 topics with `/clock`, without rosbag2 (rosbags + raw publish).

Every topic of the bag gets a reliable publisher of its type (compatible with the nodes'
best-effort sensor subscriptions); each message's CDR bytes are published as they are.
/tf_static is latched (transient local), as tf2_ros's static broadcaster and `ros2 bag play`
offer it: subscribers that ask for its latched transforms (the nodes' sensor mounting,
tf2_ros listeners) match it and get them whenever they join.
`/clock` (rosgraph_msgs/Clock) carries the bag's log time: before each message, and at
`clock_hz` of wall time while the player waits between messages in rate mode, so nodes with
`use_sim_time` see a clock that moves like the recording. Until the first message goes out,
`now_ns` (the recorder's log time) is the bag's start time, so what the nodes publish while
they come up is logged at the recording's start, not at time 0.

Topics whose type this ROS install cannot import (a vendor message) are not played; they
are listed in `unplayable` (the nodes never subscribe to them).
"""
from __future__ import annotations

import time

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from cvgl_ros.datasets.bag import TOPIC_CLOCK, bag_topics, read_messages
from cvgl_ros.nodes.tf import TF_STATIC_QOS
from cvgl_ros.replay.recorder import message_class
from cvgl_ros.stamps import ns_to_sec_nanosec

PLAYER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
LATCHED_QOS = {"/tf_static": TF_STATIC_QOS}  # tf2_ros's static QoS


class BagPlayer:
    def __init__(self, node, bag_path, clock_hz: float = 50.0):
        self.node = node
        self.topics = {t: msgtype for t, (msgtype, _count) in bag_topics(bag_path).items() if t != TOPIC_CLOCK}
        self.publishers, self.unplayable = {}, {}
        for topic, msgtype in self.topics.items():
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError, ValueError):
                self.unplayable[topic] = msgtype
                continue
            self.publishers[topic] = node.create_publisher(cls, topic, LATCHED_QOS.get(topic, PLAYER_QOS))
        self.clock_pub = node.create_publisher(Clock, TOPIC_CLOCK, PLAYER_QOS)
        self.clock_period_s = 1.0 / clock_hz
        self.now_ns = bag_start_ns(bag_path)

    def publish_clock(self, stamp_ns: int) -> None:
        self.now_ns = max(self.now_ns, int(stamp_ns))
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = ns_to_sec_nanosec(self.now_ns)
        self.clock_pub.publish(msg)

    def publish(self, topic: str, stamp_ns: int, cdr: bytes) -> None:
        self.publish_clock(stamp_ns)
        self.publishers[topic].publish(cdr)

    def sleep_until(self, wall_deadline: float, bag_ns_at: callable) -> None:
        """Sleep until the monotonic `wall_deadline`, advancing /clock as `bag_ns_at(now)` says."""
        while True:
            now = time.monotonic()
            if now >= wall_deadline:
                return
            time.sleep(min(self.clock_period_s, wall_deadline - now))
            self.publish_clock(bag_ns_at(time.monotonic()))

    def subscription_counts(self) -> dict[str, int]:
        return {t: p.get_subscription_count() for t, p in self.publishers.items()}


def bag_start_ns(bag_path) -> int:
    """Log time of the bag's first message (0 for an empty bag)."""
    for _topic, _msgtype, t_ns, _cdr in read_messages(bag_path, raw=True):
        return int(t_ns)
    return 0
