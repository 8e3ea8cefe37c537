"""cross_view_node: camera frame + satellite patch around the prior -> likelihood over (x, y, yaw).

Subscribes  /camera/image_raw (Image: rgb8, bgr8, mono8, bayer_*) and
            /camera/image_raw/compressed (CompressedImage: jpeg, png), /camera/camera_info,
            /cvgl/pose (the filter's estimate: the position and yaw prior) and /gnss/fix (the
            prior before the filter has one, or when it is older than prior_max_age_s);
            sensor-data QoS for the sensors.
Publishes   /cvgl/likelihood (PointCloud2 x, y, z, yaw, log_likelihood in `map`; see
            conversions.py for which cells it carries), /cvgl/cross_view/pose
            (PoseWithCovarianceStamped), /cvgl/debug/overlay (Image: the camera's BEV over
            the satellite patch at the estimate, every overlay_every_n-th frame),
            /cvgl/cross_view/frame_status (DiagnosticArray stamped with each camera frame:
            processed, skipped and why, dropped; with per-stage latencies), /diagnostics.

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
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, NavSatFix, PointCloud2

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum
from cvgl_ros.imaging import encode_rgb
from cvgl_ros.nodes import conversions as conv
from cvgl_ros.nodes.diagnostics import NodeHealth
from cvgl_ros.nodes.parameters import DATUM_PARAM, Param, declare_params, parse_datum
from cvgl_ros.nodes.runner import RESULT_QOS, SENSOR_QOS, run_node, steady_timer

NODE_NAME = "cross_view_node"
FRAME_STATUS_TOPIC = "/cvgl/cross_view/frame_status"

PARAMS = [
    DATUM_PARAM,
    Param("model", "", "exported pose network (.onnx, its card .json beside it); empty: the shipped model in models/"),
    Param("tiles", "", "satellite tile cache: an MBTiles file or an XYZ directory"),
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
    Param("prior_max_age_s", 2.0, "a prior (filter pose or GNSS fix) older than this is not used, s", 0.0, 3600.0),
    Param("prior_yaw_max_std_deg", 20.0, "the filter's yaw is the yaw prior when its 1-sigma is below this, deg",
          0.0, 360.0),
    Param("prior_gnss_gate_m", 0.0,
          "when the filter's pose is farther than this from a current GNSS fix, centre the patch on the fix "
          "with the yaw unknown (so a diverged filter cannot feed on its own prior); 0: off", 0.0, 1e6),
    Param("unknown_yaw_search_every_n", 10,
          "while the filter's yaw is unknown, search the full circle (one network pass per yaw window) on every "
          "n-th frame only and skip the others (0: never, 1: every frame)", 0, 1_000_000),
    Param("min_patch_valid_fraction", 0.5, "skip a frame when less of its satellite patch has tiles", 0.0, 1.0),
    Param("likelihood_threshold_nats", 12.0, "/cvgl/likelihood carries cells within this of the maximum", 0.0, 1e6),
    Param("likelihood_max_points", 20000, "and at most this many cells", 2, 10_000_000),
    Param("overlay_every_n", 5, "publish /cvgl/debug/overlay every n-th processed frame (0: never)", 0, 1_000_000),
    Param("camera_height_m", 1.65, "camera height for the overlay when the model card gives none, m", 0.1, 20.0),
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


class CrossViewNode(Node):
    NODE_NAME = NODE_NAME

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.p = declare_params(self, PARAMS)
        self.datum: Datum | None = parse_datum(self.p["datum"])
        self.health = NodeHealth(NODE_NAME)
        for counter in ("frames_processed", "frames_skipped", "frames_dropped_stale", "tile_misses",
                        "frames_without_tiles", "stamp_backwards"):
            self.health.count(counter, 0)  # always listed in /diagnostics
        self.health.set_value("datum", self._datum_text() if self.datum else "unset: anchors at the first valid fix")
        self.estimator = None
        self.sampler = None
        self._load_estimator()
        self._open_tiles()

        self.k = None  # (K, width, height) from camera_info
        self._have_info = threading.Event()
        self.filter_prior = None  # (stamp_ns, east, north, yaw, yaw_std)
        self.gnss_prior = None    # (stamp_ns, east, north)
        self.last_frame_ns: int | None = None
        self.processed = 0
        self.unknown_yaw_frames = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting_frames = deque()  # frames no worker has taken yet: at most one per idle worker (>= 1)
        self._idle_workers = 0
        self._stop = False

        frame = self.p["map_frame"]
        self.map_frame = frame
        self.pub_cloud = self.create_publisher(PointCloud2, "/cvgl/likelihood", RESULT_QOS)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "/cvgl/cross_view/pose", RESULT_QOS)
        self.pub_overlay = self.create_publisher(Image, "/cvgl/debug/overlay", RESULT_QOS)
        self.pub_status = self.create_publisher(DiagnosticArray, FRAME_STATUS_TOPIC, RESULT_QOS)
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
            self.create_subscription(CameraInfo, "/camera/camera_info", self.on_camera_info, SENSOR_QOS),
            self.create_subscription(PoseWithCovarianceStamped, "/cvgl/pose", self.on_filter_pose, RESULT_QOS),
            self.create_subscription(NavSatFix, "/gnss/fix", self.on_gnss, SENSOR_QOS),
            self.create_subscription(Image, "/camera/image_raw", self.on_image, SENSOR_QOS),
            self.create_subscription(CompressedImage, "/camera/image_raw/compressed", self.on_image, SENSOR_QOS),
        ]
        self.diag_timer = steady_timer(self, self.p["diagnostics_period_s"], self.publish_diagnostics)
        self.get_logger().info(f"ready: model {self.health.values.get('model', '-')}, tiles {self.p['tiles'] or '-'}"
                               + (f"; NOT WORKING: {self.health.fatal_reason}" if self.health.fatal_reason else ""))

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
        self.patch_px = int(card["patch_px"])
        self.patch_mpp = float(card["patch_mpp"])
        self.camera_height_m = float(getattr(self.estimator, "camera_height_m", None) or self.p["camera_height_m"])
        self.health.set_value("providers", ",".join(getattr(self.estimator, "providers", []) or []))

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

    def on_filter_pose(self, msg: PoseWithCovarianceStamped) -> None:
        if msg.header.frame_id != self.map_frame:
            return
        east, north, yaw, cov = conv.pose_msg_to_xy_yaw(msg)
        if not (np.all(np.isfinite([east, north, yaw])) and np.all(np.isfinite(cov))):
            return
        with self._lock:
            t = conv.stamp_ns(msg.header.stamp)
            if self.filter_prior is None or t >= self.filter_prior[0]:
                self.filter_prior = (t, east, north, yaw, math.sqrt(max(cov[2, 2], 0.0)))

    def on_gnss(self, msg: NavSatFix) -> None:
        try:
            conv.check_navsatfix(msg)
        except InputError as exc:
            self.health.problem(f"GNSS fix not used as prior: {exc}", "gnss_prior_rejected")
            return
        with self._lock:
            if self.datum is None:
                self.datum = Datum(msg.latitude, msg.longitude, msg.altitude)
                self.health.set_value("datum", self._datum_text() + " (anchored at the first valid fix)")
                self.health.problem(f"datum unset: map frame anchored at the first valid fix {self._datum_text()}")
            fix = conv.navsatfix_to_enu(msg, self.datum, self.p["default_gnss_sigma_m"])
            if self.gnss_prior is None or fix.stamp_ns >= self.gnss_prior[0]:
                self.gnss_prior = (fix.stamp_ns, fix.east_m, fix.north_m)

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
        self.filter_prior = self.gnss_prior = None  # priors from "the future" are meaningless now
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
        with self._lock:
            camera, fprior, gprior, datum = self.k, self.filter_prior, self.gnss_prior, self.datum
        if camera is None:
            raise InputError("no camera_info received yet")
        k, width, height = camera
        if (rgb.shape[1], rgb.shape[0]) != (width, height) and width and height:
            raise InputError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but camera_info says {width}x{height}")
        if self.health.fatal_reason:
            return DiagnosticStatus.ERROR, f"skipped: {self.health.fatal_reason}", timings, []
        prior = self._prior(t_ns, fprior, gprior)
        if prior.yaw_enu_rad is None:
            every = self.p["unknown_yaw_search_every_n"]
            with self._lock:
                self.unknown_yaw_frames += 1
                nth = self.unknown_yaw_frames
            if every == 0 or (nth - 1) % every:
                self.health.count("frames_waiting_for_yaw")
                raise _Waiting(f"yaw prior unknown: full-circle search on every {every}th frame only"
                               if every else "yaw prior unknown (full-circle search disabled)")

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

    def _prior(self, t_ns: int, fprior, gprior):
        from cvgl_ros.runtime import Prior

        max_age_ns = self.p["prior_max_age_s"] * 1e9
        gnss_ok = gprior is not None and abs(t_ns - gprior[0]) <= max_age_ns
        if fprior is not None and abs(t_ns - fprior[0]) <= max_age_ns and gnss_ok and self.p["prior_gnss_gate_m"] > 0:
            gap = math.hypot(fprior[1] - gprior[1], fprior[2] - gprior[2])
            if gap > self.p["prior_gnss_gate_m"]:
                self.health.count("prior_filter_far_from_gnss")
                self.health.set_value("prior_source", f"gnss (filter {gap:.0f} m away; yaw unknown)")
                return Prior(gprior[1], gprior[2], None)
        if fprior is not None and abs(t_ns - fprior[0]) <= max_age_ns:
            _, east, north, yaw, yaw_std = fprior
            use_yaw = yaw_std <= math.radians(self.p["prior_yaw_max_std_deg"])
            self.health.set_value("prior_source", "filter" if use_yaw else "filter (yaw unknown)")
            return Prior(east, north, yaw if use_yaw else None)
        if gnss_ok:
            self.health.set_value("prior_source", "gnss (yaw unknown)")
            return Prior(gprior[1], gprior[2], None)
        raise InputError(f"no position prior (filter pose or GNSS fix) within {self.p['prior_max_age_s']:g} s")

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

    def _datum_text(self) -> str:
        return f"{self.datum.lat_deg:.8f},{self.datum.lon_deg:.8f},{self.datum.alt_m:.3f}"

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
