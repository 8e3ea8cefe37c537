"""cross_view_node: camera frame + satellite patch around the prior -> likelihood over (x, y, yaw).

Subscribes  /camera/image_raw (Image: rgb8, bgr8, mono8, bayer_*) and
            /camera/image_raw/compressed (CompressedImage: jpeg, png), /camera/camera_info,
            /cvgl/pose (the filter's estimate: the position and yaw prior), /gnss/fix (the
            prior before the filter has one, or when it is older than prior_max_age_s),
            optionally /imu/data (Imu: angular_velocity.z widens the yaw search while
            turning); sensor-data QoS for the sensors; and /cvgl/datum (NavSatFix, latched:
            transient-local, reliable, depth 1), the map frame's datum, which the
            particle-filter node owns (see nodes/datum_topic.py).
Publishes   /cvgl/likelihood (PointCloud2 x, y, z, yaw, log_likelihood in `map`; see
            conversions.py for which cells it carries), /cvgl/cross_view/pose
            (PoseWithCovarianceStamped), /cvgl/debug/overlay (Image: the camera's BEV over
            the satellite patch at the estimate, every overlay_every_n-th frame),
            /cvgl/cross_view/frame_status (DiagnosticArray stamped with each camera frame:
            processed, skipped and why, dropped; with per-stage latencies), /diagnostics.

Which prior and how wide a yaw search each frame gets is
`cvgl_ros.localization.prior.PriorSelector` (its docstring has the rule); /diagnostics shows
`prior_source`, `yaw_windows` (network windows the last processed frame searched: one batch
row each, the cost) and the counter `yaw_windows_searched` (all frames together).

The datum: this node never anchors a map frame of its own. Until the filter's /cvgl/datum
has arrived every frame is skipped ("waiting for the filter's datum", also in /diagnostics);
a `datum` parameter given here too must agree with the filter's (a mismatch is reported and
the filter's is used).

Frames are never queued: the image callback keeps only as many frames as there are idle
workers (at least the newest one), and a worker thread (`inference_workers` of them, 1 by
default) runs decode -> patch (cvgl_ros.tiles) -> network (cvgl_ros.runtime) on a waiting
frame when it is free; a frame pushed out before a worker took it is dropped and counted.
With several workers, results are published in the order the frames were taken (a ticket
per frame), never out of camera order.
Bad input (an undecodable image, no camera_info, no prior, no tiles under the prior, a
stamp going backwards) skips the frame with a diagnostic; nothing non-finite is published.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix, PointCloud2

from cvgl_ros.errors import InputError
from cvgl_ros.imaging import encode_rgb
from cvgl_ros.localization.datum import DatumFollower
from cvgl_ros.localization.prior import PriorPolicy, PriorSelector
from cvgl_ros.nodes import conversions as conv
from cvgl_ros.nodes.datum_topic import DATUM_QOS, DATUM_TOPIC, msg_to_datum
from cvgl_ros.nodes.diagnostics import NodeHealth, health_name
from cvgl_ros.nodes.parameters import Param, accept_live_changes, declare_params, parse_datum
from cvgl_ros.nodes.runner import RESULT_QOS, SENSOR_QOS, run_node, steady_timer
from cvgl_ros.runtime.preprocess import level_ground_image

NODE_NAME = "cross_view_node"
FRAME_STATUS_TOPIC = "/cvgl/cross_view/frame_status"

PARAMS = [
    Param("datum", None, "a check only: the map frame's datum comes from the particle-filter node (/cvgl/datum); "
          "when given here, [lat_deg, lon_deg, alt_m] must agree with the filter's (a mismatch is reported)"),
    Param("model", "", "exported pose network (.onnx, its card .json beside it); empty: the shipped model in models/"),
    Param("tiles", "", "satellite tile cache: an MBTiles file or an XYZ directory"),
    Param("allowed_model_sha256", "", "comma-separated sha256 (as in the model card) of the models this vehicle may "
          "load; empty: any. The card's sha256 alone proves integrity, not origin: whoever supplies model and card "
          "passes it; this pin is what a fleet controls"),
    Param("image_transport", "raw", "camera transport subscribed to: raw (camera/image_raw) or compressed "
          "(camera/image_raw/compressed), never both", choices=("raw", "compressed")),
    Param("providers", ["tensorrt", "cuda", "cpu"], "ONNX Runtime execution providers, in order of preference"),
    Param("trt_cache_dir", "", "TensorRT engine cache directory (empty: none)"),
    Param("intra_op_threads", 2, "ONNX Runtime intra-op threads", 1, 256),
    Param("inference_workers", 1,
          "frames in inference at once (a free worker takes a waiting frame; results are published in camera "
          "order): 1 gives the lowest latency; 2 with intra_op_threads 1 gives ~1.4x the throughput on 2 CPU "
          "cores, each frame then taking its prior from up to two frames back", 1, 16),
    Param("intra_op_spin_wait", False, "let ONNX Runtime's idle intra-op threads spin (slightly lower latency when "
          "the inference has cores to itself; burns CPU the other nodes need when it does not)"),
    Param("tile_cache_mb", 256.0, "memory cap of the decoded-tile LRU, MB", 1.0, 65536.0),
    Param("prior_max_age_s", 2.0, "a prior (filter pose or GNSS fix) older than this is not used, s", 0.0, 3600.0,
          live=True),
    Param("prior_yaw_max_std_deg", 20.0, "the filter's yaw is the yaw prior when its 1-sigma is below this, deg",
          0.0, 360.0, live=True),
    Param("widen_yaw_search", True, "search the yaw within +-(k sigma_yaw + |yaw rate| tau + margin) of the filter's "
          "yaw, in adjacent windows (one network batch row each); false: always the one window", live=True),
    Param("yaw_search_sigmas", 3.0, "k: the yaw search reaches this many of the filter's yaw 1-sigma", 0.0, 100.0,
          live=True),
    Param("yaw_search_margin_deg", 1.5, "margin added to the yaw search half-width, deg", 0.0, 180.0, live=True),
    Param("yaw_search_latency_s", 0.1, "processing latency added to the prior's age in tau (the yaw rate term), s",
          0.0, 10.0, live=True),
    Param("yaw_search_max_half_width_deg", 90.0, "a wider yaw search than this counts as an unknown yaw "
          "(full circle, every unknown_yaw_search_every_n-th frame), deg", 0.0, 180.0, live=True),
    Param("prior_gnss_gate_m", 0.0,
          "when the filter's pose is farther than this from a current GNSS fix, centre the patch on the fix "
          "with the yaw unknown (so a diverged filter cannot feed on its own prior); 0: off", 0.0, 1e6, live=True),
    Param("unknown_yaw_search_every_n", 10,
          "while the filter's yaw is unknown, search the full circle (one network pass per yaw window) on every "
          "n-th frame only and skip the others (0: never, 1: every frame)", 0, 1_000_000, live=True),
    Param("min_patch_valid_fraction", 0.5, "skip a frame when less of its satellite patch has tiles", 0.0, 1.0,
          live=True),
    Param("likelihood_threshold_nats", 12.0, "/cvgl/likelihood carries cells within this of the maximum", 0.0, 1e6,
          live=True),
    Param("likelihood_max_points", 20000, "and at most this many cells", 2, 10_000_000, live=True),
    Param("overlay_every_n", 5, "publish /cvgl/debug/overlay every n-th processed frame (0: never)", 0, 1_000_000,
          live=True),
    Param("camera_height_m", 1.65, "camera height for the overlay when the model card gives none, m", 0.1, 20.0),
    Param("camera_mount_height_m", 0.0, "the camera's height above the ground as mounted, m, fed to the network's "
          "ground-to-BEV projection; 0: the card's training height", 0.0, 20.0),
    Param("camera_pitch_deg", 0.0, "the camera's pitch in base_link (REP-103: > 0 looks down), deg: frames are "
          "warped to a level camera before the network (cvgl_ros/geo/frames.py)", -45.0, 45.0),
    Param("camera_roll_deg", 0.0, "the camera's roll in base_link (REP-103), deg, levelled the same way", -45.0, 45.0),
    Param("default_gnss_sigma_m", 5.0, "1-sigma of fixes that report no covariance, m", 0.01, 1000.0),
    Param("map_frame", "map", "frame of the published likelihood and pose (ENU at the datum)"),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics, s (wall clock)", 0.05, 60.0),
]


def default_model_path() -> Path | None:
    """The shipped model of the package's share directory (`cvgl_ros.share`: ament index,
    install prefix, source checkout, sys.prefix), or None."""
    from cvgl_ros import share

    return share.default_model_path()


class _Waiting(Exception):
    """A frame skipped by design (not bad input): reported in its status, not as a problem."""


def _prior_policy(p: dict) -> PriorPolicy:
    return PriorPolicy(
        max_age_s=p["prior_max_age_s"], yaw_max_std_deg=p["prior_yaw_max_std_deg"],
        gnss_gate_m=p["prior_gnss_gate_m"], unknown_yaw_search_every_n=p["unknown_yaw_search_every_n"],
        widen_yaw_search=p["widen_yaw_search"], yaw_search_sigmas=p["yaw_search_sigmas"],
        yaw_search_margin_deg=p["yaw_search_margin_deg"], yaw_search_latency_s=p["yaw_search_latency_s"],
        yaw_search_max_half_width_deg=p["yaw_search_max_half_width_deg"])


class CrossViewNode(Node):
    NODE_NAME = NODE_NAME

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.p = declare_params(self, PARAMS)
        self.datum_follower = DatumFollower(parse_datum(self.p["datum"]))  # the filter's datum, once it arrived
        self.health = NodeHealth(health_name(NODE_NAME, self.get_namespace()))
        for counter in ("frames_processed", "frames_skipped", "frames_dropped_stale", "tile_misses",
                        "frames_without_tiles", "stamp_backwards", "frames_waiting_for_datum",
                        "yaw_windows_searched"):
            self.health.count(counter, 0)  # always listed in /diagnostics
        self.health.set_value("datum", self.datum_follower.describe())
        self.estimator = None
        self.sampler = None
        self._load_estimator()
        self._open_tiles()
        self.priors = PriorSelector(_prior_policy(self.p), self._window_reach_rad())
        accept_live_changes(self, PARAMS, self._retune)

        self.k = None  # (K, width, height) from camera_info
        self._have_info = threading.Event()
        self._have_datum = threading.Event()
        self.pending_fix = None  # the newest valid NavSatFix while no datum is known (converted when it comes)
        self.last_frame_ns: int | None = None
        self.processed = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting_frames = deque()  # frames no worker has taken yet: at most one per idle worker (>= 1)
        self._idle_workers = 0
        self._stop = False

        frame = self.p["map_frame"]
        self.map_frame = frame
        # Topic names are relative: under the node's namespace (launch `namespace:=`), /cvgl/... in
        # the root one, as the constants and the README name them. /diagnostics stays absolute.
        self.pub_cloud = self.create_publisher(PointCloud2, "cvgl/likelihood", RESULT_QOS)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "cvgl/cross_view/pose", RESULT_QOS)
        self.pub_overlay = self.create_publisher(Image, "cvgl/debug/overlay", RESULT_QOS)
        self.pub_status = self.create_publisher(DiagnosticArray, FRAME_STATUS_TOPIC.lstrip("/"), RESULT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", RESULT_QOS)
        self._next_ticket = 0        # frames taken by a worker, in order
        self._turn_ticket = 0        # the next of them whose results may be published
        self._turn = threading.Condition()
        self.workers = [threading.Thread(target=self._work, name=f"cross_view_inference_{i}", daemon=True)
                        for i in range(self.p["inference_workers"])]
        for worker in self.workers:
            worker.start()
        # Subscriptions last: a publisher that sees them matched knows the model is loaded.
        self.inputs = [
            self.create_subscription(NavSatFix, DATUM_TOPIC.lstrip("/"), self.on_datum, DATUM_QOS),
            self.create_subscription(CameraInfo, "camera/camera_info", self.on_camera_info, SENSOR_QOS),
            self.create_subscription(PoseWithCovarianceStamped, "cvgl/pose", self.on_filter_pose, RESULT_QOS),
            self.create_subscription(NavSatFix, "gnss/fix", self.on_gnss, SENSOR_QOS),
            self.create_subscription(Imu, "imu/data", self.on_imu, SENSOR_QOS),
            # One image transport (a camera driver with image_transport publishes both: each
            # frame would come in twice).
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
        self.priors.policy = _prior_policy(p)
        self.p.update(values)
        self.get_logger().info(f"retuned: {values}")

    # -- set-up ---------------------------------------------------------------------------

    def _load_estimator(self) -> None:
        path = Path(self.p["model"]) if self.p["model"] else default_model_path()
        if path is None:
            self.health.fatal("no model: set the `model` parameter (no models/*.onnx shipped here)")
            return
        self.health.set_value("model", str(path))
        try:
            from cvgl_ros.runtime import PoseEstimator
        except ImportError as exc:
            self.health.fatal(f"pose network runtime unavailable: {exc}")
            return
        try:
            self.estimator = PoseEstimator(
                str(path), providers=tuple(self.p["providers"]), trt_cache_dir=self.p["trt_cache_dir"] or None,
                intra_op_threads=self.p["intra_op_threads"], spin_wait=self.p["intra_op_spin_wait"])
        except (InputError, OSError) as exc:
            self.health.fatal(f"model {path}: {exc}")
            return
        card = self.estimator.card
        allowed = [h.strip().lower() for h in self.p["allowed_model_sha256"].split(",") if h.strip()]
        if allowed and str(card.get("sha256", "")).lower() not in allowed:
            self.health.fatal(f"model {path}: sha256 {str(card.get('sha256', ''))[:16]}... is not in "
                              f"allowed_model_sha256 (this vehicle may load only the pinned models)")
            self.estimator = None
            return
        self.patch_px = int(card["patch_px"])
        self.patch_mpp = float(card["patch_mpp"])
        if self.p["camera_mount_height_m"] > 0:  # the network's ground-to-BEV projection takes it as an input
            self.estimator.camera_height_m = self.p["camera_mount_height_m"]
        self.camera_height_m = float(getattr(self.estimator, "camera_height_m", None) or self.p["camera_height_m"])
        self.health.set_value("providers", ",".join(getattr(self.estimator, "providers", []) or []))

    def _window_reach_rad(self) -> float:
        """The model's one yaw window covers prior +- this (the card's yaw offsets)."""
        offsets = self.estimator.yaw_offsets if self.estimator is not None else [-math.radians(12), math.radians(12)]
        return float(min(-offsets[0], offsets[-1])) or math.radians(12)

    def _open_tiles(self) -> None:
        if not self.p["tiles"]:
            self.health.fatal("no tile cache: set the `tiles` parameter")
            return
        try:
            from cvgl_ros.tiles import PatchSampler

            self.sampler = PatchSampler(self.p["tiles"], cache_mb=self.p["tile_cache_mb"])
        except (InputError, OSError) as exc:
            self.health.fatal(f"tile cache {self.p['tiles']}: {exc}")

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
        if np.all(np.isfinite(cov)):
            self.priors.add_filter_pose(conv.stamp_ns(msg.header.stamp), east, north, yaw,
                                        math.sqrt(max(cov[2, 2], 0.0)))

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

    def on_imu(self, msg: Imu) -> None:
        self.health.tick("imu")
        self.priors.add_yaw_rate(conv.stamp_ns(msg.header.stamp), float(msg.angular_velocity.z))

    def on_image(self, msg) -> None:
        self.health.tick("image")
        with self._lock:
            self._waiting_frames.append(msg)
            dropped = []
            while len(self._waiting_frames) > max(self._idle_workers, 1):
                dropped.append(self._waiting_frames.popleft())
            self._wake.notify()
        for old in dropped:
            self._status(conv.stamp_ns(old.header.stamp), DiagnosticStatus.WARN,
                         "dropped: a newer frame arrived before inference was free", {})
            self.health.count("frames_dropped_stale")

    # -- the worker -----------------------------------------------------------------------

    def _work(self) -> None:
        """One inference worker: take the oldest waiting frame, run it, publish in camera order."""
        while True:
            with self._lock:
                self._idle_workers += 1
                while not self._waiting_frames and not self._stop:
                    self._wake.wait(timeout=0.5)
                self._idle_workers -= 1
                if self._stop:
                    return
                msg = self._waiting_frames.popleft()
                ticket = self._next_ticket
                self._next_ticket += 1
                t_ns = conv.stamp_ns(msg.header.stamp)
                out_of_order = self._check_stamp_order(t_ns)
            level, text, timings, outputs, is_problem = self._run_frame(msg, t_ns, out_of_order)
            # Workers finish in any order; results go out in the order the frames were taken,
            # so the filter never sees a likelihood older than one it already has.
            with self._turn:
                while self._turn_ticket != ticket and not self._stop:
                    self._turn.wait(timeout=0.5)
                try:
                    for publisher, message in outputs:
                        publisher.publish(message)
                    if is_problem:
                        self.health.problem(text, "frames_skipped")
                    self._status(t_ns, level, text, timings)
                finally:
                    self._turn_ticket = ticket + 1
                    self._turn.notify_all()

    def _check_stamp_order(self, t_ns: int) -> str | None:
        """Called with the lock held: why this frame is out of order (and priors are cleared), or None."""
        last = self.last_frame_ns
        self.last_frame_ns = t_ns
        if last is None or t_ns > last:
            return None
        self.priors.clear()  # priors from "the future" are meaningless now
        self.health.count("stamp_backwards")
        back = (last - t_ns) * 1e-9
        return f"camera stamp went backwards by {back:.3f} s (priors cleared)" if back > 0 else "camera stamp repeated"

    def _run_frame(self, msg, t_ns: int, out_of_order: str | None):
        """(level, status text, timings, [(publisher, message)], counts as a problem)."""
        try:
            if out_of_order:
                raise InputError(out_of_order)
            level, text, timings, outputs = self._process(msg, t_ns)
            return level, text, timings, outputs, level != DiagnosticStatus.OK
        except _Waiting as exc:
            return DiagnosticStatus.WARN, f"skipped: {exc}", {}, [], False
        except InputError as exc:
            return DiagnosticStatus.WARN, f"skipped: {exc}", {}, [], True
        except Exception as exc:  # noqa: BLE001 - the node keeps running; the reason goes to /diagnostics
            text = f"skipped: {type(exc).__name__}: {exc}"
            self.get_logger().error(text)
            return DiagnosticStatus.ERROR, text, {}, [], True

    def _process(self, msg, t_ns: int):
        timings = {}
        t0 = time.perf_counter()
        rgb = conv.image_to_rgb(msg)
        timings["decode_ms"] = (time.perf_counter() - t0) * 1e3
        self._have_info.wait(timeout=0.5)  # the frame's camera_info may be a moment behind it
        self._have_datum.wait(timeout=0.5)  # and the filter's datum (latched) a moment behind the start
        with self._lock:
            camera, datum = self.k, self.datum_follower.datum
        if camera is None:
            raise InputError("no camera_info received yet")
        k, width, height = camera
        if (rgb.shape[1], rgb.shape[0]) != (width, height) and width and height:
            raise InputError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but camera_info says {width}x{height}")
        rgb = level_ground_image(rgb, k, math.radians(self.p["camera_roll_deg"]),
                                 math.radians(self.p["camera_pitch_deg"]))  # what a level camera would see
        if self.health.fatal_reason:
            return DiagnosticStatus.ERROR, f"skipped: {self.health.fatal_reason}", timings, []
        if datum is None:
            self.health.count("frames_waiting_for_datum")
            raise _Waiting(f"waiting for the filter's datum on {DATUM_TOPIC}")
        prior = self._prior(t_ns)

        t1 = time.perf_counter()
        patch = self.sampler.patch_enu(datum, prior.east_m, prior.north_m, self.patch_px, self.patch_mpp)
        timings["patch_ms"] = (time.perf_counter() - t1) * 1e3
        if patch.missing_tiles or patch.corrupt_tiles:
            self.health.count("tile_misses", int(patch.missing_tiles) + int(patch.corrupt_tiles))
        if patch.valid_fraction < self.p["min_patch_valid_fraction"]:
            self.health.count("frames_without_tiles")
            raise InputError(f"no tiles under the prior at ({prior.east_m:.1f}, {prior.north_m:.1f}) m: "
                             f"{patch.valid_fraction:.0%} of the patch covered, {patch.missing_tiles} tiles missing")

        t2 = time.perf_counter()
        result = self.estimator.estimate(rgb, k, patch.rgb, prior, stamp_ns=t_ns, patch_valid=patch.valid)
        timings["inference_ms"] = (time.perf_counter() - t2) * 1e3
        self.health.set_value("yaw_windows", result.yaw_windows)  # network batch rows: the yaw search's cost
        self.health.count("yaw_windows_searched", result.yaw_windows)
        values = [result.east_m, result.north_m, result.yaw_enu_rad]
        cov = np.asarray(result.covariance, dtype=np.float64)
        if not (np.all(np.isfinite(values)) and np.all(np.isfinite(cov))):
            raise InputError("the network returned a non-finite pose")
        volume = result.volume
        volume.stamp_ns = t_ns

        outputs = [
            (self.pub_cloud, conv.volume_to_cloud(volume, self.map_frame, self.p["likelihood_threshold_nats"],
                                                  self.p["likelihood_max_points"])),
            (self.pub_pose, conv.pose_with_covariance_msg(t_ns, self.map_frame, result.east_m, result.north_m,
                                                          result.yaw_enu_rad, cov)),
        ]
        with self._lock:
            self.processed += 1
            nth = self.processed
        every = self.p["overlay_every_n"]
        if every and nth % every == 1 % every:
            outputs.append((self.pub_overlay, self._overlay_msg(t_ns, rgb, k, patch, prior, result)))
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        for stage, ms in timings.items():
            self.health.latency(stage[:-3], ms)
        self.health.count("frames_processed")
        return DiagnosticStatus.OK, "processed", timings, outputs

    def _prior(self, t_ns: int):
        """The frame's prior (`PriorSelector`); _Waiting when it waits for the yaw, InputError: none."""
        choice = self.priors.select(t_ns)
        for counter in choice.counters:
            self.health.count(counter)
        self.health.set_value("prior_source", choice.source)
        if math.isfinite(choice.yaw_std_rad):
            self.health.set_value("prior_yaw_std_deg", math.degrees(choice.yaw_std_rad))
            self.health.set_value("prior_yaw_rate_degps", math.degrees(choice.yaw_rate_radps))
        if choice.prior is None:
            raise _Waiting(choice.skip_reason)
        return choice.prior

    def _overlay_msg(self, t_ns, rgb, k, patch, prior, result) -> Image:
        from cvgl_ros.nodes.overlay import bev_overlay

        picture = bev_overlay(patch.rgb, self.patch_mpp, prior.east_m, prior.north_m, rgb, k, self.camera_height_m,
                              result.east_m, result.north_m, result.yaw_enu_rad)
        out = Image()
        out.header.stamp = conv.to_stamp(t_ns)
        out.header.frame_id = self.map_frame
        out.height, out.width, out.step, out.data = encode_rgb(picture, "rgb8")
        out.encoding = "rgb8"
        return out

    # -- outputs --------------------------------------------------------------------------

    def _status(self, t_ns: int, level, text: str, timings: dict) -> None:
        status = DiagnosticStatus(level=level, name=f"cvgl_ros: {NODE_NAME} frame", message=text,
                                  hardware_id="cvgl_ros",
                                  values=[KeyValue(key=k, value=f"{v:.3f}") for k, v in timings.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = conv.to_stamp(t_ns)
        msg.header.frame_id = self.map_frame
        self.pub_status.publish(msg)

    def publish_diagnostics(self) -> None:
        self.health.note_input_publishers(self.inputs)
        self.pub_diag.publish(self.health.to_msg(self.get_clock().now().nanoseconds))

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        with self._turn:
            self._turn.notify_all()
        for worker in self.workers:
            worker.join(timeout=10.0)
        self.diag_timer.cancel()
        if self.sampler is not None:
            self.sampler.close()


def main(args=None) -> None:
    raise SystemExit(run_node(CrossViewNode, args))


if __name__ == "__main__":
    main()
