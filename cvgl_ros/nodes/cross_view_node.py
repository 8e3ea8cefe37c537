"""cross_view_node: camera frame + satellite patch around the prior -> likelihood over (x, y, yaw).

Subscribes  /camera/image_raw (Image: rgb8, bgr8, mono8, bayer_*) or, with image_transport
            compressed, /camera/image_raw/compressed (jpeg, png); /camera/camera_info;
            /cvgl/pose (the filter's estimate: the position and yaw prior); /gnss/fix (the
            prior before the filter has one, or when it is older than prior_max_age_s);
            optionally /imu/data (angular_velocity.z widens the yaw search while turning);
            sensor-data QoS for the sensors; /cvgl/datum (NavSatFix, latched): the filter's
            datum (nodes/datum_topic.py); /tf_static: the camera's mounting (nodes/tf_static.py).
Publishes   /cvgl/likelihood (PointCloud2 x, y, z, yaw, log_likelihood in `map`; see
            conversions.py for which cells it carries), with `retrieval_index` /cvgl/retrieval
            (coarse stage: nodes/retrieval_messages.py), /cvgl/cross_view/pose (PoseWithCovariance-
            Stamped), /cvgl/debug/overlay (Image: the camera's BEV over the patch at the estimate,
            every overlay_every_n-th frame), /cvgl/cross_view/frame_status (DiagnosticArray
            stamped with each frame: processed, skipped and why, dropped; stage latencies), /diagnostics.

What becomes of a frame is `cvgl_ros.localization`'s: `scheduler.FrameScheduler` never queues
frames (one pushed out by a newer one before a worker was free is dropped and counted) and
publishes in camera order; `frame_localizer.FrameLocalizer` checks the frame, takes its
prior from `prior.PriorSelector` (the rule, and how wide the yaw search is) and runs patch
and network. Bad input skips the frame with a diagnostic; nothing non-finite is published.
The datum is the filter's: until /cvgl/datum has come every frame is skipped ("waiting for
the filter's datum", in /diagnostics too); a `datum` parameter must agree (else: reported).
"""
from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix, PointCloud2

from cvgl_ros.errors import InputError
from cvgl_ros.localization.datum import DatumFollower
from cvgl_ros.localization.frame_localizer import ERROR, WARN, FrameLocalizer, FrameOutcome, window_reach_rad
from cvgl_ros.localization.prior import PriorSelector
from cvgl_ros.localization.scheduler import FrameScheduler
from cvgl_ros.nodes import conversions as conv
from cvgl_ros.nodes.datum_topic import DATUM_QOS, DATUM_TOPIC, msg_to_datum
from cvgl_ros.nodes.cross_view_parameters import PARAMS, frame_settings, open_model_and_tiles, prior_policy
from cvgl_ros.nodes.cross_view_messages import frame_msgs, frame_status_msg
from cvgl_ros.nodes.diagnostics import NodeHealth, health_name
from cvgl_ros.nodes.parameters import accept_live_changes, declare_params, parse_datum
from cvgl_ros.nodes.retrieval_messages import open_coarse_search
from cvgl_ros.nodes.runner import RESULT_QOS, SENSOR_QOS, run_node, steady_timer
from cvgl_ros.nodes.tf_static import cross_view_mounting
from cvgl_ros.share import default_model_path
from cvgl_ros.stamps import stamp_to_ns

NODE_NAME = "cross_view_node"
FRAME_STATUS_TOPIC = "/cvgl/cross_view/frame_status"
COUNTERS = ("frames_processed", "frames_skipped", "frames_dropped_stale", "tile_misses", "frames_without_tiles",
            "stamp_backwards", "frames_waiting_for_datum", "yaw_windows_searched")  # always in /diagnostics


