"""`cvgl export`: a checkpoint -> ONNX (opset 18, dynamic batch) + model card + parity check.

The whole network is one ONNX graph: encoders, BEV projection, the (yaw, y, x) volume,
the refinement iterations and the Procrustes pose (closed form, no SVD operator needed).
ONNX Runtime's output is compared with torch's on real or synthetic inputs; the export is
refused when the log-likelihood volumes differ by more than `PARITY_TOLERANCE`.
"""
from __future__ import annotations

import datetime
import math
import platform
from pathlib import Path

import numpy as np
import torch

from cvgl_ros.atomic import atomic_path, write_json
from cvgl_ros.errors import InputError
from cvgl_ros.models.config import config_from_dict
from cvgl_ros.models.pose_network import ExportedPoseNet, PoseNet
from cvgl_ros.runtime.card import CARD_FORMAT, card_path, sha256_file
from cvgl_ros.train.checkpoint import load_model
from cvgl_ros.train.evaluation_run import json_safe

OPSET = 18
PARITY_TOLERANCE = 1e-3
PAPER_VALUES = {
    "encoders": "ResNet18, 256 channels at 1/8 resolution",
    "refinement_iterations": 12,
    "optimizer": "Adam lr 2e-5, 25 epochs, batch 6, kappa 200->20 and beta 1->10 at epoch 15",
}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    m = flat.max(axis=1, keepdims=True)
    return (flat - m - np.log(np.exp(flat - m).sum(axis=1, keepdims=True))).reshape(x.shape)


def example_inputs(config, batch: int = 2, data: str | Path | None = None) -> tuple[torch.Tensor, ...]:
    """Inputs for tracing and parity: real pairs from `data` (same_area or any split) when given."""
    if data is not None:
        from cvgl_ros.datasets.pairs import SPLITS, PairDataset
        from cvgl_ros.train.batches import iterate_batches

        for split in ("same_area", "cross_area", "val", "train"):
            try:
                ds = PairDataset(data, split)
            except InputError:
                continue
            b = next(iterate_batches(ds, config, batch))
            return b["ground"], b["satellite"], b["intrinsics"], b["camera_height_m"], b["yaw_prior_rad"]
        raise InputError(f"{data} holds none of the splits {', '.join(SPLITS)}")
    g = torch.Generator().manual_seed(0)
    h, w = config.image_hw
    f = w / 2.0
    k = torch.tensor([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], dtype=torch.float32)
    return (torch.rand(batch, 3, h, w, generator=g), torch.rand(batch, 3, config.patch_px, config.patch_px, generator=g),
            k.expand(batch, 3, 3).contiguous(), torch.full((batch,), 1.6), torch.rand(batch, generator=g) * 6 - 3)


def parity(model_path: Path, wrapper: ExportedPoseNet, inputs: tuple[torch.Tensor, ...]) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(ExportedPoseNet.INPUTS, inputs)}
    onnx_out = session.run(list(ExportedPoseNet.OUTPUTS), feeds)
    with torch.no_grad():
        torch_out = [t.numpy() for t in wrapper(*inputs)]
    volume_diff = float(np.abs(_log_softmax(onnx_out[0]) - _log_softmax(torch_out[0])).max())
    pose_diff = float(np.abs(onnx_out[1] - torch_out[1]).max())
    return {"batch": int(inputs[0].shape[0]), "max_abs_diff_log_volume": volume_diff,
            "max_abs_diff_logits": float(np.abs(onnx_out[0] - torch_out[0]).max()),
            "max_abs_diff_pose": pose_diff, "tolerance": PARITY_TOLERANCE, "ok": volume_diff <= PARITY_TOLERANCE}


