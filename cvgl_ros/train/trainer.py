"""`cvgl train`: epochs of `train_one_epoch`, validation, checkpoints, curves, resume.

    run_training("data/sim_pairs", "config/train_pose.yaml", "runs/NAME")

Writes into `out/`: `checkpoint_epochNNN.pt` every epoch, `last.pt` (what `--resume`
continues from), `best.pt` (lowest validation median position error), `history.json` and
`curves.png`. A run is deterministic for its seed; resuming continues exactly.
"""
from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from cvgl_ros.atomic import write_json
from cvgl_ros.datasets.pairs import PairDataset
from cvgl_ros.errors import InputError
from cvgl_ros.evaluation.pose_metrics import pose_metrics
from cvgl_ros.models.config import FullConfig, load_config
from cvgl_ros.models.pose_network import PoseNet
from cvgl_ros.train.checkpoint import read_checkpoint, save_checkpoint
from cvgl_ros.train.loop import evaluate, train_one_epoch
from cvgl_ros.train.plots import plot_training_curves

VALIDATION_PAIRS = 256
STEP_WINDOW = 25  # training steps averaged per point of the loss curve
CAMERA_META_KEYS = ("camera_pitch_rad", "camera_forward_m")


def camera_from_meta(config: FullConfig, meta: dict) -> FullConfig:
    """Take the camera mounting of the data (meta or meta["camera"]) into the model config."""
    sources = [meta, meta.get("camera") if isinstance(meta.get("camera"), dict) else {}]
    updates = {}
    for key in CAMERA_META_KEYS:
        for src in sources:
            short = key.replace("camera_", "")
            value = src.get(key, src.get(short) if src is not meta else None)
            if value is not None:
                updates[key] = float(value)
                break
    if updates:
        config = config.replace(model=config.model.replace(**updates))
    return config


def make_optimizer(model: PoseNet, config: FullConfig, steps_per_epoch: int):
    t = config.train
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, betas=(0.9, 0.999), weight_decay=t.weight_decay)
    total = max(1, t.epochs * steps_per_epoch)
    warmup = min(200, total // 10 + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return t.lr_final_fraction + (1 - t.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def validation_metrics(model: PoseNet, dataset: PairDataset, config: FullConfig, max_pairs: int) -> dict:
    result = evaluate(model, dataset, config, max_pairs=max_pairs, progress=False)
    metrics = pose_metrics(result["pose"], result["truth"])
    volume = pose_metrics(result["volume_pose"], result["truth"])
    return {"count": metrics["count"], "position_median_m": metrics["position_median_m"],
            "lateral_recall_1m": metrics["lateral_recall_1m"], "azimuth_median_deg": metrics["azimuth_median_deg"],
            "volume_position_median_m": volume["position_median_m"],
            "volume_azimuth_median_deg": volume["azimuth_median_deg"], "nll_mean": float(np.mean(result["nll"]))}


def run_training(data: str | Path, config_path: str | Path | None, out: str | Path, *, resume: bool = False,
                 epochs: int | None = None, max_pairs: int | None = None, progress: bool = True,
                 validation_pairs: int = VALIDATION_PAIRS, command: str | None = None) -> dict:
    out = Path(out)
    last = out / "last.pt"
    train_set = PairDataset(data, "train")
    val_split = next((s for s in ("val", "same_area") if s in train_set.index["splits"]), None)
    val_set = PairDataset(data, val_split) if val_split and validation_pairs > 0 else None

    if resume:
        state = read_checkpoint(last)
        from cvgl_ros.models.config import config_from_dict

        config = config_from_dict(state["config"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        provenance = dict(state["provenance"])
    else:
        if last.exists():
            raise InputError(f"{out} already holds a run (last.pt): use --resume, or another --out")
        config = camera_from_meta(load_config(config_path), train_set.meta)
        history, start_epoch = [], 0
        provenance = {"data": str(data), "config_file": str(config_path) if config_path else None,
                      "command": command or shlex.join(["cvgl", *sys.argv[1:]]), "max_pairs": max_pairs,
                      "train_pairs": len(train_set) if max_pairs is None else min(max_pairs, len(train_set)),
                      "worlds": train_set.index.get("worlds", {}), "data_meta": train_set.meta,
                      "validation_split": val_split}
    if epochs is not None:
        config = config.replace(train=config.train.replace(epochs=int(epochs)))
    torch.set_num_threads(max(1, config.train.threads))
    torch.manual_seed(config.train.seed)
    model = PoseNet(config.model)
    n_train = len(train_set) if max_pairs is None else min(max_pairs, len(train_set))
    steps_per_epoch = n_train // config.train.batch_size
    if steps_per_epoch == 0:
        raise InputError(f"{n_train} training pairs is fewer than one batch of {config.train.batch_size}")
    optimizer, scheduler = make_optimizer(model, config, steps_per_epoch)
    if resume:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if start_epoch >= config.train.epochs:
            raise InputError(f"{last} already finished {start_epoch} of {config.train.epochs} epochs "
                             "(give --epochs N to train longer)")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config.to_dict())
    best = min((h["val"]["position_median_m"] for h in history if "val" in h), default=math.inf)
    for epoch in range(start_epoch, config.train.epochs):
        window: list[dict] = []
        curve: list[dict] = []

        def on_step(step: int, losses: dict, epoch=epoch, window=window, curve=curve) -> None:
            window.append(losses)
            if len(window) == STEP_WINDOW:
                mean = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                curve.append({"step": epoch * steps_per_epoch + step, **mean})
                window.clear()

        stats = train_one_epoch(model, train_set, optimizer, config, epoch, max_pairs=max_pairs,
                                scheduler=scheduler, progress=progress, on_step=on_step)
        entry = {"epoch": epoch + 1, "train": stats, "lr": scheduler.get_last_lr()[0], "curve": curve}
        if val_set is not None:
            entry["val"] = validation_metrics(model, val_set, config, validation_pairs)
        history.append(entry)
        kwargs = dict(model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch + 1, config=config,
                      history=history, provenance=provenance)
        save_checkpoint(out / f"checkpoint_epoch{epoch + 1:03d}.pt", **kwargs)
        save_checkpoint(last, **kwargs)
        if "val" in entry and entry["val"]["position_median_m"] < best:
            best = entry["val"]["position_median_m"]
            save_checkpoint(out / "best.pt", **kwargs)
        write_json(out / "history.json", history)
        plot_training_curves(history, out / "curves.png", title=f"{out.name}: {provenance['data']}")
        if progress:
            summary = json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in entry.get("val", {}).items()})
            print(f"epoch {epoch + 1}/{config.train.epochs}: loss {stats['loss']:.3f} val {summary}", file=sys.stderr)
    if val_set is None:
        save_checkpoint(out / "best.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                        epoch=config.train.epochs, config=config, history=history, provenance=provenance)
    return {"out": str(out), "history": history}
