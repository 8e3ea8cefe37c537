"""The BEV RefineBlock of "Learning Dense Flow Field for Highly-accurate Cross-view Camera
Localization" (§3.1, Eq. 2): F_g2s = RefineBlock(F_g, p').

A 7x7 convolution for a large receptive field (objects above the ground plane are smeared
by the flat-ground homography), a 3x3 residual block for local detail, and a 1x1
convolution mixing channels. The block sees the projected features, the visibility mask
and the normalized BEV coordinates p' of every cell.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cvgl_ros.models.frames import bev_cell_centres


class RefineBlock(nn.Module):
    """(BEV features (B, C, R, W), mask (B, 1, R, W)) -> refined BEV features (B, C, R, W)."""

    def __init__(self, dim: int, rows: int, cols: int, cell_m: float):
        super().__init__()
        xy = bev_cell_centres(rows, cols, cell_m)
        scale = xy.abs().amax(dim=(0, 1))
        self.register_buffer("coords", (xy / scale).permute(2, 0, 1).unsqueeze(0), persistent=False)
        self.conv7 = nn.Conv2d(dim + 3, dim, 7, 1, 3)
        self.res1 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.res2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, bev: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        coords = self.coords.expand(bev.shape[0], -1, -1, -1)
        x = F.relu(self.conv7(torch.cat((bev, mask, coords), dim=1)))
        x = F.relu(x + self.res2(F.relu(self.res1(x))))
        return self.conv1(x)