def build_card(config, state: dict, onnx_path: Path, parity_result: dict, evaluation: dict | None,
               data_commands: list[str] | None = None, calibration: dict | None = None,
               export_command: str | None = None) -> dict:
    prov = state.get("provenance", {})
    meta = prov.get("data_meta", {}) or {}
    m = config.model
    heights = meta.get("camera_height_m")
    if isinstance(meta.get("camera"), dict):
        heights = heights or meta["camera"].get("height_m")
    camera_height = float(heights) if isinstance(heights, (int, float)) else 1.6
    return {
        "format": CARD_FORMAT,
        "name": onnx_path.stem,
        "model_file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "architecture": "cross-view pose network after 'Learning Dense Flow Field for Highly-accurate Cross-view "
                        "Camera Localization' (seed 002), scaled down for 2 CPU cores",
        "onnx_opset": OPSET,
        "inputs": {
            "ground": {"shape": ["batch", 3, m.image_hw[0], m.image_hw[1]], "dtype": "float32",
                       "meaning": "camera image, RGB, NCHW, values in [0, 1]"},
            "satellite": {"shape": ["batch", 3, m.patch_px, m.patch_px], "dtype": "float32",
                          "meaning": "north-up satellite patch centred on the position prior, RGB, NCHW, [0, 1]"},
            "intrinsics": {"shape": ["batch", 3, 3], "dtype": "float32", "meaning": "pinhole K of `ground`"},
            "camera_height_m": {"shape": ["batch"], "dtype": "float32", "meaning": "camera height above the ground"},
            "yaw_prior_rad": {"shape": ["batch"], "dtype": "float32", "meaning": "ENU yaw prior (window centre)"},
        },
        "outputs": {
            "volume_logits": {"shape": ["batch", m.yaw_bins, m.volume_cells, m.volume_cells],
                              "meaning": "unnormalized log-likelihood over (yaw, y, x); log-softmax over all cells"},
            "pose": {"shape": ["batch", 3], "meaning": "refined (east, north) metres from the patch centre, ENU yaw"},
            "confidence": {"shape": ["batch", m.bev_rows * m.bev_cols], "meaning": "per-BEV-cell match confidence"},
        },
        "image_hw": list(m.image_hw),
        "image_encoding": "rgb8",
        "image_mismatch": "resize",
        "image_max_aspect_change": 0.05,
        "patch_px": m.patch_px,
        "patch_mpp": m.patch_mpp,
        "volume": {
            "cells": m.volume_cells, "cell_m": m.volume_cell_m, "yaw_bins": m.yaw_bins,
            "yaw_offsets_rad": m.yaw_offsets_rad, "frame": "map (ENU), north-up rows, centred on the position prior",
            "yaw_mode": "window of yaw_bins around the yaw prior; without a prior the runtime tiles the circle "
                        f"with {math.ceil(360 / (2 * m.yaw_window_deg))} windows in one batch",
            "yaw_bins_trained": config_from_dict(state["config"]).model.yaw_bins,
            "calibration": calibration or "none (the training NLL only)",
        },
        "camera_height_m": camera_height,
        "camera": {"model": "pinhole, no distortion", "height_m_trained": camera_height,
                   "pitch_rad": m.camera_pitch_rad, "forward_m": m.camera_forward_m,
                   "assumption": "flat ground; optical axis along the vehicle's forward axis pitched down by "
                                 "pitch_rad, no roll; camera forward_m ahead of the vehicle origin"},
        "model_config": m.to_dict(),
        "scaled_down_from_paper": PAPER_VALUES,
        "training": {
            "data": prov.get("data"), "worlds": sorted((prov.get("worlds") or {}).keys()),
            "world_styles": {k: v.get("style") for k, v in (prov.get("worlds") or {}).items() if isinstance(v, dict)},
            "pairs": prov.get("train_pairs"), "seed": config.train.seed, "epochs": state.get("epoch"),
            "command": prov.get("command"), "data_commands": list(data_commands or []),
            "export_command": export_command,
            "pairs_config": meta.get("config"), "config": config.train.to_dict(),
            "history_last": (state.get("history") or [{}])[-1],
        },
        "evaluation": evaluation or {},
        "parity": parity_result,
        "covariance": "second moments of the volume probability about the refined pose + quantization variance",
        "exported_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "exported_with": {"torch": torch.__version__, "python": platform.python_version()},
    }


@torch.no_grad()
def fit_temperature(model, dataset, max_pairs: int = 512) -> dict:
    """Post-hoc calibration of the volume (temperature scaling): the T minimizing the mean
    negative log-likelihood of the truth under log_softmax(logits / T) on held-out pairs."""
    from scipy.optimize import minimize_scalar

    from cvgl_ros.models.losses import volume_nll
    from cvgl_ros.train.batches import iterate_batches

    model.eval()
    logits, yaw_bins, offsets, yaws = [], [], [], []
    for batch in iterate_batches(dataset, model.config, 16, max_pairs=max_pairs):
        out = model(batch["ground"], batch["satellite"], batch["intrinsics"], batch["camera_height_m"],
                    batch["yaw_prior_rad"])
        logits.append(out["volume_logits"])
        yaw_bins.append(out["yaw_bins"])
        offsets.append(batch["offset_en_m"])
        yaws.append(batch["yaw_enu_rad"])
    logits, yaw_bins, offsets, yaws = (torch.cat(x) for x in (logits, yaw_bins, offsets, yaws))

    def nll(log_t: float) -> float:
        scaled = logits / math.exp(log_t)
        log_volume = torch.log_softmax(scaled.flatten(1), dim=1).reshape(scaled.shape)
        return float(volume_nll(log_volume, yaw_bins, offsets, yaws, model.config.volume_cell_m))

    best = minimize_scalar(nll, bounds=(math.log(0.2), math.log(10.0)), method="bounded")
    return {"temperature": float(math.exp(best.x)), "nll_before": nll(0.0), "nll_after": float(best.fun),
            "pairs": int(logits.shape[0]), "split": f"{dataset.path}:{dataset.split}"}


