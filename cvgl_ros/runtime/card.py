"""The model card: the JSON beside an exported `.onnx` that says what the model expects.

`models/NAME.onnx` has its card at `models/NAME.json`. The card records the inputs and
their sizes, m/px and patch size, the camera assumptions, the likelihood volume's grid,
training data, seed and command, evaluation metrics, and the sha256 of the .onnx, which
the runtime checks before it loads the model.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from cvgl_ros.errors import InputError, read_json

CARD_FORMAT = "cvgl-pose-card/1"
REQUIRED_KEYS = ("format", "sha256", "image_hw", "patch_px", "patch_mpp", "volume", "inputs", "outputs")


def card_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(model_path: str | Path) -> dict:
    """Load and check the card of `model_path` (InputError when absent or malformed)."""
    path = card_path(model_path)
    if not path.is_file():
        raise InputError(f"no model card {path} beside {model_path} (export writes it)")
    card = read_json(path, "model card")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise InputError(f"model card {path} is not a {CARD_FORMAT} card")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise InputError(f"model card {path} lacks {', '.join(missing)}")
    problem = card_field_problem(card)
    if problem:
        raise InputError(f"bad model card {path}: {problem}")
    return card


def _is_int(value, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value, positive: bool = True) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > 0 if positive else True


def card_field_problem(card: dict) -> str | None:
    """What is wrong with the types of the fields the runtime reads, or None.

    sha256: 64 hex digits; image_hw: [height, width] integers >= 1; patch_px: integer >= 1;
    patch_mpp: number > 0; volume: {cells: integer >= 1, cell_m: number > 0,
    yaw_offsets_rad: non-empty list of finite numbers}; inputs, outputs: objects;
    image_mismatch (optional): "resize" or "refuse"; image_max_aspect_change,
    camera_height_m (optional): numbers > 0."""
    sha = card.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha.lower())):
        return f"sha256 must be 64 hex digits, got {sha!r:.80}"
    hw = card.get("image_hw")
    if not (isinstance(hw, list) and len(hw) == 2 and all(_is_int(v) for v in hw)):
        return f"image_hw must be [height, width] in whole pixels, got {hw!r:.80}"
    if not _is_int(card.get("patch_px")):
        return f"patch_px must be a whole number of pixels >= 1, got {card.get('patch_px')!r:.80}"
    if not _is_number(card.get("patch_mpp")):
        return f"patch_mpp must be a number > 0, got {card.get('patch_mpp')!r:.80}"
    volume = card.get("volume")
    if not isinstance(volume, dict):
        return f"volume must be an object, got {volume!r:.80}"
    if not _is_int(volume.get("cells")):
        return f"volume.cells must be an integer >= 1, got {volume.get('cells')!r:.80}"
    if not _is_number(volume.get("cell_m")):
        return f"volume.cell_m must be a number > 0, got {volume.get('cell_m')!r:.80}"
    offsets = volume.get("yaw_offsets_rad")
    if not (isinstance(offsets, list) and offsets and all(_is_number(v, positive=False) for v in offsets)):
        return f"volume.yaw_offsets_rad must be a list of numbers, got {offsets!r:.80}"
    for key in ("inputs", "outputs"):
        if not isinstance(card.get(key), dict):
            return f"{key} must be an object, got {card.get(key)!r:.80}"
    if card.get("image_mismatch", "resize") not in ("resize", "refuse"):
        return f"image_mismatch must be resize or refuse, got {card.get('image_mismatch')!r:.80}"
    for key in ("image_max_aspect_change", "camera_height_m"):
        if card.get(key) is not None and not _is_number(card[key]):
            return f"{key} must be a number > 0, got {card[key]!r:.80}"
    camera = card.get("camera")
    if camera is not None and not isinstance(camera, dict):
        return f"camera must be an object, got {camera!r:.80}"
    return None


def check_sha256(data: bytes, card: dict, model_path: str | Path) -> str:
    """Refuse model bytes whose sha256 differs from the card's."""
    actual = sha256_bytes(data)
    expected = str(card.get("sha256", ""))
    if actual != expected:
        raise InputError(f"sha256 mismatch: {model_path} has sha256 {actual} but its card says {expected}; "
                         "refusing a model that is not the one the card describes")
    return actual
