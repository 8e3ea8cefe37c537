"""The cross-view node's parameters, typed, ranged and described (`CrossViewNodeParameters`,
declared by `nodes/parameters.py`), and what they make: the prior selector's policy
(`cvgl_ros.localization.prior.PriorPolicy`), the frames' settings, and the model and tile
cache the node opens."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from cvgl_ros.config import setting
from cvgl_ros.errors import InputError
from cvgl_ros.localization.frame_localizer import FrameSettings, load_estimator, open_sampler
from cvgl_ros.localization.prior import PriorPolicy
from cvgl_ros.nodes.parameters import MountingParameters, params_of


class CrossViewNodeParameters(MountingParameters):
    """The cross-view node's parameters: the one declaration of each one's type, default,
    range and description (`params_of` makes the ROS parameters of them)."""

    what: ClassVar[str] = "parameter"

    datum: Any = setting(None, "a check only: the map frame's datum comes from the particle-filter node "
        "(/cvgl/datum); when given here, [lat_deg, lon_deg, alt_m] must agree with the filter's (a mismatch is "
        "reported)")
    model: str = setting("", "exported pose network (.onnx, its card .json beside it); empty: the shipped model in "
        "models/")
    tiles: str = setting("", "satellite tile cache: an MBTiles file or an XYZ directory")
    allowed_model_sha256: str = setting("", "comma-separated sha256 (as in the model card) of the models this vehicle "
        "may load; empty: any. The card's sha256 alone proves integrity, not origin: whoever supplies model and card "
        "passes it; this pin is what a fleet controls")
    image_transport: str = setting("raw", "camera transport subscribed to: raw (camera/image_raw) or compressed "
        "(camera/image_raw/compressed), never both", choices=("raw", "compressed"))
    providers: list[str] = setting(["tensorrt", "cuda", "cpu"], "ONNX Runtime execution providers, in order of "
        "preference")
    trt_cache_dir: str = setting("", "TensorRT engine cache directory (empty: none)")
    intra_op_threads: int = setting(2, "ONNX Runtime intra-op threads", ge=1, le=256)
    inference_workers: int = setting(1, "frames in inference at once (a free worker takes a waiting frame; results "
        "are published in camera order): 1 gives the lowest latency; 2 with intra_op_threads 1 gives ~1.4x the "
        "throughput on 2 CPU cores, each frame then taking its prior from up to two frames back", ge=1, le=16)
    max_windows_per_run: int = setting(2, "yaw windows (network batch rows) per ONNX Runtime run in a wide or "
        "full-circle search: the peak memory grows with it (15 windows at once: 1.3 GB), the work does not",
        ge=1, le=64)
    intra_op_spin_wait: bool = setting(False, "let ONNX Runtime's idle intra-op threads spin (slightly lower latency "
        "when the inference has cores to itself; burns CPU the other nodes need when it does not)")
    tile_cache_mb: float = setting(256.0, "memory cap of the decoded-tile LRU, MB", ge=1.0, le=65536.0)
    prior_max_age_s: float = setting(2.0, "a prior (filter pose or GNSS fix) older than this is not used, s",
        ge=0.0, le=3600.0, live=True)
    prior_yaw_max_std_deg: float = setting(20.0, "the filter's yaw is the yaw prior when its 1-sigma is below this, "
        "deg", ge=0.0, le=360.0, live=True)
    widen_yaw_search: bool = setting(True, "search the yaw within +-(k sigma_yaw + |yaw rate| tau + margin) of the "
        "filter's yaw, in adjacent windows (one network batch row each); false: always the one window", live=True)
    yaw_search_sigmas: float = setting(3.0, "k: the yaw search reaches this many of the filter's yaw 1-sigma",
        ge=0.0, le=100.0, live=True)
    yaw_search_margin_deg: float = setting(1.5, "margin added to the yaw search half-width, deg",
        ge=0.0, le=180.0, live=True)
    yaw_search_latency_s: float = setting(0.1, "processing latency added to the prior's age in tau (the yaw rate "
        "term), s", ge=0.0, le=10.0, live=True)
    yaw_search_max_half_width_deg: float = setting(90.0, "a wider yaw search than this counts as an unknown yaw (full "
        "circle, every unknown_yaw_search_every_n-th frame), deg", ge=0.0, le=180.0, live=True)
    prior_gnss_gate_m: float = setting(0.0, "when the filter's pose is farther than this from a current GNSS fix, "
        "centre the patch on the fix with the yaw unknown (so a diverged filter cannot feed on its own prior); 0: off",
        ge=0.0, le=1e6, live=True)
    unknown_yaw_search_every_n: int = setting(10, "while the filter's yaw is unknown, search the full circle (one "
        "network pass per yaw window) on every n-th frame only and skip the others (0: never, 1: every frame)",
        ge=0, le=1_000_000, live=True)
    min_patch_valid_fraction: float = setting(0.5, "skip a frame when less of its satellite patch has tiles",
        ge=0.0, le=1.0, live=True)
    likelihood_threshold_nats: float = setting(12.0, "/cvgl/likelihood carries cells within this of the maximum",
        ge=0.0, le=1e6, live=True)
    likelihood_max_points: int = setting(20000, "and at most this many cells", ge=2, le=10_000_000, live=True)
    overlay_every_n: int = setting(5, "publish /cvgl/debug/overlay every n-th processed frame (0: never)",
        ge=0, le=1_000_000, live=True)
    camera_height_m: float = setting(1.65, "camera height for the overlay when the model card gives none, m",
        ge=0.1, le=20.0)
    camera_mount_height_m: float = setting(0.0, "the camera's height above the ground as mounted, m, fed to the "
        "network's ground-to-BEV projection; 0: the card's training height", ge=0.0, le=20.0)
    camera_pitch_deg: float = setting(0.0, "the camera's pitch in base_link (REP-103: > 0 looks down), deg: frames "
        "are warped to a level camera before the network (cvgl_ros/geo/frames.py)", ge=-45.0, le=45.0)
    camera_roll_deg: float = setting(0.0, "the camera's roll in base_link (REP-103), deg, levelled the same way",
        ge=-45.0, le=45.0)
    default_gnss_sigma_m: float = setting(5.0, "1-sigma of fixes that report no covariance, m", ge=0.01, le=1000.0)
    map_frame: str = setting("map", "frame of the published likelihood and pose (ENU at the datum)")
    lockstep_filter_pose_wait_s: float = setting(0.0, "replays in lockstep only: before a frame's prior, wait up to "
        "this long (wall clock) for the filter's poses answering the previous processed frame and the newest GNSS "
        "fix (and, on the first frames, for the filter's latched datum, which live waits 0.5 s for), so that the "
        "replay does not depend on the machine's speed; 0 (live): never wait, s", ge=0.0, le=60.0)
    base_link_frame: str = setting("base_link", "the vehicle's frame: the camera's mounting on /tf_static is from it")
    retrieval_index: str = setting("", "coarse stage (seed 001): satellite descriptor grid (.npz of `cvgl retrieval "
        "index`, built with the filter's datum) searched around the prior when the filter's 3-sigma uncertainty "
        "exceeds the dense patch or the estimate is lost; scores on /cvgl/retrieval; empty: off")
    retrieval_model: str = setting("", "the descriptor card (descriptor.json or its run directory) of the grid's "
        "ground encoder; empty: the card the grid names")
    retrieval_max_cells: int = setting(6000, "coarse stage: at most this many grid cells a frame (those nearest the "
        "prior in its 3-sigma circle; 6000 holds the relocalizer's 200 m circle at 5 m)", ge=2, le=1_000_000)
    retrieval_yaw_max_std_deg: float = setting(20.0, "coarse stage: a frame without a yaw prior (the dense network "
        "waits for the yaw, or is not searching) is searched along the filter's yaw while its 1-sigma is at most "
        "this (the descriptor's sectors are 22.5 deg; 40 measured worse on the recovery trials), deg",
        gt=0.0, le=180.0)
    diagnostics_period_s: float = setting(1.0, "period of /diagnostics, s (wall clock)", ge=0.05, le=60.0)


PARAMS = params_of(CrossViewNodeParameters)


def prior_policy(p: dict) -> PriorPolicy:
    """The `prior_*` and `yaw_search_*` parameters of `p` (name -> value) as a PriorPolicy."""
    return PriorPolicy(
        max_age_s=p["prior_max_age_s"], yaw_max_std_deg=p["prior_yaw_max_std_deg"],
        gnss_gate_m=p["prior_gnss_gate_m"], unknown_yaw_search_every_n=p["unknown_yaw_search_every_n"],
        widen_yaw_search=p["widen_yaw_search"], yaw_search_sigmas=p["yaw_search_sigmas"],
        yaw_search_margin_deg=p["yaw_search_margin_deg"], yaw_search_latency_s=p["yaw_search_latency_s"],
        yaw_search_max_half_width_deg=p["yaw_search_max_half_width_deg"])


def frame_settings(p: dict) -> FrameSettings:
    """The parameters of `p` (name -> value) a camera frame needs, as FrameSettings."""
    return FrameSettings(camera_roll_deg=p["camera_roll_deg"], camera_pitch_deg=p["camera_pitch_deg"],
                         min_patch_valid_fraction=p["min_patch_valid_fraction"], overlay_every_n=p["overlay_every_n"],
                         filter_pose_wait_s=p["lockstep_filter_pose_wait_s"])


def open_model_and_tiles(p: dict, model: Path | None, health):
    """(PoseEstimator, PatchSampler) of the `model` file and the `tiles` parameter, None for
    each that cannot be opened: `health.fatal` gets every reason (a missing tile cache never
    hides a bad model); /diagnostics shows the model's path and its providers."""
    estimator = sampler = None
    if model is not None:
        health.set_value("model", str(model))
    try:
        estimator = load_estimator(model, p["allowed_model_sha256"], p["providers"], p["trt_cache_dir"] or None,
                                   p["intra_op_threads"], p["intra_op_spin_wait"], p["camera_mount_height_m"],
                                   p["max_windows_per_run"])
        health.set_value("providers", ",".join(getattr(estimator, "providers", []) or []))
    except InputError as exc:
        health.fatal(str(exc))
    try:
        sampler = open_sampler(p["tiles"], p["tile_cache_mb"])
    except InputError as exc:
        health.fatal(str(exc))
    return estimator, sampler
