"""Global cross-view descriptors for retrieval: a ground encoder g(.) and a satellite encoder f(.).

After "Cross-View Matching for Vehicle Localization by Learning Geographically Local
Representations" (seed 001, §III-A/B). Both branches map an image to an L2-normalized
descriptor, and a ground query G matches the satellite patch S whose descriptor is nearest:

    d(S, G) = || f(S) - g(G) ||_2^2  = 2 - 2 <f(S), g(G)>      (unit vectors)

The paper's baseline is SAFA: a VGG16 feature extractor and 8 spatial-aware feature
aggregation (SAFA) modules per branch, 4096-dimensional descriptors, no weight sharing.
The aggregation, on a feature map F of C channels and P = H * W positions:

    m(p)     = max_c F(c, p)                           channel max-pool, (P,)
    A_k      = W2_k relu(W1_k m + b1_k) + b2_k          k = 1..K, each (P,)   (two FC layers)
    v_k(c)   = sum_p A_k(p) F(c, p)                     (C,)
    desc     = [v_1, ..., v_K] / || [v_1, ..., v_K] ||  (K * C,)

Scaled for 2 CPU cores: VGG16 becomes four strided conv blocks (channels `channels`, a total
stride of 16; the first two a single conv, the last two two convs), K = `attention_maps`
(paper: 8) and C = channels[-1], so the default descriptor has 8 * 64 = 512 dimensions (paper:
4096). The inputs follow `cvgl sim pairs`
halved: a ground image of 64 x 256 (pairs: 128 x 512) and a north-up satellite patch of
128 px at 0.4 m/px (pairs: 256 px at 0.2 m/px, the same 51.2 m; the paper's RobotCar
patches cover 55.4 m). The patch is used north-up, not polar-transformed: the paper does the
same with RobotCar's forward camera, and augments the patches by random multiples of 90 deg
(`cvgl_ros.train.retrieval`).

Dropout before the aggregation keeps 0.8 of the features in training (the paper's keep rate).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from cvgl_ros.config import Settings, setting
from cvgl_ros.errors import InputError

STRIDE_PER_BLOCK = 2
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class DescriptorConfig(Settings):
    """Shape of the two encoders; the paper's values are in the descriptions where scaled."""

    what: ClassVar[str] = "descriptor setting"

    image_hw: tuple[int, int] = setting((64, 256), "ground image rows, cols (pairs' 128x512, halved)")
    patch_px: int = setting(128, "satellite patch side, pixels", ge=16)
    patch_mpp: float = setting(0.4, "satellite metres per pixel (pairs' 0.2 m, halved: the same 51.2 m)", gt=0.0)
    channels: tuple[int, ...] = setting((16, 32, 64, 64), "channels of the strided conv blocks, each halving "
                                        "the resolution (paper: VGG16)")
    single_conv_blocks: int = setting(2, "the first blocks are one strided conv, the rest add a second conv "
                                      "(halves the time of the full-resolution layers)", ge=0)
    attention_maps: int = setting(8, "K spatial-aware aggregation maps per branch (paper: 8)", ge=1, le=64)
    attention_hidden_fraction: float = setting(0.5, "hidden width of each map's two FC layers, a fraction of "
                                               "the positions (SAFA: 1/2)", gt=0.0, le=4.0)
    dropout: float = setting(0.2, "dropout of the features before the aggregation (paper: keep rate 0.8)",
                             ge=0.0, lt=1.0)

    @property
    def stride(self) -> int:
        return STRIDE_PER_BLOCK ** len(self.channels)

    @property
    def descriptor_dim(self) -> int:
        return self.attention_maps * self.channels[-1]

    def feature_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        return image_hw[0] // self.stride, image_hw[1] // self.stride

    def check(self) -> None:
        """Both inputs are whole multiples of the total stride and the channel list is usable."""
        if not 1 <= len(self.channels) <= 6 or any(c < 1 for c in self.channels):
            raise InputError(f"descriptor setting channels = {list(self.channels)}: 1 to 6 positive widths")
        for name, hw in (("image_hw", self.image_hw), ("patch_px", (self.patch_px, self.patch_px))):
            if hw[0] < self.stride or hw[1] < self.stride or hw[0] % self.stride or hw[1] % self.stride:
                raise InputError(f"descriptor setting {name} = {hw}: must be positive multiples of the "
                                 f"total stride {self.stride}")


