"""The nodes' sensor mounting: their parameters, or /tf_static when it has the frames. What is
decided is `cvgl_ros.localization.mounting`'s; this module subscribes, converts and applies.

- /tf_static is subscribed with tf2_ros's static QoS (transient local: the latched transforms
  arrive whenever the node starts), as a tf2_msgs TFMessage (`nodes/tf.py`'s import), on a
  ROS 2 install (tf2_msgs beside tf2_ros) and on the PyPI wheels alike. Without tf2_msgs, or
  with `mounting_source` parameters, the parameters hold and /diagnostics says why.
- Frames: `camera_frame`, or when empty the frame_id of the camera's messages (the cross-view
  node: each Image; the filter node: camera/camera_info, subscribed for that alone), "camera"
  until one arrives; the filter's `gnss_antenna_frame`, or the NavSatFix frame_id, "gnss"
  until a fix arrives.
- Applied: the filter node's lever arms through `ParticleFilter.reconfigure` (only when they
  change), the cross-view node's height (the network's input), pitch and roll (the frames'
  levelling). Frames and fixes before /tf_static arrives use the parameters.
- /diagnostics: `mounting_source` (where each part came from, and why), `mounting` (the
  values used), `mounting_overrides` (set parameters /tf_static overrode, also a problem).
"""
from __future__ import annotations


from sensor_msgs.msg import CameraInfo

from cvgl_ros.filter.particle_filter import ParticleFilterConfig
from cvgl_ros.localization.mounting import ANTENNA_FIELDS, MountingFromTf
from cvgl_ros.localization.tf_policy import frame_name
from cvgl_ros.nodes.runner import SENSOR_QOS
from cvgl_ros.nodes.tf import TF_STATIC_QOS, TF_UNAVAILABLE, TFMessage

DEFAULT_FRAMES = {"camera": "camera", "antenna": "gnss"}  # before a message names the frame


class MountingListener:
    """One node's mounting (module docstring). `parameters`/`defaults`: {field: value} of the
    mounting fields the node uses (CAMERA_FIELDS, ANTENNA_FIELDS); `names`: each field's
    parameter name; `apply({field: value})` hands the node the values to use."""

    def __init__(self, node, p: dict, health, parameters: dict, defaults: dict, names: dict, apply,
                 camera_info_topic: str | None = None):
        self.core = MountingFromTf(p["mounting_source"], p["base_link_frame"])
        self.health, self.names, self.apply = health, names, apply
        self.parameters, self.defaults, self.applied = dict(parameters), dict(defaults), dict(parameters)
        self.configured = {"camera": frame_name(p["camera_frame"]), "antenna": frame_name(p.get("gnss_antenna_frame", ""))}
        self.seen = dict(DEFAULT_FRAMES)
        self.reported: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # overrides and notes last reported
        self.subscriptions = []
        self.unavailable = TF_UNAVAILABLE if self.core.source != "parameters" and TFMessage is None else ""
        if self.core.source != "parameters" and not self.unavailable:
            self.subscriptions.append(node.create_subscription(TFMessage, "/tf_static", self.on_tf_static,
                                                               TF_STATIC_QOS))
            if camera_info_topic and not self.configured["camera"]:
                self.subscriptions.append(node.create_subscription(
                    CameraInfo, camera_info_topic, lambda m: self.saw_frame("camera", m.header.frame_id), SENSOR_QOS))
        self.update()

    def frame(self, part: str) -> str:
        """The TF frame of "camera" or "antenna" now (module docstring)."""
        return self.configured[part] or self.seen[part]

    def saw_frame(self, part: str, frame_id: str) -> None:
        """A message's frame_id for `part`: the mounting follows it when its parameter is empty."""
        name = frame_name(frame_id)
        if name and not self.configured[part] and name != self.seen[part]:
            self.seen[part] = name
            self.update()

    def on_tf_static(self, msg) -> None:
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            reason = self.core.add(t.header.frame_id, t.child_frame_id, (tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))
            if reason:
                self.health.problem(reason, "tf_static_rejected")
        self.update()

    def parameters_changed(self, changes: dict) -> dict:
        """`changes` ({field: value}, a live `ros2 param set`) with the mounting fields /tf_static
        holds replaced by its values: /tf_static still wins."""
        mine = {k: v for k, v in changes.items() if k in self.parameters}
        if not mine:
            return changes
        self.parameters.update(mine)
        self.applied = self._choose().values
        return {**changes, **{k: self.applied[k] for k in mine}}

    def update(self) -> None:
        """Decide again (a transform or a frame name came) and apply what changed."""
        values = self._choose().values
        if values != self.applied:
            self.applied = values
            self.apply(dict(values))

    def _choose(self):
        """The choice now, reported on /diagnostics."""
        choice = self.core.choose(self.parameters, self.defaults, self.frame("camera"), self.frame("antenna"))
        source = f"parameters ({self.unavailable})" if self.unavailable else choice.source
        self.health.set_value("mounting_source", source)
        self.health.set_value("mounting", " ".join(f"{self.names[k]}={v:.6g}" for k, v in choice.values.items()))
        self.health.set_value("mounting_overrides", ", ".join(choice.overridden) or "none")
        if (choice.overridden, choice.notes) != self.reported:  # each problem once, not at every transform
            if choice.overridden:
                self.health.problem(f"/tf_static overrides the mounting parameters: {', '.join(choice.overridden)}")
            for note in choice.notes:
                self.health.problem(note)
        self.reported = (choice.overridden, choice.notes)
        return choice


def filter_mounting(node) -> MountingListener:
    """The particle-filter node's: the lever arms `filter.camera_*` and `filter.antenna_*`."""
    used = ("camera_x_m", "camera_y_m") + ANTENNA_FIELDS
    defaults = ParticleFilterConfig()

    def apply(values: dict) -> None:
        node.pf.reconfigure(node.pf.config.replace(**values))
        node.get_logger().info(f"sensor mounting: {node.health.values['mounting_source']}")

    return MountingListener(node, node.p, node.health, {k: getattr(node.pf.config, k) for k in used},
                            {k: getattr(defaults, k) for k in used}, {k: f"filter.{k}" for k in used}, apply,
                            camera_info_topic="camera/camera_info")


def cross_view_mounting(node) -> MountingListener:
    """The cross-view node's: the camera's height above the ground (`camera_mount_height_m`, 0:
    the card's), pitch and roll."""
    from cvgl_ros.nodes.cross_view_parameters import PARAMS, frame_settings  # the filter node never loads them

    names = {"camera_height_m": "camera_mount_height_m", "camera_roll_deg": "camera_roll_deg",
             "camera_pitch_deg": "camera_pitch_deg"}
    defaults = {p.name: p.default for p in PARAMS}
    start_height_m = getattr(node.estimator, "camera_height_m", None)  # the parameter's, else the card's

    def apply(values: dict) -> None:
        node.p.update(camera_roll_deg=values["camera_roll_deg"], camera_pitch_deg=values["camera_pitch_deg"])
        node.frames.settings = frame_settings(node.p)
        if node.estimator is not None:
            node.estimator.camera_height_m = values["camera_height_m"] or start_height_m
            node.camera_height_m = node.estimator.camera_height_m
        node.get_logger().info(f"sensor mounting: {node.health.values['mounting_source']}")

    return MountingListener(node, node.p, node.health, {k: node.p[n] for k, n in names.items()},
                            {k: defaults[n] for k, n in names.items()}, names, apply)

