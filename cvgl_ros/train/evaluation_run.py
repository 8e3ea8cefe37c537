"""`cvgl evaluate`: run a checkpoint (torch) or an exported .onnx (the runtime) on a split.

The .onnx path goes through `cvgl_ros.runtime.PoseEstimator` exactly as the cross-view node
does (ground image resized by the runtime, patch resampled to the card's m/px), so its
numbers are the deployed model's. Both paths report the refined pose and the volume's
best cell, the mean negative log-likelihood of the truth under the volume, and write an
error-CDF PNG beside the report.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cvgl_ros.atomic import write_json
from cvgl_ros.datasets.pairs import PairDataset
from cvgl_ros.errors import InputError
from cvgl_ros.evaluation.pose_metrics import calibration, pose_errors, pose_metrics, randomized_pit, table1_row, truth_cell
from cvgl_ros.evaluation.pose_plots import plot_error_cdf


def truth_nll(log_prob: np.ndarray, yaw_bins: np.ndarray, cell_m: float, east: float, north: float, yaw: float,
              wraps: bool) -> float:
    """-log of the volume's probability at the truth, trilinear in (yaw, y, x), truth clamped to the grid."""
    k, h, w = log_prob.shape
    p = np.exp(log_prob.astype(np.float64))
    col = float(np.clip(east / cell_m + (w - 1) / 2, 0, w - 1))
    row = float(np.clip((h - 1) / 2 - north / cell_m, 0, h - 1))
    step = float(yaw_bins[1] - yaw_bins[0])
    rel = (yaw - yaw_bins[0] + math.pi) % (2 * math.pi) - math.pi if not wraps else (yaw - yaw_bins[0]) % (2 * math.pi)
    z = rel / step
    z = float(np.clip(z, 0, k - 1)) if not wraps else z % k
    value = 0.0
    for zi, wz in ((math.floor(z), 1 - (z - math.floor(z))), (math.floor(z) + 1, z - math.floor(z))):
        zi = zi % k if wraps else min(int(zi), k - 1)
        for ri, wr in ((math.floor(row), 1 - (row - math.floor(row))), (math.floor(row) + 1, row - math.floor(row))):
            for ci, wc in ((math.floor(col), 1 - (col - math.floor(col))), (math.floor(col) + 1, col - math.floor(col))):
                if wz * wr * wc > 0:
                    value += wz * wr * wc * p[int(zi), min(int(ri), h - 1), min(int(ci), w - 1)]
    return float(-math.log(value + 1e-12))


def _run_onnx(model_path: Path, dataset: PairDataset, max_pairs: int | None, progress: bool) -> dict:
    from cvgl_ros.runtime import PoseEstimator, Prior
    from cvgl_ros.runtime.preprocess import resample_patch
    from cvgl_ros.train.batches import dataset_patch_mpp

    est = PoseEstimator(model_path, providers=("cpu",), intra_op_threads=2)
    data_mpp = dataset_patch_mpp(dataset.meta)
    total = len(dataset) if max_pairs is None else min(max_pairs, len(dataset))
    out = {"pose": [], "volume_pose": [], "truth": [], "nll": [], "pit": [], "latency_ms": []}
    pit_rng = np.random.default_rng(0)
    for i, sample in enumerate(tqdm(dataset.iter_shards(), total=total, desc=f"evaluate {dataset.split}",
                                    unit="pair", disable=not progress, dynamic_ncols=True)):
        if i >= total:
            break
        patch = resample_patch(sample["satellite"], data_mpp, est.patch_px, est.patch_mpp)
        yaw_prior = sample["yaw_prior_enu_rad"]
        prior = Prior(0.0, 0.0, None if not math.isfinite(yaw_prior) else yaw_prior)
        res = est.estimate(sample["ground"], sample["K"], patch, prior)
        truth = (float(sample["offset_en_m"][0]), float(sample["offset_en_m"][1]), float(sample["yaw_enu_rad"]))
        out["pose"].append((res.east_m, res.north_m, res.yaw_enu_rad))
        out["volume_pose"].append(res.volume.argmax_pose())
        out["truth"].append(truth)
        vol = res.volume
        nll = truth_nll(vol.log_likelihood, vol.yaw_bins_rad, vol.cell_m, *truth, wraps=vol.wraps_yaw)
        out["nll"].append(nll)
        cell = truth_cell(vol.shape, vol.yaw_bins_rad, vol.cell_m, *truth, wraps=vol.wraps_yaw)
        out["pit"].append(randomized_pit(vol.log_likelihood, cell, float(pit_rng.random())))
        out["latency_ms"].append(res.latency_ms)
    if not out["pose"]:
        raise InputError(f"split {dataset.split} of {dataset.path} holds no pairs")
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def _run_checkpoint(ckpt: Path, dataset: PairDataset, max_pairs: int | None, progress: bool) -> dict:
    import torch

    from cvgl_ros.models.config import config_from_dict
    from cvgl_ros.train.checkpoint import load_model
    from cvgl_ros.train.loop import evaluate

    model, state = load_model(ckpt)
    config = config_from_dict(state["config"])
    torch.set_num_threads(max(1, config.train.threads))
    return evaluate(model, dataset, config, max_pairs=max_pairs, progress=progress)


def evaluate_model(model_path: str | Path, data: str | Path, split: str, *, max_pairs: int | None = None,
                   progress: bool = True) -> dict:
    """Metrics of a checkpoint or .onnx on one split (see the module docstring)."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise InputError(f"no such model: {model_path}")
    dataset = PairDataset(data, split)
    if model_path.suffix == ".onnx":
        result = _run_onnx(model_path, dataset, max_pairs, progress)
    else:
        result = _run_checkpoint(model_path, dataset, max_pairs, progress)
    metrics = pose_metrics(result["pose"], result["truth"])
    report = {
        "model": str(model_path), "data": str(data), "split": split, "count": metrics["count"],
        "table1": table1_row(metrics), "metrics": metrics,
        "volume_best_cell_metrics": pose_metrics(result["volume_pose"], result["truth"]),
        "nll_mean": float(np.mean(result["nll"])), "nll_median": float(np.median(result["nll"])),
        # Calibration of the volume: how often the truth lies in the smallest region holding
        # 50 / 90 % of the probability (50 / 90 % for a calibrated volume).
        **calibration(result["pit"]),
    }
    if "latency_ms" in result:
        report["latency_ms_median"] = float(np.median(result["latency_ms"]))
    report["_errors"] = pose_errors(result["pose"], result["truth"])
    report["_volume_position_m"] = pose_errors(result["volume_pose"], result["truth"])["position_m"]
    return report


def write_report(report: dict, out: str | Path) -> tuple[Path, Path]:
    """Write the JSON report and its error-CDF PNG (`<stem>_cdf.png`) beside it."""
    out = Path(out)
    png = out.with_name(out.stem + "_cdf.png")
    plot_error_cdf(report["_errors"], png, title=f"{Path(report['model']).name} on {report['split']}",
                   extra={"volume best cell": report["_volume_position_m"]})
    public = json_safe({k: v for k, v in report.items() if not k.startswith("_")})
    public["cdf_png"] = png.name
    write_json(out, public)
    return out, png


def json_safe(obj):
    """Non-finite floats -> None (JSON has no Inf/NaN)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