class SpatialAwareAggregation(nn.Module):
    """SAFA: (B, C, H, W) features -> (B, K * C) descriptor (unnormalized); see the module docstring."""

    def __init__(self, positions: int, maps: int, hidden_fraction: float):
        super().__init__()
        hidden = max(1, int(round(positions * hidden_fraction)))
        # K independent two-layer MLPs over the P positions, as batched weights: (K, P, hidden), (K, hidden, P).
        self.w1 = nn.Parameter(torch.randn(maps, positions, hidden) * (2.0 / positions) ** 0.5)
        self.b1 = nn.Parameter(torch.full((maps, 1, hidden), 0.1))
        self.w2 = nn.Parameter(torch.randn(maps, hidden, positions) * (1.0 / hidden) ** 0.5)
        self.b2 = nn.Parameter(torch.full((maps, 1, positions), 0.1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c = features.shape[:2]
        flat = features.flatten(2)                                   # (B, C, P)
        pooled = flat.amax(dim=1)                                    # (B, P)
        hidden = F.relu(torch.einsum("bp,kph->bkh", pooled, self.w1) + self.b1.transpose(0, 1))
        attention = torch.einsum("bkh,khp->bkp", hidden, self.w2) + self.b2.transpose(0, 1)   # (B, K, P)
        return torch.einsum("bkp,bcp->bkc", attention, flat).reshape(b, -1)


def conv_block(in_dim: int, out_dim: int, second_conv: bool) -> nn.Sequential:
    """A stride-2 conv3x3-BN-ReLU, followed (`second_conv`) by a conv3x3-BN-ReLU."""
    layers = [nn.Conv2d(in_dim, out_dim, 3, 2, 1, bias=False), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True)]
    if second_conv:
        layers += [nn.Conv2d(out_dim, out_dim, 3, 1, 1, bias=False), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DescriptorEncoder(nn.Module):
    """One branch: (B, 3, H, W) RGB in [0, 1] -> (B, K * C) unit descriptor."""

    def __init__(self, config: DescriptorConfig, input_hw: tuple[int, int]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        widths = (3, *config.channels)
        self.backbone = nn.Sequential(*(conv_block(a, b, k >= config.single_conv_blocks)
                                        for k, (a, b) in enumerate(zip(widths[:-1], widths[1:]))))
        self.dropout = nn.Dropout(config.dropout)
        h, w = config.feature_hw(input_hw)
        self.aggregation = SpatialAwareAggregation(h * w, config.attention_maps, config.attention_hidden_fraction)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        features = self.dropout(self.backbone((rgb - self.mean) / self.std))
        return F.normalize(self.aggregation(features), dim=1, eps=1e-12)


class DescriptorNet(nn.Module):
    """The two branches, without weight sharing (as SAFA): `ground(G)` is g, `satellite(S)` is f."""

    def __init__(self, config: DescriptorConfig):
        super().__init__()
        self.config = config
        self.ground = DescriptorEncoder(config, tuple(config.image_hw))
        self.satellite = DescriptorEncoder(config, (config.patch_px, config.patch_px))

    def forward(self, ground: torch.Tensor, satellite: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g(G) (B, D), f(S) (B, D)), both unit vectors."""
        return self.ground(ground), self.satellite(satellite)


def descriptor_distances(satellite: torch.Tensor, ground: torch.Tensor) -> torch.Tensor:
    """d[i, j] = || f(S_i) - g(G_j) ||^2 for unit descriptors, (N, N), via 2 - 2 <f, g> (clamped at 0)."""
    return (2.0 - 2.0 * satellite @ ground.T).clamp_min(0.0)
