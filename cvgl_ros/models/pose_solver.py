"""Confidence-weighted least-squares pose from dense matches (Procrustes).

"Learning Dense Flow Field for Highly-accurate Cross-view Camera Localization" (§3.3,
Eq. 3 and appendix Eq. 8-12) finds yaw and translation minimizing
sum_i S_i |R p'_i + t - p^_i|^2 by centring both point sets on their weighted centroids and
taking R from the SVD of H = sum_i S_i q'_i q^_i^T. In the plane the maximizer of
tr(R H) over proper rotations has a closed form,

    yaw = atan2(sum_i S_i (q'_i x q^_i), sum_i S_i (q'_i . q^_i)),    t = g^ - R g',

which equals the SVD solution with the determinant fixed to +1 (a test checks it against
numpy's SVD); it is differentiable and exports to ONNX without an SVD operator.
"""
from __future__ import annotations

import torch


def weighted_procrustes(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor, eps: float = 1e-6):
    """src, dst (B, N, 2); weights (B, N) >= 0 -> (yaw (B,), t (B, 2)) with R(yaw) src + t ~ dst."""
    w = weights.unsqueeze(-1)
    w_sum = w.sum(dim=1, keepdim=True).clamp(min=eps)
    g_src = (w * src).sum(dim=1, keepdim=True) / w_sum
    g_dst = (w * dst).sum(dim=1, keepdim=True) / w_sum
    q_src, q_dst = src - g_src, dst - g_dst
    cross = (weights * (q_src[..., 0] * q_dst[..., 1] - q_src[..., 1] * q_dst[..., 0])).sum(dim=1)
    dot = (weights * (q_src[..., 0] * q_dst[..., 0] + q_src[..., 1] * q_dst[..., 1])).sum(dim=1)
    yaw = torch.atan2(cross, dot + 1e-9)
    c, s = torch.cos(yaw), torch.sin(yaw)
    gx, gy = g_src[:, 0, 0], g_src[:, 0, 1]
    t = g_dst[:, 0, :] - torch.stack((c * gx - s * gy, s * gx + c * gy), dim=-1)
    return yaw, t
