"""Ground-view encoder CNN_g: matching features and context features of the camera image.

"Learning Dense Flow Field for Highly-accurate Cross-view Camera Localization" (§3.1-3.2)
uses a feature encoder and a separate context encoder of the same architecture on the
ground image; to fit 2 CPU cores both heads share one backbone here (configurable widths).
"""
from __future__ import annotations

import torch
from torch import nn

from cvgl_ros.models.backbone import PyramidBackbone


class GroundEncoder(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> features (B, feature_dim, H/2, W/2), context (B, context_dim, H/2, W/2)."""

    def __init__(self, channels: tuple[int, int, int], feature_dim: int, context_dim: int):
        super().__init__()
        self.backbone = PyramidBackbone(channels)
        self.feature_head = nn.Conv2d(channels[1], feature_dim, 1)
        self.context_head = nn.Conv2d(channels[1], context_dim, 1)

    def forward(self, ground: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fine, _ = self.backbone(ground)
        return self.feature_head(fine), self.context_head(fine)
