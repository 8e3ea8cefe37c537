"""Global cross-view descriptors for retrieval: a ground encoder g(.) and a satellite encoder f(.).

After "Cross-View Matching for Vehicle Localization by Learning Geographically Local
Representations" (seed 001, §III-A/B). Both branches map an image to an L2-normalized
descriptor, and a ground query G matches the satellite patch S whose descriptor is nearest:

    d(S, G) = || f(S) - g(G) ||_2^2  = 2 - 2 <f(S), g(G)>      (unit vectors)

The paper's baseline is SAFA: a VGG16 feature extractor on a polar-transformed aerial image
and on the ground panorama, and 8 spatial-aware feature aggregation (SAFA) modules per branch,
4096-dimensional descriptors, no weight sharing. The aggregation, on a feature map F of C
channels and P positions:

    m(p)     = max_c F(c, p)                           channel max-pool, (P,)
    A_k      = W2_k relu(W1_k m + b1_k) + b2_k          k = 1..K, each (P,)   (two FC layers)
    v_k(c)   = sum_p A_k(p) F(c, p)                     (C,)

Here the descriptors are of absolute azimuth sectors (`cvgl_ros.retrieval.sectors` says why
and how: a SAFA over the whole image measured at chance, trained from scratch): SAFA runs per
feature column, over its H positions (the range rows of the polar satellite image; the rows of
the camera image), with K = `attention_maps` maps shared by all columns, and a linear layer
maps the column's [v_1 .. v_K] (K * C) to `sector_dim` numbers:

* satellite f: the polar image (R x P) -> A = P / stride columns = the A sectors, each
  L2-normalized, concatenated, over sqrt(A): (A * sector_dim,);
* ground g: the camera image and its sector weights (B, W', A) (from the yaw and K) -> W'
  columns, averaged into the sectors by the weights, visible sectors normalized, invisible
  ones 0, over sqrt(visible): the same size, a unit vector.

Scaled for 2 CPU cores: VGG16 becomes four strided conv blocks (channels `channels`, a total
stride of 16; the first two a single conv, the last two two convs); the default descriptor has
16 sectors * 16 = 256 dimensions (paper: 4096). The inputs follow `cvgl sim pairs` halved: a
ground image of 64 x 256 (pairs: 128 x 512) and a north-up satellite patch of 128 px at
0.4 m/px (pairs: 256 px at 0.2 m/px, the same 51.2 m; the paper's RobotCar patches cover
55.4 m), resampled to a 64 x 256 polar image. The paper augments its patches by random multiples
of 90 deg; here that is a roll of the polar columns with the yaw turned alike
(`cvgl_ros.train.retrieval`).

Dropout before the aggregation keeps 0.8 of the features in training (the paper's keep rate).
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from cvgl_ros.config import Settings, setting
from cvgl_ros.errors import InputError
from cvgl_ros.retrieval.sectors import VISIBLE_WEIGHT

STRIDE_PER_BLOCK = 2
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class DescriptorConfig(Settings):
    """Shape of the two encoders; the paper's values are in the descriptions where scaled."""

    what: ClassVar[str] = "descriptor setting"

    image_hw: tuple[int, int] = setting((64, 256), "ground image rows, cols (pairs' 128x512, halved)")
    patch_px: int = setting(128, "satellite patch side, pixels", ge=16)
    patch_mpp: float = setting(0.4, "satellite metres per pixel (pairs' 0.2 m, halved: the same 51.2 m)", gt=0.0)
    polar_hw: tuple[int, int] = setting((64, 256), "polar satellite image: range rows, bearing columns")
    channels: tuple[int, ...] = setting((16, 32, 64, 64), "channels of the strided conv blocks, each halving "
                                        "the resolution (paper: VGG16)")
    single_conv_blocks: int = setting(2, "the first blocks are one strided conv, the rest add a second conv "
                                      "(halves the time of the full-resolution layers)", ge=0)
    attention_maps: int = setting(4, "K spatial-aware aggregation maps per column (paper: 8 per image)", ge=1, le=64)
    attention_hidden_fraction: float = setting(2.0, "hidden width of each map's two FC layers, a multiple of the "
                                               "column's positions (SAFA: 1/2 of the image's)", gt=0.0, le=8.0)
    sector_dim: int = setting(16, "numbers per azimuth sector", ge=1, le=512)
    dropout: float = setting(0.2, "dropout of the features before the aggregation (paper: keep rate 0.8)",
                             ge=0.0, lt=1.0)

    @property
    def stride(self) -> int:
        return STRIDE_PER_BLOCK ** len(self.channels)

    @property
    def sectors(self) -> int:
        return self.polar_hw[1] // self.stride

    @property
    def ground_columns(self) -> int:
        return self.image_hw[1] // self.stride

    @property
    def descriptor_dim(self) -> int:
        return self.sectors * self.sector_dim

    def feature_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        return image_hw[0] // self.stride, image_hw[1] // self.stride

    def check(self) -> None:
        """Both inputs are whole multiples of the total stride and the channel list is usable."""
        if not 1 <= len(self.channels) <= 6 or any(c < 1 for c in self.channels):
            raise InputError(f"descriptor setting channels = {list(self.channels)}: 1 to 6 positive widths")
        for name, hw in (("image_hw", self.image_hw), ("polar_hw", self.polar_hw)):
            if hw[0] < self.stride or hw[1] < self.stride or hw[0] % self.stride or hw[1] % self.stride:
                raise InputError(f"descriptor setting {name} = {hw}: must be positive multiples of the "
                                 f"total stride {self.stride}")
        if self.sectors % 4:
            raise InputError(f"descriptor setting polar_hw = {self.polar_hw}: {self.sectors} sectors is not a "
                             "multiple of 4 (the 90 deg rotations of training)")


