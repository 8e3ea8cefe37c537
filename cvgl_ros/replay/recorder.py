"""Record the nodes' outputs (every `/cvgl/*` topic and `/diagnostics`) into a rosbag2.

Raw subscriptions (`raw=True`): the CDR bytes go into the bag untouched, with the log time
the player's current `/clock` (what `ros2 bag record --use-sim-time` would write). Listeners
see each message's header stamp, so the lockstep player can wait for a frame's results.
Topics other than the known outputs that appear under `/cvgl/` are picked up by `discover()`.
"""
from __future__ import annotations

import importlib
import threading
from typing import Callable

from cvgl_ros.datasets.bag import BagWriter

# The outputs of the two nodes (README "Topics").
OUTPUT_TOPICS = {
    "/cvgl/pose": "geometry_msgs/msg/PoseWithCovarianceStamped",
    "/cvgl/protection_level": "geometry_msgs/msg/Vector3Stamped",  # HPL (vector.x, m) per pose, when published
    "/cvgl/fix": "sensor_msgs/msg/NavSatFix",
    "/cvgl/odometry": "nav_msgs/msg/Odometry",
    "/cvgl/path": "nav_msgs/msg/Path",
    "/cvgl/particles": "geometry_msgs/msg/PoseArray",
    "/cvgl/gnss/pose": "geometry_msgs/msg/PoseWithCovarianceStamped",
    "/cvgl/likelihood": "sensor_msgs/msg/PointCloud2",
    "/cvgl/cross_view/pose": "geometry_msgs/msg/PoseWithCovarianceStamped",
    "/cvgl/cross_view/frame_status": "diagnostic_msgs/msg/DiagnosticArray",
    "/cvgl/debug/overlay": "sensor_msgs/msg/Image",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


def message_class(msgtype: str):
    """'pkg/msg/Name' -> the rclpy message class."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


class Recorder:
    def __init__(self, node, writer: BagWriter, clock_ns: Callable[[], int], qos):
        self.node = node
        self.writer = writer
        self.clock_ns = clock_ns
        self.qos = qos
        self.lock = threading.Lock()
        self.listeners: list[Callable[[str, bytes], None]] = []
        self.subscriptions = {}
        self.counts: dict[str, int] = {}
        for topic, msgtype in OUTPUT_TOPICS.items():
            self._subscribe(topic, msgtype)

    def _subscribe(self, topic: str, msgtype: str) -> None:
        def on_message(cdr: bytes, topic=topic, msgtype=msgtype):
            with self.lock:
                if self.writer is not None:
                    self.writer.write_raw(topic, msgtype, self.clock_ns(), cdr)
                self.counts[topic] = self.counts.get(topic, 0) + 1
            for listener in self.listeners:
                listener(topic, cdr)

        self.subscriptions[topic] = self.node.create_subscription(message_class(msgtype), topic, on_message, self.qos,
                                                                  raw=True)

    def discover(self) -> list[str]:
        """Subscribe to /cvgl/* topics that appeared and are not recorded yet; their names."""
        added = []
        for topic, types in self.node.get_topic_names_and_types():
            if topic.startswith("/cvgl/") and topic not in self.subscriptions and types:
                try:
                    self._subscribe(topic, types[0])
                except (ImportError, AttributeError, ValueError):
                    continue
                added.append(topic)
        return added

    def close(self) -> None:
        with self.lock:
            self.writer = None