def export_checkpoint(ckpt: str | Path, out: str | Path, *, eval_data: str | Path | None = None,
                      eval_max_pairs: int | None = None, data_commands: list[str] | None = None,
                      calibration_data: tuple[str | Path, str] | None = None, yaw_bins: int | None = None,
                      command: str | None = None, progress: bool = True) -> dict:
    """Export, check parity, evaluate (optional) and write the card; returns the card.

    `calibration_data` (data set, split): fit the volume's temperature there first (held-out
    pairs that are not the evaluation's) and export the calibrated volume.
    `yaw_bins`: sample the yaw window with this many bins instead of the training's. No
    weight depends on the bins (each scores one rotation of the same features), so a finer
    sampling of the same likelihood is free of retraining; it costs volume time."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"--out must name a .onnx file, got {out}")
    model, state = load_model(ckpt)
    config = config_from_dict(state["config"])
    if yaw_bins is not None and yaw_bins != config.model.yaw_bins:
        config = config.replace(model=config.model.replace(yaw_bins=int(yaw_bins)))
        resampled = PoseNet(config.model)
        resampled.load_state_dict(model.state_dict())
        model = resampled.eval()
    torch.set_num_threads(max(1, config.train.threads))
    calibration = None
    if calibration_data is not None:
        from cvgl_ros.datasets.pairs import PairDataset

        calibration = fit_temperature(model, PairDataset(calibration_data[0], calibration_data[1]))
        with torch.no_grad():                       # logits / T, baked into the exported graph
            model.log_scale -= math.log(calibration["temperature"])
    wrapper = ExportedPoseNet(model).eval()
    trace_inputs = example_inputs(config.model, batch=2)
    batch = torch.export.Dim("batch", min=1, max=256)
    with atomic_path(out, suffix=".onnx") as tmp:
        try:
            torch.onnx.export(wrapper, trace_inputs, str(tmp), dynamo=True, opset_version=OPSET,
                              input_names=list(ExportedPoseNet.INPUTS), output_names=list(ExportedPoseNet.OUTPUTS),
                              dynamic_shapes=tuple({0: batch} for _ in ExportedPoseNet.INPUTS), external_data=False,
                              verbose=False)
        except Exception as exc:  # noqa: BLE001 - report the exporter's reason in one line
            raise InputError(f"ONNX export failed: {str(exc).splitlines()[0][:300]}") from None
        checks = [parity(tmp, wrapper, example_inputs(config.model, batch=3))]
        if eval_data is not None:
            checks.append(parity(tmp, wrapper, example_inputs(config.model, batch=3, data=eval_data)))
        worst = max(checks, key=lambda c: c["max_abs_diff_log_volume"])
        if not worst["ok"]:
            raise InputError(f"parity check failed: ONNX Runtime and torch volumes differ by "
                             f"{worst['max_abs_diff_log_volume']:.2e} > {PARITY_TOLERANCE}")
        parity_result = dict(worst, checks=checks)
    evaluation = {}
    if eval_data is not None:
        from cvgl_ros.train.evaluation_run import evaluate_model

        splits = [s for s in ("same_area", "cross_area") if _has_split(eval_data, s)]
        # The card must describe the final file: write a provisional card for the runtime first.
        write_json(card_path(out), json_safe(build_card(config, state, out, parity_result, None, data_commands,
                                                         calibration, command)))
        for split in splits:
            report = evaluate_model(out, eval_data, split, max_pairs=eval_max_pairs, progress=progress)
            evaluation[split] = {k: v for k, v in report.items() if not k.startswith("_") and k != "model"}
    card = build_card(config, state, out, parity_result, evaluation, data_commands, calibration, command)
    write_json(card_path(out), json_safe(card))
    return card


def _has_split(data, split: str) -> bool:
    from cvgl_ros.datasets.pairs import PairDataset

    try:
        PairDataset(data, split)
        return True
    except InputError:
        return False
