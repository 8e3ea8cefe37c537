"""Configuration of the cross-view pose network and its training: `cvgl_ros.config.Settings`
(typed, ranged, unknown keys refused), defaults in code, YAML overrides.

The architecture follows "Learning Dense Flow Field for Highly-accurate Cross-view Camera
Localization" (seed 002): two encoders, ground-to-BEV projection at a fixed camera height,
a RefineBlock, correlation volumes, iterative dense-flow refinement with per-pixel
confidence and a confidence-weighted Procrustes pose. The paper runs ResNet18 features of
256 channels at 1/8 resolution and 12 GRU iterations on GPUs; to train on 2 CPU cores we
scale channels, resolution and iterations down. Every scaled quantity is a field here and
is written into the model card, next to the paper's value in the comment.

Derived grids (all north-up / vehicle-frame metric grids, `cvgl_ros.geo.grid` convention):

* fine satellite features: stride 2 of the patch -> `fine_cell_m = patch_mpp * 2`
* coarse satellite features and the likelihood volume: stride 4 -> `volume_cell_m`
* BEV (vehicle frame, x forward, y left) at `fine_cell_m`, `bev_rows x bev_cols` cells
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

from cvgl_ros.config import Settings, read_yaml, setting
from cvgl_ros.errors import InputError

FINE_STRIDE = 2
COARSE_STRIDE = 4


class PoseNetConfig(Settings):
    """The network's shape; the paper's values are in the descriptions where we scaled them."""

    what: ClassVar[str] = "model setting"

    # Inputs (what the model card promises; the runtime resizes or refuses other sizes).
    image_hw: tuple[int, int] = setting((64, 256), "ground image rows, cols (a 128x512 camera, halved)")
    patch_px: int = setting(128, "satellite patch side, pixels", ge=COARSE_STRIDE)
    patch_mpp: float = setting(0.4, "satellite metres per pixel (0.2 m data, halved)", gt=0.0)
    # Encoders (paper: ResNet18, 256 channels at 1/8 of full-size images).
    ground_channels: tuple[int, int, int] = setting((16, 24, 48), "ground encoder channels: stem, stride-2, "
                                                    "stride-4 stages (paper: ResNet18)")
    satellite_channels: tuple[int, int, int] = setting((16, 24, 48), "satellite encoder channels, the same stages")
    feature_dim: int = setting(32, "matching features, BEV and satellite (paper: 256)", ge=1)
    context_dim: int = setting(32, "context features of the ground view", ge=1)
    # Ground-to-BEV projection (vehicle frame: x forward, y left; camera on the x axis).
    bev_forward_m: float = setting(20.8, "the BEV covers x in (0, bev_forward_m], m", gt=0.0)
    bev_half_width_m: float = setting(12.0, "and y in [-w, w], m", gt=0.0)
    camera_pitch_rad: float = setting(0.0, "downward pitch of the optical axis, rad")
    camera_forward_m: float = setting(0.0, "camera position ahead of the vehicle origin, m")
    # Coarse likelihood volume over (yaw, y, x).
    volume_cells: int = setting(26, "H = W cells of volume_cell_m, centred on the prior", ge=2)
    yaw_window_deg: float = setting(12.0, "the yaw bins span prior +- this, deg", gt=0.0, le=180.0)
    yaw_bins: int = setting(9, "yaw bins of the volume (an export may sample the window with 1)", ge=1)
    # Dense-flow refinement (paper: 12 GRU iterations, 4-level pyramid, lookup radius 4).
    iterations: int = setting(3, "refinement iterations (paper: 12)", ge=1)
    corr_levels: int = setting(2, "correlation pyramid levels (paper: 4)", ge=1)
    corr_window: int = setting(5, "correlation window around the start match, cells", ge=1)
    corr_radius: int = setting(3, "lookup radius around the current match, cells (paper: 4)", ge=1)
    hidden_dim: int = setting(32, "hidden state of the update block (paper: 128)", ge=1)

    # -- derived geometry -------------------------------------------------------------
    @property
    def fine_cell_m(self) -> float:
        return self.patch_mpp * FINE_STRIDE

    @property
    def volume_cell_m(self) -> float:
        return self.patch_mpp * COARSE_STRIDE

    @property
    def fine_px(self) -> int:
        return self.patch_px // FINE_STRIDE

    @property
    def coarse_px(self) -> int:
        return self.patch_px // COARSE_STRIDE

    @property
    def bev_rows(self) -> int:
        return int(round(self.bev_forward_m / self.fine_cell_m))

    @property
    def bev_cols(self) -> int:
        return int(round(2 * self.bev_half_width_m / self.fine_cell_m))

    @property
    def yaw_offsets_rad(self) -> list[float]:
        """Yaw bins relative to the prior: uniform over [-window, +window]."""
        w = math.radians(self.yaw_window_deg)
        if self.yaw_bins == 1:
            return [0.0]
        return [-w + 2 * w * k / (self.yaw_bins - 1) for k in range(self.yaw_bins)]

    def check(self) -> None:
        """The grids fit together: strides divide the inputs, the volume fits the coarse grid."""
        h, w = self.image_hw
        if h % COARSE_STRIDE or w % COARSE_STRIDE or h <= 0 or w <= 0:
            raise InputError(f"image_hw {self.image_hw} must be positive multiples of {COARSE_STRIDE}")
        if self.patch_px % COARSE_STRIDE:
            raise InputError(f"patch_px {self.patch_px} must be a multiple of {COARSE_STRIDE}")
        if self.fine_px % (2 ** (self.corr_levels - 1)):
            raise InputError(f"fine satellite grid {self.fine_px} is not divisible by 2^(corr_levels-1)")
        if (self.coarse_px - self.volume_cells) % 2 or self.volume_cells > self.coarse_px:
            raise InputError(f"volume_cells {self.volume_cells} must be <= {self.coarse_px} with the same parity")
        if self.bev_rows % 2 or self.bev_cols % 2:
            raise InputError("BEV extent must be an even number of fine cells (it is pooled 2x2)")
        if self.corr_radius > self.corr_window:
            raise InputError(f"corr_radius {self.corr_radius} must be <= corr_window {self.corr_window}")


class TrainConfig(Settings):
    """Training hyper-parameters (seed 002 §3.4 and §4.3, scaled to CPU)."""

    what: ClassVar[str] = "training setting"

    seed: int = setting(0, "random seed", ge=0)
    epochs: int = setting(8, "passes over the training pairs (paper: 25)", ge=1)
    batch_size: int = setting(8, "pairs per step (paper: 6)", ge=1)
    lr: float = setting(1e-3, "Adam learning rate (paper: 2e-5; from scratch on small nets a larger rate)",
                        gt=0.0, le=1.0)
    weight_decay: float = setting(0.0, "Adam weight decay", ge=0.0)
    lr_final_fraction: float = setting(0.1, "cosine decay to lr * this", ge=0.0, le=1.0)
    grad_clip: float = setting(5.0, "gradient norm clip", gt=0.0)
    alpha_confidence: float = setting(100.0, "alpha of Eq. 7", ge=0.0)
    beta_position: float = setting(1.0, "beta of Eq. 7 before the switch", ge=0.0)
    beta_position_late: float = setting(10.0, "... and after it", ge=0.0)
    kappa: float = setting(200.0, "kappa of Eq. 5 before the switch", gt=0.0)
    kappa_late: float = setting(20.0, "... and after it", gt=0.0)
    switch_epoch: int = setting(5, "the epoch kappa and beta switch (paper: 15 of 25)", ge=0)
    nll_weight: float = setting(1.0, "weight of the negative log-likelihood of the truth in the volume", ge=0.0)
    matching_weight: float = setting(1.0, "scale of sum_l L_m", ge=0.0)
    refine_init_noise_m: float = setting(1.6, "refinement starts at truth + this much noise, m ...", ge=0.0)
    refine_init_noise_deg: float = setting(3.0, "... and this much in yaw, deg", ge=0.0)
    refine_init_from_volume: float = setting(0.5, "... or, for this fraction of samples, at the volume's argmax",
                                             ge=0.0, le=1.0)
    yaw_prior_noise_deg: float = setting(10.0, "the yaw prior is resampled uniformly within +- this, deg",
                                         ge=0.0, le=180.0)
    photometric_jitter: float = setting(0.15, "brightness/contrast jitter of both images", ge=0.0, le=1.0)
    threads: int = setting(2, "torch threads", ge=1, le=1024)
    log_every: int = setting(20, "log every n-th step", ge=1)


class FullConfig(Settings):
    """A YAML config file: a `model:` and a `train:` section."""

    what: ClassVar[str] = "config section"

    model: PoseNetConfig = setting(PoseNetConfig(), "the pose network")
    train: TrainConfig = setting(TrainConfig(), "its training")


def config_from_dict(values: dict) -> FullConfig:
    """The sections of `values` (missing or empty ones: the defaults) as a FullConfig."""
    if not isinstance(values, dict):
        raise InputError(f"a config must be a mapping with model: and train: sections, got {values!r}")
    return FullConfig(**{k: v or {} for k, v in values.items()})


def load_config(path: str | Path | None) -> FullConfig:
    """Defaults merged with a YAML file holding `model:` and `train:` sections."""
    if path is None:
        return FullConfig()
    values = read_yaml(path)
    try:
        return config_from_dict(values)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
