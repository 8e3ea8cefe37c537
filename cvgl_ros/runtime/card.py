"""The model card: the JSON beside an exported `.onnx` that says what the model expects.

`models/NAME.onnx` has its card at `models/NAME.json`. The card records the inputs and
their sizes, m/px and patch size, the camera assumptions, the likelihood volume's grid,
training data, seed and command, evaluation metrics, and the sha256 of the .onnx, which
the runtime checks before it loads the model.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cvgl_ros.errors import InputError

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
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"model card {path} is not valid JSON: {exc}") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise InputError(f"model card {path} is not a {CARD_FORMAT} card")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise InputError(f"model card {path} lacks {', '.join(missing)}")
    return card


def check_sha256(data: bytes, card: dict, model_path: str | Path) -> str:
    """Refuse model bytes whose sha256 differs from the card's."""
    actual = sha256_bytes(data)
    expected = str(card.get("sha256", ""))
    if actual != expected:
        raise InputError(f"sha256 mismatch: {model_path} has sha256 {actual} but its card says {expected}; "
                         "refusing a model that is not the one the card describes")
    return actual
