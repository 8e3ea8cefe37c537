"""One epoch of training and one pass of evaluation: the reusable core of `cvgl train`.

Both take a model, a pair data set split and the configuration, so the federated trainer
can run them per vehicle:

    stats = train_one_epoch(model, PairDataset(DS, "train"), optimizer, config, epoch)
    result = evaluate(model, PairDataset(DS, "same_area"), config)   # poses + truth, numpy

Randomness (shuffling, augmentation, the refinement's starting poses) comes from
`epoch_rng(seed, epoch)` and `torch.manual_seed`, so an epoch is reproducible on its own
and a resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from cvgl_ros.datasets.pairs import PairDataset
from cvgl_ros.errors import InputError
from cvgl_ros.models.config import FullConfig
from cvgl_ros.models.losses import total_loss
from cvgl_ros.models.pose_network import PoseNet
from cvgl_ros.train.batches import iterate_batches


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch)])


def loss_weights(config: FullConfig, epoch: int) -> dict:
    """alpha, beta, kappa of seed 002 Eq. 5/7 for an epoch (0-based); beta and kappa switch."""
    t = config.train
    late = epoch >= t.switch_epoch
    return {"alpha": t.alpha_confidence, "beta": t.beta_position_late if late else t.beta_position,
            "kappa": t.kappa_late if late else t.kappa, "nll_weight": t.nll_weight,
            "matching_weight": t.matching_weight}


def noisy_truth(batch: dict, noise_m: float, noise_deg: float, generator: torch.Generator) -> torch.Tensor:
    n = batch["yaw_enu_rad"].shape[0]
    offset = batch["offset_en_m"] + torch.randn(n, 2, generator=generator) * noise_m
    yaw = batch["yaw_enu_rad"] + torch.randn(n, generator=generator) * math.radians(noise_deg)
    return torch.cat((offset, yaw.unsqueeze(1)), dim=1)


def train_one_epoch(model: PoseNet, dataset: PairDataset, optimizer: torch.optim.Optimizer, config: FullConfig,
                    epoch: int, *, max_pairs: int | None = None, scheduler=None, progress: bool = True,
                    on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Train for one pass over (the first `max_pairs` of) `dataset`; returns the mean of each loss term."""
    t = config.train
    torch.manual_seed(t.seed * 1000 + epoch)
    generator = torch.Generator().manual_seed(t.seed * 1000 + epoch)
    rng = epoch_rng(t.seed, epoch)
    weights = loss_weights(config, epoch)
    model.train()
    total = len(dataset) if max_pairs is None else min(max_pairs, len(dataset))
    sums: dict[str, float] = {}
    steps = 0
    bar = tqdm(total=total, desc=f"epoch {epoch + 1}", unit="pair", disable=not progress, dynamic_ncols=True)
    for batch in iterate_batches(dataset, model.config, t.batch_size, max_pairs=max_pairs, rng=rng,
                                 yaw_prior_noise_deg=t.yaw_prior_noise_deg, photometric_jitter=t.photometric_jitter,
                                 drop_last=True):
        n = batch["yaw_enu_rad"].shape[0]
        init = noisy_truth(batch, t.refine_init_noise_m, t.refine_init_noise_deg, generator)
        use_truth = torch.rand(n, generator=generator) >= t.refine_init_from_volume
        pred = model(batch["ground"], batch["satellite"], batch["intrinsics"], batch["camera_height_m"],
                     batch["yaw_prior_rad"], init_pose=init, init_mask=use_truth)
        losses = total_loss(pred, batch["offset_en_m"], batch["yaw_enu_rad"], model.bev_xy, model.config.volume_cell_m,
                            **weights)
        if not torch.isfinite(losses["loss"]):
            raise RuntimeError(f"non-finite loss at epoch {epoch + 1} step {steps}: "
                               + ", ".join(f"{k}={float(v):.3g}" for k, v in losses.items()))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        steps += 1
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        with torch.no_grad():
            err = torch.linalg.vector_norm(pred["pose"][:, :2] - batch["offset_en_m"], dim=1)
        sums["position_error_m"] = sums.get("position_error_m", 0.0) + float(err.median())
        bar.update(n)
        if steps % max(1, t.log_every) == 0 or steps == 1:
            bar.set_postfix(loss=f"{sums['loss'] / steps:.2f}", nll=f"{sums['nll'] / steps:.2f}",
                            err=f"{sums['position_error_m'] / steps:.2f}m")
        if on_step is not None:
            on_step(steps, {k: float(v) for k, v in losses.items()})
    bar.close()
    if steps == 0:
        raise InputError(f"no training step: {total} pairs is fewer than one batch of {t.batch_size}")
    return {k: v / steps for k, v in sums.items()} | {"steps": steps, "pairs": steps * t.batch_size}


@torch.no_grad()
def evaluate(model: PoseNet, dataset: PairDataset, config: FullConfig, *, max_pairs: int | None = None,
             batch_size: int = 16, progress: bool = True) -> dict:
    """Run the model on a split (dataset yaw priors, no augmentation).

    Returns numpy arrays: `pose` (N, 3) refined (east, north offset from the patch centre,
    ENU yaw), `volume_pose` (N, 3) the volume's best cell, `truth` (N, 3), `nll` (N,) of the
    truth under the volume, `pit` (N,) its randomized probability integral transform under the
    volume (uniform when calibrated, `pose_metrics.randomized_pit`), `index` (N,).
    """
    from cvgl_ros.evaluation.pose_metrics import randomized_pit, truth_cell
    from cvgl_ros.models.losses import volume_nll

    model.eval()
    total = len(dataset) if max_pairs is None else min(max_pairs, len(dataset))
    out = {"pose": [], "volume_pose": [], "truth": [], "nll": [], "pit": [], "index": []}
    pit_rng = np.random.default_rng(0)
    bar = tqdm(total=total, desc=f"evaluate {dataset.split}", unit="pair", disable=not progress, dynamic_ncols=True)
    for batch in iterate_batches(dataset, model.config, batch_size, max_pairs=max_pairs):
        pred = model(batch["ground"], batch["satellite"], batch["intrinsics"], batch["camera_height_m"],
                     batch["yaw_prior_rad"])
        truth = torch.cat((batch["offset_en_m"], batch["yaw_enu_rad"].unsqueeze(1)), dim=1)
        for i in range(truth.shape[0]):
            nll = float(volume_nll(pred["log_volume"][i:i + 1], pred["yaw_bins"][i:i + 1], truth[i:i + 1, :2],
                                   truth[i:i + 1, 2], model.config.volume_cell_m))
            out["nll"].append(nll)
            cell = truth_cell(tuple(pred["log_volume"].shape[1:]), pred["yaw_bins"][i].numpy(),
                              model.config.volume_cell_m, *(float(v) for v in truth[i]), wraps=False)
            out["pit"].append(randomized_pit(pred["log_volume"][i].numpy(), cell, float(pit_rng.random())))
        out["pose"].append(pred["pose"].numpy())
        out["volume_pose"].append(pred["volume_pose"].numpy())
        out["truth"].append(truth.numpy())
        out["index"].append(batch["index"].numpy())
        bar.update(truth.shape[0])
    bar.close()
    if not out["pose"]:
        raise InputError(f"split {dataset.split} of {dataset.path} holds no pairs")
    return {k: (np.asarray(v) if k in ("nll", "pit") else np.concatenate(v)) for k, v in out.items()}