class ColumnAggregation(nn.Module):
    """SAFA per feature column: (B, C, H, W) -> (B, W, sector_dim); see the module docstring."""

    def __init__(self, channels: int, rows: int, maps: int, hidden_fraction: float, out_dim: int):
        super().__init__()
        hidden = max(1, int(round(rows * hidden_fraction)))
        self.maps, self.rows = maps, rows
        self.attention = nn.Sequential(nn.Linear(rows, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, rows * maps))
        self.project = nn.Linear(maps * channels, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        pooled = features.amax(dim=1).transpose(1, 2)                           # (B, W, H)
        attention = self.attention(pooled).view(b, w, self.maps, h)            # (B, W, K, H)
        v = torch.einsum("bwkh,bchw->bwkc", attention, features).flatten(2)    # (B, W, K * C)
        return self.project(v)


def conv_block(in_dim: int, out_dim: int, second_conv: bool) -> nn.Sequential:
    """A stride-2 conv3x3-BN-ReLU, followed (`second_conv`) by a conv3x3-BN-ReLU."""
    layers = [nn.Conv2d(in_dim, out_dim, 3, 2, 1, bias=False), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True)]
    if second_conv:
        layers += [nn.Conv2d(out_dim, out_dim, 3, 1, 1, bias=False), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ColumnEncoder(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, W / stride, sector_dim) column features."""

    def __init__(self, config: DescriptorConfig, input_hw: tuple[int, int]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        widths = (3, *config.channels)
        self.backbone = nn.Sequential(*(conv_block(a, b, k >= config.single_conv_blocks)
                                        for k, (a, b) in enumerate(zip(widths[:-1], widths[1:]))))
        self.dropout = nn.Dropout(config.dropout)
        rows, _ = config.feature_hw(input_hw)
        self.aggregation = ColumnAggregation(config.channels[-1], rows, config.attention_maps,
                                             config.attention_hidden_fraction, config.sector_dim)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.aggregation(self.dropout(self.backbone((rgb - self.mean) / self.std)))


class SatelliteEncoder(nn.Module):
    """f: polar image (B, 3, R, P) -> (B, A * sector_dim) unit descriptor."""

    def __init__(self, config: DescriptorConfig):
        super().__init__()
        self.columns = ColumnEncoder(config, tuple(config.polar_hw))
        self.scale = 1.0 / math.sqrt(config.sectors)

    def forward(self, polar: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.columns(polar), dim=2, eps=1e-12).flatten(1) * self.scale


class GroundEncoder(nn.Module):
    """g: camera image (B, 3, H, W) and sector weights (B, W', A) -> (B, A * sector_dim) unit descriptor."""

    def __init__(self, config: DescriptorConfig):
        super().__init__()
        self.columns = ColumnEncoder(config, tuple(config.image_hw))

    def forward(self, rgb: torch.Tensor, sectors: torch.Tensor) -> torch.Tensor:
        columns = self.columns(rgb)                                             # (B, W', d)
        weight = sectors.sum(dim=1)                                             # (B, A)
        pooled = torch.einsum("bwa,bwd->bad", sectors, columns) / weight.clamp_min(1e-6).unsqueeze(2)
        visible = (weight > VISIBLE_WEIGHT).to(pooled.dtype).unsqueeze(2)
        unit = F.normalize(pooled, dim=2, eps=1e-12) * visible
        return unit.flatten(1) / visible.sum(dim=1).clamp_min(1.0).sqrt()


class DescriptorNet(nn.Module):
    """The two branches, without weight sharing (as SAFA): `ground(G, W)` is g, `satellite(S)` is f."""

    def __init__(self, config: DescriptorConfig):
        super().__init__()
        self.config = config
        self.ground = GroundEncoder(config)
        self.satellite = SatelliteEncoder(config)

    def forward(self, ground: torch.Tensor, sectors: torch.Tensor, polar: torch.Tensor):
        """(g(G) (B, D), f(S) (B, D)), both unit vectors."""
        return self.ground(ground, sectors), self.satellite(polar)


def descriptor_distances(satellite: torch.Tensor, ground: torch.Tensor) -> torch.Tensor:
    """d[i, j] = || f(S_i) - g(G_j) ||^2 for unit descriptors, (N, N), via 2 - 2 <f, g> (clamped at 0)."""
    return (2.0 - 2.0 * satellite @ ground.T).clamp_min(0.0)
