"""A small residual CNN with a two-level feature pyramid, shared by both encoders.

Scaled-down stand-in for the ResNet18 feature extractors of "Learning Dense Flow Field for
Highly-accurate Cross-view Camera Localization": a stride-2 stem and residual stage, a
stride-4 residual stage, and a top-down merge that returns stride-2 and stride-4 maps
(the paper works at 1/8 of larger inputs; here the inputs are already downscaled).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (projected) skip, then ReLU."""

    def __init__(self, in_dim: int, out_dim: int, stride: int = 1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        # A strided 4x4 kernel and a 2x2 average-pool skip keep output cell j centred at input
        # 2j + 0.5, so the cells of every stride stay where the grid convention puts them.
        self.conv1 = (nn.Conv2d(in_dim, out_dim, 3, 1, 1, bias=False) if stride == 1
                      else nn.Conv2d(in_dim, out_dim, 4, 2, 1, bias=False))
        self.norm1 = nn.BatchNorm2d(out_dim)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_dim)
        self.skip = None
        if stride != 1 or in_dim != out_dim:
            pool = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
            self.skip = nn.Sequential(pool, nn.Conv2d(in_dim, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class PyramidBackbone(nn.Module):
    """RGB (B, 3, H, W) in [0, 1] -> (stride-2 map with channels[1], stride-4 map with channels[2])."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, channels: tuple[int, int, int]):
        super().__init__()
        c0, c1, c2 = channels
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 4, 2, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        self.stage2 = ResidualBlock(c0, c1, 1)
        self.stage4 = ResidualBlock(c1, c2, 2)
        self.top_down = nn.Conv2d(c2, c1, 1)
        self.merge2 = nn.Sequential(nn.Conv2d(c1, c1, 3, 1, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True))

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (rgb - self.mean) / self.std
        x2 = self.stage2(self.stem(x))                      # (B, c1, H/2, W/2)
        x4 = self.stage4(x2)                                # (B, c2, H/4, W/4)
        up = F.interpolate(self.top_down(x4), size=x2.shape[-2:], mode="bilinear", align_corners=False)
        fine = self.merge2(up + x2)                         # (B, c1, H/2, W/2)
        return fine, x4
