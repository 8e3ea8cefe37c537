"""One camera frame through the cross-view stage, ROS-free: its checks, its prior, its patch, the network.

The cross-view node converts messages and publishes; `FrameLocalizer` decides what becomes of
each frame, in this order:

1. `take(stamp_ns)`, in the order the frames are taken (`scheduler.FrameScheduler`): a stamp
   that does not move forward (repeated, or back in time) is out of order; the priors are
   cleared (they are from the camera's future) and the frame is skipped.
2. `run(...)`: the frame is decoded; it must have camera_info's size, and is warped to what
   a level camera with the same K would see (`level_frame`). A node that cannot work (no
   model, no tiles: `health.fatal_reason`) skips it with that reason; without the filter's
   datum it waits. Its prior is `prior.PriorSelector`'s (or it waits for the yaw). Then the
   satellite patch around the prior (`tiles`): skipped when less than
   `min_patch_valid_fraction` of it has tiles; and the network's pose and likelihood volume
   (`runtime`): skipped when not finite. Every `overlay_every_n`-th processed frame asks
   for the debug overlay.
3. With a `coarse_stage.CoarseSearch` (the node's `retrieval_index`), before the patch: when
   the coarse stage decides to run, the grid's scores around the prior
   (`FrameEstimate.retrieval`); a search that fails (no cell near the prior, another datum)
   says so in /diagnostics (`coarse_stage_reason`) and the frame goes on without it. A frame
   that waits for the yaw (the dense network's full-circle search runs on every n-th only)
   is still searched by the coarse stage around the prior it would have had, along the
   filter's yaw (`CoarseSearch`: while that is certain enough for the descriptor's sectors),
   and so is a frame whose dense patch fails (no tiles under a prior that GNSS put off the
   map, a non-finite pose): "processed: coarse stage only (<why not dense>)", its grid scores
   the only output. That is when the coarse stage matters most: the first seconds after a
   (re)start, before the yaw is known, and a lost estimate; the relocalizer accumulates these
   frames too.

The result is a `FrameOutcome`: the frame status's level (diagnostic_msgs levels), its text
("processed", "skipped: <why>"), the stages' timings, whether /diagnostics reports it as a
problem (a wait by design is not one), what the node's `outputs(FrameEstimate)` made of a
processed frame, and how many of those the filter answers with a pose at the frame's stamp
(`filter_inputs`: the likelihood and the grid scores).

In a lockstep replay (`filter_pose_wait_s` > 0) a frame waits, before its prior, for the
filter's pose at the newest GNSS fix held, and, before its status goes out (`await_answers`),
for the filter's answers to its outputs. The replay sends its next message on the status, so
the filter has taken every earlier message in, and the prior of every frame is the same on a
busy machine as on a quiet one.

The model a vehicle runs is `load_estimator`'s: the card's sha256
proves integrity; `allowed_sha256`, a fleet's pin, is what proves origin.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.runtime.preprocess import level_ground_image

DEFAULT_WINDOW_REACH_RAD = math.radians(12)  # the one yaw window's reach when no model is loaded
OK, WARN, ERROR = 0, 1, 2                    # diagnostic_msgs/DiagnosticStatus levels
COARSE_ONLY = "processed: coarse stage only"  # the status text of a frame only the coarse stage searched
FILTER_INPUTS_KEY = "filter_inputs"           # frame status value: outputs the filter answers with a pose


def load_estimator(path: Path | None, allowed_sha256: str = "", providers=("cpu",), trt_cache_dir: str | None = None,
                   intra_op_threads: int = 2, spin_wait: bool = False, mount_height_m: float = 0.0,
                   max_windows_per_run: int = 2):
    """The `PoseEstimator` of `path`, when its card's sha256 is in the comma-separated
    `allowed_sha256` (empty: any); `mount_height_m` > 0 replaces the card's camera height
    (an input of the network's ground-to-BEV projection). InputError says why not."""
    if path is None:
        raise InputError("no model: set the `model` parameter (no models/*.onnx shipped here)")
    try:
        from cvgl_ros.runtime import PoseEstimator
    except ImportError as exc:
        raise InputError(f"pose network runtime unavailable: {exc}") from None
    try:
        estimator = PoseEstimator(str(path), providers=tuple(providers), trt_cache_dir=trt_cache_dir,
                                  intra_op_threads=intra_op_threads, spin_wait=spin_wait,
                                  max_windows_per_run=max_windows_per_run)
    except (InputError, OSError) as exc:
        raise InputError(f"model {path}: {exc}") from None
    allowed = [h.strip().lower() for h in allowed_sha256.split(",") if h.strip()]
    sha = str(estimator.card.get("sha256", ""))
    if allowed and sha.lower() not in allowed:
        raise InputError(f"model {path}: sha256 {sha[:16]}... is not in allowed_model_sha256 (this vehicle may "
                         f"load only the pinned models)")
    if mount_height_m > 0:
        estimator.camera_height_m = mount_height_m
    return estimator


def open_sampler(tiles: str, cache_mb: float):
    """The `PatchSampler` of the tile cache `tiles` (MBTiles or XYZ directory); InputError says why not."""
    if not tiles:
        raise InputError("no tile cache: set the `tiles` parameter")
    try:
        from cvgl_ros.tiles import PatchSampler

        return PatchSampler(tiles, cache_mb=cache_mb)
    except (InputError, OSError) as exc:
        raise InputError(f"tile cache {tiles}: {exc}") from None


def window_reach_rad(estimator) -> float:
    """The model's one yaw window covers prior +- this (the card's yaw offsets)."""
    if estimator is None:
        return DEFAULT_WINDOW_REACH_RAD
    offsets = estimator.yaw_offsets
    return float(min(-offsets[0], offsets[-1])) or DEFAULT_WINDOW_REACH_RAD


class StampOrder:
    """The camera's stamps must move forward (not thread-safe: call it in the frames' order)."""

    def __init__(self):
        self.last_ns: int | None = None

    def check(self, stamp_ns: int) -> str | None:
        """Why the frame stamped `stamp_ns` is out of order, or None when it is in order."""
        last, self.last_ns = self.last_ns, stamp_ns
        if last is None or stamp_ns > last:
            return None
        back_s = (last - stamp_ns) * 1e-9
        return f"camera stamp went backwards by {back_s:.3f} s (priors cleared)" if back_s > 0 \
            else "camera stamp repeated"


def level_frame(rgb: np.ndarray, camera: tuple | None, roll_deg: float, pitch_deg: float) -> np.ndarray:
    """The frame as a level camera sees it; InputError without camera_info or at another size.
    `camera`: (K, width, height) from camera_info (a width or height of 0: any size)."""
    if camera is None:
        raise InputError("no camera_info received yet")
    k, width, height = camera
    if (rgb.shape[1], rgb.shape[0]) != (width, height) and width and height:
        raise InputError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but camera_info says {width}x{height}")
    return level_ground_image(rgb, k, math.radians(roll_deg), math.radians(pitch_deg))


@dataclass(frozen=True)
class FrameSettings:
    """The cross-view node's parameters a frame needs (the live ones may change between frames)."""

    camera_roll_deg: float = 0.0
    camera_pitch_deg: float = 0.0
    min_patch_valid_fraction: float = 0.5
    overlay_every_n: int = 5
    filter_pose_wait_s: float = 0.0   # > 0 (lockstep replays): wait this long for the previous frame's fused pose


@dataclass
class FrameEstimate:
    """What the network made of one processed frame: the runtime's `PoseResult` (its volume
    stamped with the frame), its covariance as float64, the patch it searched around `prior`,
    the levelled image and its K, and whether this frame's debug overlay is due. A frame the
    coarse stage alone searched has `result`, `covariance` and `patch` None."""

    result: object
    covariance: np.ndarray
    patch: object
    prior: object
    rgb: np.ndarray
    k: np.ndarray
    overlay: bool = False
    retrieval: object = None   # GridScores of the coarse stage, when it ran


@dataclass
class FrameOutcome:
    """One frame's status (see the module docstring) and what to publish for it."""

    stamp_ns: int
    level: int
    text: str
    timings: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    is_problem: bool = False
    filter_inputs: int = 0   # outputs the filter answers with a pose at this stamp (likelihood, grid scores)


class FrameWaiting(Exception):
    """A frame skipped by design (not bad input): reported in its status, not as a problem."""


class FrameLocalizer:
    """See the module docstring. `estimator` and `sampler` may be None (the node cannot work,
    and `health.fatal_reason` says why). `health`: the node's `NodeHealth` (`count`,
    `set_value`, `latency`, `fatal_reason`); it counts `stamp_backwards`, `frames_processed`,
    `frames_waiting_for_datum`, `tile_misses`, `frames_without_tiles`, the prior's counters
    and `yaw_windows_searched`, and shows `prior_source`, the prior's yaw sigma and rate, and
    `yaw_windows` (network batch rows of the last frame: the yaw search's cost)."""

    def __init__(self, estimator, sampler, priors, health, settings: FrameSettings,
                 datum_source: str = "the filter's datum on /cvgl/datum", coarse=None):
        self.estimator, self.sampler, self.priors, self.health = estimator, sampler, priors, health
        self.coarse = coarse
        self.settings = settings
        self.datum_source = datum_source
        self.patch_px = int(estimator.card["patch_px"]) if estimator is not None else 0
        self.patch_mpp = float(estimator.card["patch_mpp"]) if estimator is not None else 0.0
        self.stamp_order = StampOrder()
        self._lock = threading.Lock()
        self.processed = 0
        self._answer_due: tuple[int, int] | None = None   # the newest processed frame: its stamp and the
        #                      filter poses there once it is answered (those before it + its filter_inputs)
        self._fix_awaited_ns: int | None = None            # the newest GNSS fix whose filter pose was awaited

    def take(self, stamp_ns: int) -> str | None:
        """Why the frame taken now is out of order (the priors are then cleared), or None."""
        out_of_order = self.stamp_order.check(stamp_ns)
        if out_of_order:
            self.priors.clear()
            self.health.count("stamp_backwards")
        return out_of_order

    def run(self, stamp_ns: int, out_of_order: str | None, decode: Callable[[], np.ndarray],
            inputs: Callable[[], tuple], outputs: Callable[[FrameEstimate], list]) -> FrameOutcome:
        """The frame's outcome. `decode()`: its RGB image (InputError: undecodable); `inputs()`:
        (camera, datum) as they are now, camera (K, width, height) from camera_info or None,
        the filter's datum or None; `outputs(estimate)`: the messages of a processed frame.
        A skip is an outcome, never an InputError; other exceptions propagate."""
        try:
            if out_of_order:
                raise InputError(out_of_order)
            return self._process(stamp_ns, decode, inputs, outputs)
        except FrameWaiting as exc:
            return FrameOutcome(stamp_ns, WARN, f"skipped: {exc}")
        except InputError as exc:
            return FrameOutcome(stamp_ns, WARN, f"skipped: {exc}", is_problem=True)

    def _process(self, stamp_ns: int, decode, inputs, outputs) -> FrameOutcome:
        timings = {}
        t0 = time.perf_counter()
        rgb = decode()
        timings["decode_ms"] = (time.perf_counter() - t0) * 1e3
        camera, datum = inputs()
        s = self.settings
        rgb = level_frame(rgb, camera, s.camera_roll_deg, s.camera_pitch_deg)
        if self.health.fatal_reason:
            return FrameOutcome(stamp_ns, ERROR, f"skipped: {self.health.fatal_reason}", timings, is_problem=True)
        if datum is None:
            self.health.count("frames_waiting_for_datum")
            raise FrameWaiting(f"waiting for {self.datum_source}")
        choice = self._prior(stamp_ns)
        answered_before = self.priors.poses_at(stamp_ns)   # e.g. the filter's pose at a fix of the same stamp
        prior = choice.prior if choice.prior is not None else choice.waiting_prior
        retrieval = self._coarse(rgb, camera[0], choice, prior, datum, stamp_ns, timings) \
            if self.coarse and prior is not None else None
        try:
            if choice.prior is None:
                raise FrameWaiting(choice.skip_reason)
            estimate, text = self._localize(rgb, camera[0], datum, prior, stamp_ns, timings), "processed"
            estimate.overlay = self._overlay_due()
            self.health.count("frames_processed")
        except (FrameWaiting, InputError) as exc:   # the dense network waits or cannot work here
            if retrieval is None:
                raise
            estimate, text = FrameEstimate(None, None, None, prior, rgb, camera[0]), f"{COARSE_ONLY} ({exc})"
            self.health.count("frames_coarse_only")
        estimate.retrieval = retrieval
        messages = outputs(estimate)
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        for stage, ms in timings.items():
            self.health.latency(stage[:-3], ms)
        inputs = (estimate.result is not None) + (retrieval is not None)
        self._answer_due = stamp_ns, answered_before + inputs
        return FrameOutcome(stamp_ns, OK, text, timings, messages, filter_inputs=inputs)

    def _prior(self, stamp_ns: int):
        """The frame's `PriorChoice` (its prior None: it waits for the yaw), InputError: none.
        With `filter_pose_wait_s` > 0 the filter's poses are awaited first (`_wait_for_filter`)."""
        if self.settings.filter_pose_wait_s > 0:
            self._wait_for_filter(stamp_ns)
        choice = self.priors.select(stamp_ns)
        for counter in choice.counters:
            self.health.count(counter)
        self.health.set_value("prior_source", choice.source)
        if math.isfinite(choice.yaw_std_rad):
            self.health.set_value("prior_yaw_std_deg", math.degrees(choice.yaw_std_rad))
            self.health.set_value("prior_yaw_rate_degps", math.degrees(choice.yaw_rate_radps))
        return choice

    def await_answers(self, stamp_ns: int) -> None:
        """Lockstep replays, after the node published the outputs of the frame `stamp_ns` and before
        its status: the filter's poses answering them (`filter_inputs` of them). The replay sends
        its next message on the status, so the filter has then taken the frame in."""
        due = self._answer_due
        if self.settings.filter_pose_wait_s > 0 and due is not None and due[0] == stamp_ns:
            self._answer_due = None
            self._await_poses(*due)

    def _wait_for_filter(self, stamp_ns: int) -> None:
        """Lockstep replays: the filter's poses that answer what it took in before this frame, so
        that the prior does not depend on which came first over DDS. Those are its poses answering
        the previous processed frame (unless `await_answers` waited for them), and its pose at the
        newest GNSS fix held: the filter publishes one for every valid fix it uses or rejects, and
        its poses arrive in the order it published them, so waiting for the later one is enough.
        Each is awaited once (one that does not come in `filter_pose_wait_s` is not awaited again)."""
        due = self._answer_due if self._answer_due is not None and self._answer_due[0] < stamp_ns else None
        fix_ns = self.priors.newest_gnss_ns
        if fix_ns is not None and fix_ns != self._fix_awaited_ns and (due is None or fix_ns > due[0]):
            due = fix_ns, 1
        if due is None:
            return
        self._answer_due, self._fix_awaited_ns = None, fix_ns
        self._await_poses(*due)

    def _await_poses(self, stamp_ns: int, count: int) -> None:
        """`count` filter poses at `stamp_ns` (or one later), for at most `filter_pose_wait_s`."""
        if not self.priors.wait_for_filter_pose(stamp_ns, self.settings.filter_pose_wait_s, count=count):
            self.health.count("filter_pose_waits_timed_out")

    def _coarse(self, rgb: np.ndarray, k: np.ndarray, choice, prior, datum, stamp_ns: int, timings: dict):
        """The coarse stage's GridScores around `prior` when it runs for this frame, else None (step 3)."""
        decision = self.coarse.decide(choice.source)
        self.health.set_value("coarse_stage", "on" if decision.run else "off")
        self.health.set_value("coarse_stage_reason", decision.reason)
        if not decision.run:
            return None
        try:
            scores = self.coarse.search(rgb, k, prior.yaw_enu_rad, prior.east_m, prior.north_m, datum, stamp_ns,
                                        timings)
        except InputError as exc:
            self.health.set_value("coarse_stage_reason", f"{decision.reason}; search failed: {exc}")
            self.health.count("retrieval_failed")
            return None
        self.health.count("retrieval_searches")
        self.health.set_value("retrieval_cells", len(scores))
        return scores

    def _localize(self, rgb: np.ndarray, k: np.ndarray, datum, prior, stamp_ns: int, timings: dict) -> FrameEstimate:
        """The patch around `prior` and the network's pose and likelihood in it (InputError: skipped)."""
        t0 = time.perf_counter()
        patch = self.sampler.patch_enu(datum, prior.east_m, prior.north_m, self.patch_px, self.patch_mpp)
        timings["patch_ms"] = (time.perf_counter() - t0) * 1e3
        if patch.missing_tiles or patch.corrupt_tiles:
            self.health.count("tile_misses", int(patch.missing_tiles) + int(patch.corrupt_tiles))
        if patch.valid_fraction < self.settings.min_patch_valid_fraction:
            self.health.count("frames_without_tiles")
            raise InputError(f"no tiles under the prior at ({prior.east_m:.1f}, {prior.north_m:.1f}) m: "
                             f"{patch.valid_fraction:.0%} of the patch covered, {patch.missing_tiles} tiles missing")
        t1 = time.perf_counter()
        result = self.estimator.estimate(rgb, k, patch.rgb, prior, stamp_ns=stamp_ns, patch_valid=patch.valid)
        timings["inference_ms"] = (time.perf_counter() - t1) * 1e3
        self.health.set_value("yaw_windows", result.yaw_windows)
        self.health.count("yaw_windows_searched", result.yaw_windows)
        cov = np.asarray(result.covariance, dtype=np.float64)
        if not (np.all(np.isfinite([result.east_m, result.north_m, result.yaw_enu_rad])) and np.all(np.isfinite(cov))):
            raise InputError("the network returned a non-finite pose")
        result.volume.stamp_ns = stamp_ns
        return FrameEstimate(result, cov, patch, prior, rgb, k)

    def _overlay_due(self) -> bool:
        """Every overlay_every_n-th processed frame, the first one included (0: never)."""
        with self._lock:
            self.processed += 1
            nth = self.processed
        every = self.settings.overlay_every_n
        return bool(every) and nth % every == 1 % every
