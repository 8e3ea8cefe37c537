"""Run an exported pose network with ONNX Runtime: image + camera + patch + prior -> pose.

    from cvgl_ros.runtime import PoseEstimator, Prior
    est = PoseEstimator("models/cvgl_pose.onnx", providers=("tensorrt", "cuda", "cpu"))
    res = est.estimate(image_rgb, k, patch_rgb, Prior(east_m, north_m, yaw_enu_rad_or_None))
    res.volume          # LikelihoodVolume over (yaw, y, x) in the map frame, centred at the prior
    res.east_m, res.north_m, res.yaw_enu_rad, res.covariance, res.latency_ms

Never imports torch. The card beside the model (`NAME.json`) is read first and the model's
sha256 must match it. Inputs are checked: the image must be rgb8 (HxWx3 uint8); a size
other than the card's `image_hw` is resized with the intrinsics scaled, unless the card's
`image_mismatch` is "refuse" or the aspect ratio changes by more than
`image_max_aspect_change`; the patch must be `patch_px` square (cut at `patch_mpp`); NaN
or Inf anywhere is an InputError, and the volume is never NaN.

Yaw: the network scores a window of bins around the yaw prior (the card's
`volume.yaw_offsets_rad`, span s = offsets[-1] - offsets[0]). Without a yaw prior the
runtime runs one batch of windows that tile the circle and returns a full-circle volume
(slower, for initialization). A prior with `yaw_half_width_rad` h asks for a search of
prior +- h: when h fits the one window (h <= the window's reach from its centre) that is
today's single window; otherwise m = ceil((h - s/2) / s) windows on each side, centred at
prior + j s for j = -m..m (adjacent windows share their edge bin), merged like the full
circle into one uniform arc of bins; an arc that would reach around the circle is the full
circle. Each window is one more batch row of the network (cost linear in 2m + 1). The rows
run through ONNX Runtime `max_windows_per_run` at a time: the activations of one run grow with
its batch, and the 15 windows of the circle in one batch took a 1.3 GB peak RSS on the CPU
(`cvgl bench --only model` reports each mode's peak in a process of its own); chunks of 2 took
323 MB (4: 555 MB; one window alone: 219 MB) for the same total work.

Covariance (3x3 over east, north, yaw): the second moments of the volume's probability
about the refined pose plus the grid's quantization variance (cell^2/12, step^2/12).
`patch_valid`: invalid pixels are filled with the mean valid colour, and volume cells whose
centre is not covered get the mean probability of the volume (uninformative, not zero).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import wrap_angle
from cvgl_ros.likelihood import LikelihoodVolume
from cvgl_ros.runtime.card import check_sha256, read_card
from cvgl_ros.runtime.preprocess import resize_ground, to_nchw_float

PROVIDER_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "cpu": "CPUExecutionProvider"}


@dataclass(frozen=True)
class Prior:
    """Position prior in the map frame (the patch centre) and, when known, the yaw prior.

    `yaw_half_width_rad`: search the yaw within prior +- this (None: the card's one window);
    ignored without a yaw prior (the full circle is searched then).
    """

    east_m: float
    north_m: float
    yaw_enu_rad: float | None = None
    yaw_half_width_rad: float | None = None


@dataclass
class PoseResult:
    volume: LikelihoodVolume
    east_m: float
    north_m: float
    yaw_enu_rad: float
    covariance: np.ndarray     # (3, 3) over (east, north, yaw)
    latency_ms: float
    yaw_windows: int = 1       # network windows (batch rows) this estimate searched


def _session_providers(providers, trt_cache_dir) -> list:
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen: list = []
    for name in providers:
        key = str(name).lower()
        if key not in PROVIDER_NAMES:
            raise InputError(f"unknown execution provider {name!r}; use tensorrt, cuda or cpu")
        full = PROVIDER_NAMES[key]
        if full not in available or any((c[0] if isinstance(c, tuple) else c) == full for c in chosen):
            continue
        if key == "tensorrt":
            options = {"trt_fp16_enable": False}
            if trt_cache_dir:
                Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
                options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache_dir),
                               trt_timing_cache_enable=True, trt_timing_cache_path=str(trt_cache_dir))
            chosen.append((full, options))
        else:
            chosen.append(full)
    if "CPUExecutionProvider" not in [c[0] if isinstance(c, tuple) else c for c in chosen]:
        chosen.append("CPUExecutionProvider")
    return chosen


def _finite(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} holds NaN or Inf")
    return arr


class PoseEstimator:
    def __init__(self, model_path: str | Path, providers=("tensorrt", "cuda", "cpu"), trt_cache_dir=None,
                 intra_op_threads: int = 2, spin_wait: bool = False, max_windows_per_run: int = 2):
        import onnxruntime as ort

        if not (isinstance(max_windows_per_run, int) and max_windows_per_run >= 1):
            raise InputError(f"max_windows_per_run {max_windows_per_run!r} must be an integer >= 1")
        self.max_windows_per_run = max_windows_per_run

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise InputError(f"no such model file: {self.model_path}")
        self.card = read_card(self.model_path)
        data = self.model_path.read_bytes()
        check_sha256(data, self.card, self.model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = 1
        # Spinning intra-op threads wait for work with the core held: a few ms less latency on
        # cores of their own, but on 2 cores shared with the other nodes they take the CPU the
        # filter and the DDS threads need (measured: 107 vs 75 CPU-ms per 51 ms run).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(data, sess_options=options,
                                                providers=_session_providers(providers, trt_cache_dir))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise InputError(f"ONNX Runtime cannot load {self.model_path}: {str(exc).splitlines()[0]}") from None
        self.providers = self.session.get_providers()
        card = self.card
        self.image_hw = (int(card["image_hw"][0]), int(card["image_hw"][1]))
        self.patch_px = int(card["patch_px"])
        self.patch_mpp = float(card["patch_mpp"])
        vol = card["volume"]
        self.cells = int(vol["cells"])
        self.cell_m = float(vol["cell_m"])
        self.yaw_offsets = np.asarray(vol["yaw_offsets_rad"], dtype=np.float64)
        self.image_mismatch = card.get("image_mismatch", "resize")
        self.max_aspect_change = float(card.get("image_max_aspect_change", 0.05))
        self.camera_height_m = float(card.get("camera_height_m") or card.get("camera", {}).get("height_m") or 1.6)

    # -- input checks ---------------------------------------------------------------------
    def _ground(self, image_rgb, k) -> tuple[np.ndarray, np.ndarray]:
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"image must be rgb8 (HxWx3 uint8) as the card says, got shape {image.shape} "
                             f"dtype {image.dtype}")
        k = _finite("intrinsics K", k)
        if k.shape != (3, 3) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise InputError(f"intrinsics K must be a 3x3 pinhole matrix with fx, fy > 0, got {k.tolist()}")
        h, w = image.shape[:2]
        th, tw = self.image_hw
        if (h, w) != (th, tw):
            if self.image_mismatch != "resize":
                raise InputError(f"image is {w}x{h} but the model card requires {tw}x{th} (image_mismatch=refuse)")
            change = abs(math.log((w / h) / (tw / th)))
            if change > self.max_aspect_change:
                raise InputError(f"image aspect {w}x{h} differs from the card's {tw}x{th} by more than "
                                 f"{self.max_aspect_change:.0%}; refusing to resize")
            image, k = resize_ground(image, k, self.image_hw)
        return image, k

    def _patch(self, patch_rgb, patch_valid):
        patch = np.asarray(patch_rgb)
        s = self.patch_px
        if patch.shape != (s, s, 3) or patch.dtype != np.uint8:
            raise InputError(f"satellite patch must be {s}x{s}x3 uint8 at {self.patch_mpp} m/px (model card), "
                             f"got shape {patch.shape} dtype {patch.dtype}")
        if patch_valid is None:
            return patch, None
        valid = np.asarray(patch_valid)
        if valid.shape != (s, s):
            raise InputError(f"patch_valid must be {s}x{s}, got {valid.shape}")
        valid = valid.astype(bool)
        if not valid.any():
            raise InputError("satellite patch has no valid pixel")
        if not valid.all():
            patch = patch.copy()
            patch[~valid] = patch[valid].mean(axis=0).astype(np.uint8)
        return patch, valid

    # -- inference ------------------------------------------------------------------------
    def _yaw_centres(self, prior: Prior) -> tuple[np.ndarray, bool]:
        """(window centres, full circle?): one window, an arc of adjacent windows, or the circle."""
        span = float(self.yaw_offsets[-1] - self.yaw_offsets[0])
        n_circle = int(math.ceil(2 * math.pi / span - 1e-9))
        circle = np.array([2 * math.pi * i / n_circle for i in range(n_circle)]) - math.pi, True
        if prior.yaw_enu_rad is None:
            return circle
        # The window's bins are prior + offsets with the prior wrapped to [-pi, pi): uniform,
        # possibly reaching beyond +-pi at the ends (not re-wrapped, which would break uniformity).
        centre = float(wrap_angle(_finite("yaw prior", prior.yaw_enu_rad)))
        half_width = prior.yaw_half_width_rad
        reach = float(min(-self.yaw_offsets[0], self.yaw_offsets[-1]))  # the one window covers +- this
        if half_width is not None and not float(_finite("yaw half-width", half_width)) >= 0:
            raise InputError(f"yaw half-width {half_width} must be >= 0")
        if half_width is None or half_width <= reach + 1e-9:
            return np.array([centre]), False
        m = int(math.ceil((float(half_width) - reach) / span - 1e-9))
        if (2 * m + 1) * span >= 2 * math.pi - 1e-9:
            return circle
        return centre + span * np.arange(-m, m + 1), False

    def estimate(self, image_rgb, k, patch_rgb, prior: Prior, stamp_ns: int = 0, patch_valid=None) -> PoseResult:
        t0 = time.perf_counter()
        if not isinstance(prior, Prior):
            raise InputError(f"prior must be a cvgl_ros.runtime.Prior, got {type(prior).__name__}")
        _finite("prior position", (prior.east_m, prior.north_m))
        image, k_model = self._ground(image_rgb, k)
        patch, valid = self._patch(patch_rgb, patch_valid)
        centres, full_circle = self._yaw_centres(prior)
        n = len(centres)
        logits, pose = self._run(to_nchw_float(image), to_nchw_float(patch), k_model, centres)
        if not (np.all(np.isfinite(logits)) and np.all(np.isfinite(pose))):
            raise InputError("the network produced NaN or Inf (inputs out of the trained range?)")
        if n > 1:
            yaw_bins, ll = self._merge_windows(logits, centres, full_circle)
            best = int(np.argmax(logits.reshape(n, -1).max(axis=1)))
        else:
            yaw_bins, ll = centres[0] + self.yaw_offsets, logits[0].astype(np.float64)
            best = 0
        ll = ll - _logsumexp(ll)
        if valid is not None:
            ll = self._neutralize_invalid(ll, valid)
        east = prior.east_m + float(pose[best, 0])
        north = prior.north_m + float(pose[best, 1])
        yaw = float(wrap_angle(pose[best, 2]))
        covariance = self._covariance(ll, yaw_bins, float(pose[best, 0]), float(pose[best, 1]), yaw)
        volume = LikelihoodVolume(ll.astype(np.float32), prior.east_m, prior.north_m, self.cell_m, yaw_bins,
                                  stamp_ns=int(stamp_ns))
        return PoseResult(volume, east, north, yaw, covariance, (time.perf_counter() - t0) * 1e3, yaw_windows=n)

    def _run(self, ground: np.ndarray, satellite: np.ndarray, k_model: np.ndarray, centres: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """(volume logits, pose) of one frame at each yaw window centre, `max_windows_per_run`
        batch rows per session run (module docstring)."""
        logits, pose = [], []
        for start in range(0, len(centres), self.max_windows_per_run):
            chunk = centres[start:start + self.max_windows_per_run]
            n = len(chunk)
            feeds = {
                "ground": np.repeat(ground, n, axis=0),
                "satellite": np.repeat(satellite, n, axis=0),
                "intrinsics": np.repeat(k_model[None].astype(np.float32), n, axis=0),
                "camera_height_m": np.full((n,), self.camera_height_m, dtype=np.float32),
                "yaw_prior_rad": chunk.astype(np.float32),
            }
            chunk_logits, chunk_pose = self.session.run(["volume_logits", "pose"], feeds)
            logits.append(chunk_logits)
            pose.append(chunk_pose)
        return np.concatenate(logits), np.concatenate(pose)

    def _merge_windows(self, logits: np.ndarray, centres: np.ndarray, full_circle: bool = True
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Windows around uniformly spaced `centres` -> one volume on bins of the window's step.

        Full circle: bins -pi + i 2pi/K over the circle. Arc (adjacent windows spaced by the
        window's span): bins from the first window's first bin to the last window's last
        one, not wrapped. Each bin takes the log-likelihood of the window whose centre is
        nearest, linearly interpolated between that window's two neighbouring bins (on an
        arc the bins coincide with the windows' own, so the values are the network's)."""
        step = float(self.yaw_offsets[1] - self.yaw_offsets[0])
        if full_circle:
            k_full = int(round(2 * math.pi / step))
            bins = -math.pi + np.arange(k_full) * (2 * math.pi / k_full)
            spacing = 2 * math.pi / len(centres)
            window = np.round(wrap_angle(bins - centres[0]) / spacing).astype(int) % len(centres)
            rel = wrap_angle(bins - centres[window])
        else:
            first = float(centres[0] + self.yaw_offsets[0])
            k_arc = int(round((centres[-1] + self.yaw_offsets[-1] - first) / step)) + 1
            bins = first + np.arange(k_arc) * step
            spacing = float(centres[1] - centres[0])
            window = np.clip(np.round((bins - centres[0]) / spacing).astype(int), 0, len(centres) - 1)
            rel = bins - centres[window]
        pos = np.clip((rel - self.yaw_offsets[0]) / step, 0, len(self.yaw_offsets) - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, len(self.yaw_offsets) - 1)
        frac = (pos - lo)[:, None, None]
        ll = logits[window, lo].astype(np.float64) * (1 - frac) + logits[window, hi].astype(np.float64) * frac
        return bins, ll

    def _neutralize_invalid(self, ll: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Cells whose centre lies on uncovered patch pixels get the mean cell probability."""
        cols = (np.arange(self.cells) - (self.cells - 1) / 2) * self.cell_m / self.patch_mpp + (self.patch_px - 1) / 2
        idx = np.clip(np.round(cols).astype(int), 0, self.patch_px - 1)
        covered = valid[np.ix_(idx, idx)]                       # rows and columns use the same offsets
        if covered.all():
            return ll
        mean_ll = _logsumexp(ll) - math.log(ll.size)
        out = ll.copy()
        out[:, ~covered] = mean_ll
        return out - _logsumexp(out)

    def _covariance(self, ll: np.ndarray, yaw_bins: np.ndarray, east: float, north: float, yaw: float) -> np.ndarray:
        p = np.exp(ll - ll.max())
        p /= p.sum()
        axis = (np.arange(self.cells) - (self.cells - 1) / 2) * self.cell_m
        de = axis[None, None, :] - east
        dn = -axis[None, :, None] - north
        dy = wrap_angle(np.asarray(yaw_bins) - yaw)[:, None, None]
        comps = [np.broadcast_to(c, p.shape) for c in (de, dn, dy)]
        cov = np.array([[float(np.sum(p * a * b)) for b in comps] for a in comps])
        step = float(self.yaw_offsets[1] - self.yaw_offsets[0])
        cov += np.diag([self.cell_m ** 2 / 12, self.cell_m ** 2 / 12, step ** 2 / 12])
        return cov


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.sum(np.exp(x - m))))
