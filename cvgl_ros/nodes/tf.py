"""/tf of the filter node: sends the transform `cvgl_ros.localization.tf_policy` picks for each
fused pose (map -> odom, or map -> base_link), and reads odom -> base_link.

Three ways, the first that imports:
- tf2_ros (a ROS 2 install): its TransformBroadcaster, and a Buffer with a TransformListener
  for odom -> base_link (chains such as odom -> base_footprint -> base_link resolve);
- tf2_msgs only (the PyPI wheels: `make setup` builds tf2_msgs into .venv): a TFMessage
  publisher on /tf with TransformBroadcaster's QoS, and TransformListener's subscriptions to
  /tf and /tf_static; direct odom -> base_link transforms go into a `TransformHistory`;
- neither: TF is off, and `TF_UNAVAILABLE` says why (the node puts it on /diagnostics).
/tf and /tf_static are absolute, as tf2_ros names them (remap them for a namespaced robot).
The stamps are the poses' (message time), never the wall clock.
"""
from __future__ import annotations

from geometry_msgs.msg import Transform, TransformStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile
from rclpy.time import Time

from cvgl_ros.errors import InputError
from cvgl_ros.geo.transforms import RigidTransform
from cvgl_ros.localization.tf_policy import FrameTransform, MapTfPolicy, TfFrames, TransformHistory, frame_name
from cvgl_ros.nodes.conversions import to_stamp
from cvgl_ros.stamps import stamp_to_ns

try:
    import tf2_ros
except ImportError:
    tf2_ros = None
try:
    from tf2_msgs.msg import TFMessage
except ImportError as exc:
    TFMessage = None
    TF_UNAVAILABLE = f"TF off: neither tf2_ros nor tf2_msgs imports ({exc}); `make setup` builds tf2_msgs"
else:
    TF_UNAVAILABLE = ""

# tf2_ros's TransformBroadcaster and TransformListener QoS (reliable, keep last 100).
TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def transform_from_msg(msg: Transform) -> RigidTransform:
    t, q = msg.translation, msg.rotation
    return RigidTransform((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))


def transform_stamped_msg(out: FrameTransform) -> TransformStamped:
    msg = TransformStamped()
    msg.header.stamp = to_stamp(out.stamp_ns)
    msg.header.frame_id = out.parent
    msg.child_frame_id = out.child
    t, q = out.transform.translation, out.transform.rotation
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = t
    msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z, msg.transform.rotation.w = q
    return msg


class MapTfBroadcaster:
    """The filter node's TF (module docstring); `odom_max_gap_s`: odom -> base_link farther than
    this from a pose's stamp counts as none; `on_problem(message, counter)` hears of an
    odom -> base_link that is no rigid transform. Build it only when TF_UNAVAILABLE is empty."""

    def __init__(self, node, frames: TfFrames, odom_max_gap_s: float, on_problem, on_sent=None):
        self.on_sent = on_sent or (lambda sent: None)
        self.frames = frames
        self.policy = MapTfPolicy(frames)
        self.odom_max_gap_ns = int(odom_max_gap_s * 1e9)
        self.odometry = TransformHistory(odom_max_gap_s)
        self.on_problem = on_problem
        if tf2_ros is not None:
            self.broadcaster = tf2_ros.TransformBroadcaster(node, TF_QOS)
            self.buffer = tf2_ros.Buffer()
            self.listener = tf2_ros.TransformListener(self.buffer, node)
        else:
            self.pub_tf = node.create_publisher(TFMessage, "/tf", TF_QOS)
            self.subscriptions = [
                node.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, static=False), TF_QOS),
                node.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, static=True),
                                         TF_STATIC_QOS)]

    def _on_tf(self, msg, static: bool) -> None:
        for t in msg.transforms:
            if (frame_name(t.header.frame_id), frame_name(t.child_frame_id)) != (self.frames.odom, self.frames.base_link):
                continue
            try:
                transform = transform_from_msg(t.transform)
            except InputError as exc:
                self.on_problem(f"{self.frames.odom} -> {self.frames.base_link} on /tf ignored: {exc}", "tf_invalid")
                continue
            if static:
                self.odometry.set_static(transform)
            else:
                self.odometry.add(stamp_to_ns(t.header.stamp), transform)

    def odom_to_base(self, t_ns: int) -> RigidTransform | None:
        """odom -> base_link at t_ns, or None (no odometry within odom_max_gap_s)."""
        if tf2_ros is None:
            return self.odometry.at(t_ns)
        for at in (Time(nanoseconds=t_ns), Time()):  # at the stamp, else the latest if recent enough
            try:
                msg = self.buffer.lookup_transform(self.frames.odom, self.frames.base_link, at)
            except tf2_ros.TransformException:
                continue
            got_ns = stamp_to_ns(msg.header.stamp)
            if got_ns == 0 or abs(got_ns - t_ns) <= self.odom_max_gap_ns:  # 0: a static transform
                return transform_from_msg(msg.transform)
        return None

    def send(self, t_ns: int, map_to_base: RigidTransform) -> FrameTransform | None:
        """Send the transform for the fused pose map -> base_link at t_ns; what was sent, or None
        (a pose at the stamp of the previous one)."""
        out = self.policy.transform(t_ns, map_to_base, self.odom_to_base(t_ns))
        if out is None:
            return None
        msg = transform_stamped_msg(out)
        if tf2_ros is not None:
            self.broadcaster.sendTransform(msg)
        else:
            self.pub_tf.publish(TFMessage(transforms=[msg]))
        self.on_sent(out)
        return out


def map_tf_broadcaster(node, p: dict, health) -> MapTfBroadcaster | None:
    """The filter node's /tf when `publish_tf` is on and TF can be sent (`p`: its parameters);
    its /diagnostics value `tf` says which, and names the last transform sent."""
    if not p["publish_tf"]:
        health.set_value("tf", "off: publish_tf is false")
        return None
    if TF_UNAVAILABLE:
        health.set_value("tf", TF_UNAVAILABLE)
        health.problem(TF_UNAVAILABLE)
        return None
    health.set_value("tf", "on: nothing sent yet")
    return MapTfBroadcaster(node, TfFrames(p["map_frame"], p["odom_frame"], p["base_link_frame"]),
                            p["odom_tf_max_gap_s"], health.problem,
                            on_sent=lambda sent: health.set_value("tf", f"{sent.parent} -> {sent.child}"))