class CrossViewNode(Node):
    NODE_NAME = NODE_NAME

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.p = declare_params(self, PARAMS)
        self.datum_follower = DatumFollower(parse_datum(self.p["datum"]))  # the filter's datum, once it arrived
        self.health = NodeHealth(health_name(NODE_NAME, self.get_namespace()), counters=COUNTERS)
        self.health.set_value("datum", self.datum_follower.describe())
        model = Path(self.p["model"]) if self.p["model"] else default_model_path()
        self.estimator, self.sampler = open_model_and_tiles(self.p, model, self.health)
        self.camera_height_m = float(getattr(self.estimator, "camera_height_m", None) or self.p["camera_height_m"])
        self.priors = PriorSelector(prior_policy(self.p), window_reach_rad(self.estimator))
        self.coarse = open_coarse_search(self.p, self.estimator, self.health)  # None: no retrieval_index
        self.frames = FrameLocalizer(self.estimator, self.sampler, self.priors, self.health, frame_settings(self.p),
                                     datum_source=f"the filter's datum on {DATUM_TOPIC}", coarse=self.coarse)
        accept_live_changes(self, PARAMS, self._retune)
        self.mounting = cross_view_mounting(self)  # the parameters', or /tf_static's when it has the camera
        self.k = None  # (K, width, height) from camera_info
        self._have_info, self._have_datum = threading.Event(), threading.Event()  # camera_info, datum: once
        self.pending_fix = None  # the newest valid NavSatFix while no datum is known (converted when it comes)
        self._lock = threading.Lock()
        self.map_frame = self.p["map_frame"]
        # Topic names are relative: under the node's namespace (launch `namespace:=`), /cvgl/... in
        # the root one, as the constants and the README name them. /diagnostics stays absolute.
        self.pub_cloud = self.create_publisher(PointCloud2, "cvgl/likelihood", RESULT_QOS)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "cvgl/cross_view/pose", RESULT_QOS)
        self.pub_overlay = self.create_publisher(Image, "cvgl/debug/overlay", RESULT_QOS)
        self.pub_retrieval = self.create_publisher(PointCloud2, "cvgl/retrieval", RESULT_QOS)
        self.pub_status = self.create_publisher(DiagnosticArray, FRAME_STATUS_TOPIC.lstrip("/"), RESULT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", RESULT_QOS)
        self.scheduler = FrameScheduler(self.p["inference_workers"], run=self._run_frame, publish=self._publish_frame,
                                        drop=self._drop_frame, prepare=self._take_frame, on_error=self._frame_error,
                                        name="cross_view_inference")
        # Subscriptions last: a publisher that sees them matched knows the model is loaded.
        self.inputs = [
            self.create_subscription(NavSatFix, DATUM_TOPIC.lstrip("/"), self.on_datum, DATUM_QOS),
            self.create_subscription(CameraInfo, "camera/camera_info", self.on_camera_info, SENSOR_QOS),
            self.create_subscription(PoseWithCovarianceStamped, "cvgl/pose", self.on_filter_pose, RESULT_QOS),
            self.create_subscription(NavSatFix, "gnss/fix", self.on_gnss, SENSOR_QOS),
            self.create_subscription(Imu, "imu/data", self.on_imu, SENSOR_QOS),
            # One image transport (a camera driver with image_transport publishes both: frames twice).
            self.create_subscription(Image, "camera/image_raw", self.on_image, SENSOR_QOS)
            if self.p["image_transport"] == "raw" else
            self.create_subscription(CompressedImage, "camera/image_raw/compressed", self.on_image, SENSOR_QOS),
        ]
        self.diag_timer = steady_timer(self, self.p["diagnostics_period_s"], self.publish_diagnostics)
        self.get_logger().info(f"ready: model {self.health.values.get('model', '-')}, tiles {self.p['tiles'] or '-'}"
                               + (f"; NOT WORKING: {self.health.fatal_reason}" if self.health.fatal_reason else ""))

    def _retune(self, values: dict) -> None:
        """`ros2 param set` of a live parameter (InputError: refused, nothing changed)."""
        p = dict(self.p, **values)
        self.priors.policy, self.frames.settings = prior_policy(p), frame_settings(p)
        self.p.update(values)
        self.get_logger().info(f"retuned: {values}")

    # -- inputs (callbacks only store) ----------------------------------------------------

    def on_camera_info(self, msg: CameraInfo) -> None:
        try:
            k, width, height = conv.camera_info_to_k(msg)
        except InputError as exc:
            self.health.problem(f"camera_info ignored: {exc}", "camera_info_rejected")
            return
        with self._lock:
            self.k = (k, width, height)
        self._have_info.set()

    def on_datum(self, msg: NavSatFix) -> None:
        try:
            datum = msg_to_datum(msg, self.map_frame)
        except InputError as exc:
            self.health.problem(f"/cvgl/datum ignored: {exc}", "datum_rejected")
            return
        with self._lock:
            update = self.datum_follower.receive(datum)
            if update.replaced:  # a new map frame: what was held is in the old one
                self.priors.clear()
                self.health.problem(f"the filter's datum changed to {self.datum_follower.describe()}",
                                    "datum_changes")
            pending, self.pending_fix = self.pending_fix, None
        self.health.set_value("datum", self.datum_follower.describe())
        if update.mismatch:
            self.health.set_value("datum_mismatch", update.mismatch)
            self.health.problem(update.mismatch, "datum_mismatches")
        self._have_datum.set()
        if pending is not None:
            self.on_gnss(pending)

    def on_filter_pose(self, msg: PoseWithCovarianceStamped) -> None:
        if msg.header.frame_id != self.map_frame:
            return
        east, north, yaw, cov = conv.pose_msg_to_xy_yaw(msg)
        yaw_std = math.sqrt(max(cov[2, 2], 0.0))
        if self.coarse is not None:
            self.coarse.note_filter_pose(cov[:2, :2], yaw, yaw_std)
        if np.all(np.isfinite(cov)):
            self.priors.add_filter_pose(stamp_to_ns(msg.header.stamp), east, north, yaw, yaw_std)

    def on_gnss(self, msg: NavSatFix) -> None:
        try:
            conv.check_navsatfix(msg)
        except InputError as exc:
            self.health.problem(f"GNSS fix not used as prior: {exc}", "gnss_prior_rejected")
            return
        with self._lock:
            datum = self.datum_follower.datum
            if datum is None:
                self.pending_fix = msg
                return
        fix = conv.navsatfix_to_enu(msg, datum, self.p["default_gnss_sigma_m"])
        self.priors.add_gnss_fix(fix.stamp_ns, fix.east_m, fix.north_m)
        if self.coarse is not None:
            self.coarse.note_gnss_sigma(fix.sigma_m)

    def on_imu(self, msg: Imu) -> None:
        self.health.tick("imu")
        self.priors.add_yaw_rate(stamp_to_ns(msg.header.stamp), float(msg.angular_velocity.z))

    def on_image(self, msg) -> None:
        self.health.tick("image")
        self.mounting.saw_frame("camera", msg.header.frame_id)
        self.scheduler.submit(msg)

    # -- frames: taken, run and published by the FrameScheduler --------------------------

    def _drop_frame(self, msg) -> None:
        self._publish_status(FrameOutcome(stamp_to_ns(msg.header.stamp), WARN,
                                          "dropped: a newer frame arrived before inference was free"))
        self.health.count("frames_dropped_stale")

    def _take_frame(self, msg) -> tuple[int, str | None]:
        """In the order frames are taken: (stamp, why it is out of order or None)."""
        t_ns = stamp_to_ns(msg.header.stamp)
        return t_ns, self.frames.take(t_ns)

    def _run_frame(self, msg, taken: tuple[int, str | None]) -> FrameOutcome:
        t_ns, out_of_order = taken
        return self.frames.run(t_ns, out_of_order, lambda: conv.image_to_rgb(msg), self._camera_and_datum,
                               lambda estimate: self._frame_outputs(t_ns, estimate))

    def _camera_and_datum(self) -> tuple:
        self._have_info.wait(timeout=0.5)  # the frame's camera_info may be a moment behind it
        self._have_datum.wait(timeout=max(0.5, self.p["lockstep_filter_pose_wait_s"]))  # the latched datum, too
        with self._lock:
            return self.k, self.datum_follower.datum

    def _publish_frame(self, outcome: FrameOutcome) -> None:
        for publisher, message in outcome.outputs:
            publisher.publish(message)
        self.frames.await_answers(outcome.stamp_ns)  # lockstep replays: the filter took them in before the status
        if outcome.is_problem:
            self.health.problem(outcome.text, "frames_skipped")
        self._publish_status(outcome)

    def _frame_error(self, msg, exc: BaseException) -> None:
        """Anything unexpected in a frame: the node keeps running; the reason goes to /diagnostics."""
        text = f"skipped: {type(exc).__name__}: {exc}"
        self.get_logger().error(text)
        self._publish_frame(FrameOutcome(stamp_to_ns(msg.header.stamp), ERROR, text, is_problem=True))

    def _frame_outputs(self, t_ns: int, estimate) -> list:
        """(publisher, message) for a processed frame: likelihood, pose, retrieval and overlay when due."""
        messages = frame_msgs(estimate, t_ns, self.map_frame, self.p, self.frames.patch_mpp, self.camera_height_m)
        return [({"likelihood": self.pub_cloud, "pose": self.pub_pose, "retrieval": self.pub_retrieval,
                  "overlay": self.pub_overlay}[name], msg) for name, msg in messages]

    # -- outputs --------------------------------------------------------------------------

    def _publish_status(self, outcome: FrameOutcome) -> None:
        self.pub_status.publish(frame_status_msg(outcome.stamp_ns, self.map_frame, NODE_NAME, outcome.level,
                                                 outcome.text, outcome.timings, outcome.filter_inputs))

    def publish_diagnostics(self) -> None:
        self.health.note_input_publishers(self.inputs)
        self.pub_diag.publish(self.health.to_msg(self.get_clock().now().nanoseconds))

    def close(self) -> None:
        self.scheduler.close(timeout_s=10.0)
        self.diag_timer.cancel()
        if self.sampler is not None:
            self.sampler.close()


def main(args=None) -> None:
    raise SystemExit(run_node(CrossViewNode, args))


if __name__ == "__main__":
    main()
