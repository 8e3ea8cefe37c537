"""What the particle-filter node keeps between poses to publish: /cvgl/path, thinned by
`cvgl_ros.localization.filter_outputs.PathRecorder` (the Path message follows it)."""
from __future__ import annotations

from nav_msgs.msg import Path

from cvgl_ros.localization.filter_outputs import PathRecorder
from cvgl_ros.nodes import conversions as conv


class PathPublisher:
    """/cvgl/path of the filter node's parameters `p` (path_min_step_m, path_max_poses,
    path_period_s, map_frame) on `publisher`."""

    def __init__(self, p: dict, publisher):
        self.recorder = PathRecorder(p["path_min_step_m"], p["path_max_poses"], p["path_period_s"])
        self.frame = p["map_frame"]
        self.publisher = publisher
        self.path = Path()
        self.path.header.frame_id = self.frame

    def extend(self, t_ns: int, est) -> None:
        """Add the estimate `est` (a PoseEstimate) at t_ns; publish when due."""
        update = self.recorder.add(t_ns, est.east_m, est.north_m, est.yaw_enu_rad)
        if update.appended:
            self.path.poses.append(conv.pose_stamped_msg(t_ns, self.frame, est.east_m, est.north_m, est.yaw_enu_rad))
            del self.path.poses[:update.dropped]
        if update.publish:
            self.path.header.stamp = conv.to_stamp(t_ns)
            self.publisher.publish(self.path)
