"""The exported descriptor encoders on ONNX Runtime (no torch): a card and two graphs.

`cvgl train-retrieval` writes, into its run directory,

    descriptor.json              the card (format `cvgl-descriptor-card/2`)
    descriptor_ground.onnx       g: ground (B, 3, H, W) float32 RGB in [0, 1] and sectors (B, W', A)
                                 float32 -> descriptor (B, D)
    descriptor_satellite.onnx    f: satellite (B, 3, R, P) float32 polar RGB in [0, 1] -> descriptor (B, D)

The card records each graph's file name and sha256 (checked here before a graph is loaded),
the input sizes (`image_hw`, `patch_px`, `patch_mpp`: a north-up patch of patch_px * patch_mpp
metres, `polar_hw`: its polar image), `sectors` and the encoder's `stride` (the sector weights
of `cvgl_ros.retrieval.sectors`, from the frame's yaw and K), `descriptor_dim`, the training
configuration and data, and the ONNX/torch parity. (Format 1, descriptors of the whole image
without the heading, is refused: it measured at chance.)
Descriptors are unit vectors; the distance of seed 001 is d = || f(S) - g(G) ||^2 = 2 - 2 f.g
and the matching score e^{-d} (Eq. 5).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError, read_json
from cvgl_ros.runtime.card import sha256_file
from cvgl_ros.runtime.preprocess import resample_patch, resize_ground, to_nchw_float

CARD_FORMAT = "cvgl-descriptor-card/2"
BRANCHES = ("ground", "satellite")
ONNX_NAMES = {"ground": "descriptor_ground.onnx", "satellite": "descriptor_satellite.onnx"}
CARD_NAME = "descriptor.json"


def card_problem(card) -> str | None:
    """What is wrong with a descriptor card's fields, or None."""
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        return f"not a {CARD_FORMAT} card"
    for branch in BRANCHES:
        entry = card.get(branch)
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str)
                and len(entry["sha256"]) == 64):
            return f"{branch} must name its file and its sha256"
    hw = card.get("image_hw")
    if not (isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) and v > 0 for v in hw)):
        return f"image_hw must be [rows, cols], got {hw!r:.60}"
    polar = card.get("polar_hw")
    if not (isinstance(polar, list) and len(polar) == 2 and all(isinstance(v, int) and v > 0 for v in polar)):
        return f"polar_hw must be [rows, cols], got {polar!r:.60}"
    for key in ("patch_px", "sectors", "stride"):
        if not (isinstance(card.get(key), int) and not isinstance(card.get(key), bool) and card[key] > 0):
            return f"{key} must be a positive integer, got {card.get(key)!r:.60}"
    mpp = card.get("patch_mpp")
    if isinstance(mpp, bool) or not isinstance(mpp, (int, float)) or not (math.isfinite(mpp) and mpp > 0):
        return f"patch_mpp must be a number > 0, got {mpp!r:.60}"
    if not (isinstance(card.get("descriptor_dim"), int) and card["descriptor_dim"] > 0):
        return f"descriptor_dim must be a positive integer, got {card.get('descriptor_dim')!r:.60}"
    return None


def read_descriptor_card(path: str | Path) -> dict:
    """The card at `path` (the card itself, or the run directory holding descriptor.json), checked."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_NAME
    if not path.is_file():
        raise InputError(f"no descriptor card {path} (cvgl train-retrieval writes descriptor.json)")
    card = read_json(path, "descriptor card")
    problem = card_problem(card)
    if problem:
        raise InputError(f"bad descriptor card {path}: {problem}")
    return card | {"_path": str(path)}


class DescriptorModel:
    """The two encoders of a card (see the module docstring); each is loaded on first use."""

    def __init__(self, card_path: str | Path, providers=("cpu",), intra_op_threads: int = 2):
        self.card = read_descriptor_card(card_path)
        self.card_path = Path(self.card["_path"])
        self.image_hw = tuple(self.card["image_hw"])
        self.patch_px = int(self.card["patch_px"])
        self.patch_mpp = float(self.card["patch_mpp"])
        self.descriptor_dim = int(self.card["descriptor_dim"])
        self.polar_hw = tuple(self.card["polar_hw"])
        self.sectors, self.stride = int(self.card["sectors"]), int(self.card["stride"])
        self._polar_maps = None
        self.providers = tuple(providers)
        self.intra_op_threads = int(intra_op_threads)
        self._sessions: dict = {}

    def sha256(self, branch: str) -> str:
        return self.card[branch]["sha256"]

    def _session(self, branch: str):
        if branch not in self._sessions:
            import onnxruntime as ort

            from cvgl_ros.runtime.estimator import _session_providers

            path = self.card_path.parent / self.card[branch]["file"]
            if not path.is_file():
                raise InputError(f"no such model file: {path} (named by {self.card_path})")
            if sha256_file(path) != self.sha256(branch):
                raise InputError(f"sha256 mismatch: {path} is not the {branch} encoder {self.card_path} describes")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.intra_op_threads
            options.inter_op_num_threads = 1
            try:
                self._sessions[branch] = ort.InferenceSession(str(path), sess_options=options,
                                                              providers=_session_providers(self.providers, None))
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
                raise InputError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None
        return self._sessions[branch]

    def _run(self, branch: str, feeds: dict) -> np.ndarray:
        batch = len(next(iter(feeds.values())))
        out = self._session(branch).run(None, feeds)[0].astype(np.float32)
        if out.shape != (batch, self.descriptor_dim) or not np.isfinite(out).all():
            raise InputError(f"the {branch} encoder gave {out.shape} descriptors with non-finite values or of "
                             f"the wrong size (card: {self.descriptor_dim})")
        return out

    def encode_satellite(self, patches_rgb: np.ndarray, mpp: float | None = None) -> np.ndarray:
        """f(S) of north-up patches (B, S, S, 3) uint8 (resampled to the card's size when `mpp`
        or the size differs, then to polar) -> (B, D) float32 unit vectors."""
        from cvgl_ros.retrieval.sectors import polar_maps, polar_patch

        patches = np.asarray(patches_rgb)
        square = patches.ndim == 4 and patches.shape[3] == 3 and patches.shape[1] == patches.shape[2]
        if not square or patches.dtype != np.uint8 or len(patches) == 0:
            raise InputError(f"satellite patches must be (B, S, S, 3) uint8, got {patches.shape} {patches.dtype}")
        mpp = self.patch_mpp if mpp is None else float(mpp)
        if self._polar_maps is None:
            self._polar_maps = polar_maps(self.patch_px, self.polar_hw)
        polar = [polar_patch(resample_patch(p, mpp, self.patch_px, self.patch_mpp), self._polar_maps) for p in patches]
        return self._run("satellite", {"satellite": to_nchw_float(np.stack(polar))})

    def encode_ground(self, image_rgb: np.ndarray, k: np.ndarray, yaw_enu_rad: float) -> np.ndarray:
        """g(G) of one camera image (H, W, 3) uint8 with intrinsics `k` (3, 3), looking along
        `yaw_enu_rad` (resized to the card's image_hw) -> (D,) float32."""
        from cvgl_ros.retrieval.sectors import sector_weights

        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 2:
            raise InputError(f"ground image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if not math.isfinite(yaw_enu_rad):
            raise InputError("the ground descriptor needs the yaw: it is unknown for this frame")
        resized, k_resized = resize_ground(image, np.asarray(k, dtype=np.float64), self.image_hw)
        weights = sector_weights([yaw_enu_rad], k_resized, self.image_hw[1], self.stride, self.sectors)
        return self._run("ground", {"ground": to_nchw_float(resized), "sectors": weights})[0]
