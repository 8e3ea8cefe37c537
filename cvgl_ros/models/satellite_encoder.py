"""Satellite encoder CNN_s: north-up feature maps of the patch at strides 2 and 4.

The stride-2 map (`fine_cell_m`) feeds the dense-flow correlation pyramid, the stride-4 map
(`volume_cell_m`) the coarse (yaw, y, x) likelihood volume. Cell (r, c) of either map is
centred where `cvgl_ros.geo.grid` puts it for that cell size.
"""
from __future__ import annotations

import torch
from torch import nn

from cvgl_ros.models.backbone import PyramidBackbone


class SatelliteEncoder(nn.Module):
    """(B, 3, S, S) RGB in [0, 1] -> fine (B, D, S/2, S/2), coarse (B, D, S/4, S/4)."""

    def __init__(self, channels: tuple[int, int, int], feature_dim: int):
        super().__init__()
        self.backbone = PyramidBackbone(channels)
        self.fine_head = nn.Conv2d(channels[1], feature_dim, 1)
        self.coarse_head = nn.Conv2d(channels[2], feature_dim, 1)

    def forward(self, satellite: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fine, coarse = self.backbone(satellite)
        return self.fine_head(fine), self.coarse_head(coarse)
