"""Training objective of "Learning Dense Flow Field for Highly-accurate Cross-view Camera
Localization" (§3.4) plus a calibration term for the particle filter.

    L = beta * L_p + sum_l (L_m^l + alpha * L_c^l) + lambda * L_nll                 (Eq. 7 + NLL)

* L_m (Eq. 4): L1 distance between predicted and true matches of the visible BEV cells,
  metres, averaged over cells (the paper sums; the mean keeps the scale batch-independent).
  The true match of BEV cell p' is R(yaw_gt) p' + t_gt.
* L_c (Eq. 5): S_i / (1 + exp(-d~_i / kappa)) + (1 - S_i) / (1 + exp(d~_i / kappa)), where
  d~ standardizes the match errors d over the visible cells of the batch; it pushes the
  confidence S up where the match is good and down where it is bad.
* L_p (Eq. 6): |yaw_gt - yaw| (degrees) + |t_gt - t|_1 (metres) of the final Procrustes pose.
* L_nll: -log of the volume's probability at the true pose, trilinear in (yaw, y, x), so
  that the log-likelihood volume the filter multiplies with GNSS is calibrated.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from cvgl_ros.models.frames import vehicle_to_map


def true_matches(bev_xy: torch.Tensor, offset_en: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    """(P, 2) BEV cells, (B, 2) true offsets, (B,) true yaws -> (B, P, 2) true satellite matches."""
    return vehicle_to_map(bev_xy.unsqueeze(0), yaw.reshape(-1, 1), offset_en.unsqueeze(1))


def matching_loss(matches: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    err = (matches - target).abs().sum(dim=-1)                        # (B, P)
    return (err * visible).sum() / visible.sum().clamp(min=1.0)


def confidence_loss(confidence: torch.Tensor, matches: torch.Tensor, target: torch.Tensor,
                    visible: torch.Tensor, kappa: float) -> torch.Tensor:
    with torch.no_grad():
        d = torch.linalg.vector_norm(matches - target, dim=-1)       # (B, P)
        n = visible.sum().clamp(min=2.0)
        mean = (d * visible).sum() / n
        std = torch.sqrt(((d - mean) ** 2 * visible).sum() / (n - 1)).clamp(min=1e-6)
        d_std = (d - mean) / std
    term = confidence * torch.sigmoid(d_std / kappa) + (1 - confidence) * torch.sigmoid(-d_std / kappa)
    return (term * visible).sum() / visible.sum().clamp(min=1.0)


def position_loss(pose: torch.Tensor, offset_en: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    yaw_err = torch.remainder(pose[:, 2] - yaw + math.pi, 2 * math.pi) - math.pi
    return (torch.rad2deg(yaw_err).abs() + (pose[:, :2] - offset_en).abs().sum(dim=-1)).mean()


def volume_nll(log_volume: torch.Tensor, yaw_bins: torch.Tensor, offset_en: torch.Tensor, yaw: torch.Tensor,
               cell_m: float) -> torch.Tensor:
    """Mean -log p(truth) with p trilinearly interpolated between cells (truth clamped into the grid)."""
    b, k, h, w = log_volume.shape
    step = (yaw_bins[:, -1] - yaw_bins[:, 0]) / max(k - 1, 1)
    yaw_rel = torch.remainder(yaw - yaw_bins[:, 0] + math.pi, 2 * math.pi) - math.pi
    z = (yaw_rel / step).clamp(0, k - 1) / max(k - 1, 1) * 2 - 1
    col = (offset_en[:, 0] / cell_m + (w - 1) / 2).clamp(0, w - 1) / (w - 1) * 2 - 1
    row = ((h - 1) / 2 - offset_en[:, 1] / cell_m).clamp(0, h - 1) / (h - 1) * 2 - 1
    grid = torch.stack((col, row, z), dim=-1).reshape(b, 1, 1, 1, 3)
    prob = F.grid_sample(log_volume.exp().unsqueeze(1), grid, mode="bilinear", align_corners=True).reshape(b)
    return -torch.log(prob + 1e-12).mean()


def total_loss(pred: dict, offset_en: torch.Tensor, yaw: torch.Tensor, bev_xy: torch.Tensor, cell_m: float, *,
               alpha: float, beta: float, kappa: float, nll_weight: float, matching_weight: float = 1.0) -> dict:
    """All terms of the objective; `loss` is what to back-propagate."""
    target = true_matches(bev_xy, offset_en, yaw)
    visible = pred["bev_mask"]
    l_m = sum(matching_loss(m, target, visible) for m in pred["matches"])
    l_c = sum(confidence_loss(c, m, target, visible, kappa) for c, m in zip(pred["confidences"], pred["matches"]))
    l_p = position_loss(pred["pose"], offset_en, yaw)
    l_nll = volume_nll(pred["log_volume"], pred["yaw_bins"], offset_en, yaw, cell_m)
    loss = beta * l_p + matching_weight * l_m + alpha * l_c + nll_weight * l_nll
    return {"loss": loss, "matching": l_m.detach(), "confidence": l_c.detach(), "position": l_p.detach(),
            "nll": l_nll.detach()}
