"""Checkpoints of the pose network: weights, optimizer, schedule, history and provenance.

A checkpoint is one `torch.save` file written atomically. It carries the full
configuration, so `load_model(path)` rebuilds the network without any other file.
"""
from __future__ import annotations

from pathlib import Path

import torch

from cvgl_ros.atomic import atomic_path
from cvgl_ros.errors import InputError
from cvgl_ros.models.config import config_from_dict
from cvgl_ros.models.pose_network import PoseNet

CHECKPOINT_FORMAT = "cvgl-pose-checkpoint/1"


def save_checkpoint(path: str | Path, *, model, optimizer=None, scheduler=None, epoch: int, config, history: list,
                    provenance: dict) -> Path:
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "config": config.to_dict(),
        "history": history,
        "provenance": provenance,
    }
    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)
    return path


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such checkpoint: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {path} is empty (0 bytes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"{path} is not a readable checkpoint: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return state


def load_model(path: str | Path) -> tuple[PoseNet, dict]:
    """(model in eval mode, checkpoint dict) from a checkpoint file."""
    state = read_checkpoint(path)
    config = config_from_dict(state["config"])
    model = PoseNet(config.model)
    model.load_state_dict(state["model"])
    model.eval()
    return model, state
