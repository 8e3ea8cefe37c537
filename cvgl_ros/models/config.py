"""Configuration of the cross-view pose network: one dataclass, defaults in code, YAML overrides.

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

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from cvgl_ros.errors import InputError

FINE_STRIDE = 2
COARSE_STRIDE = 4


@dataclass
class PoseNetConfig:
    # Inputs (what the model card promises; the runtime resizes or refuses other sizes).
    image_hw: tuple[int, int] = (64, 256)       # ground image rows, cols (a 128x512 camera, halved)
    patch_px: int = 128                          # satellite patch side, pixels
    patch_mpp: float = 0.4                       # satellite metres per pixel (0.2 m data, halved)
    # Encoders (paper: ResNet18, 256 channels at 1/8 of full-size images).
    ground_channels: tuple[int, int, int] = (16, 24, 48)     # stem, stride-2, stride-4 stages
    satellite_channels: tuple[int, int, int] = (16, 24, 48)
    feature_dim: int = 32                        # matching features (BEV and satellite)
    context_dim: int = 32                        # context features of the ground view
    # Ground-to-BEV projection (vehicle frame: x forward, y left; camera on the x axis).
    bev_forward_m: float = 20.8                  # BEV covers x in (0, bev_forward_m]
    bev_half_width_m: float = 12.0               # and y in [-w, w]
    camera_pitch_rad: float = 0.0                # downward pitch of the optical axis
    camera_forward_m: float = 0.0                # camera position ahead of the vehicle origin
    # Coarse likelihood volume over (yaw, y, x).
    volume_cells: int = 26                       # H = W cells of volume_cell_m, centred on the prior
    yaw_window_deg: float = 12.0                 # bins span prior +- window
    yaw_bins: int = 9
    # Dense-flow refinement (paper: 12 GRU iterations, 4-level pyramid, lookup radius 4).
    iterations: int = 3
    corr_levels: int = 2
    corr_window: int = 5                         # correlation window around the start match, cells
    corr_radius: int = 3                         # lookup radius around the current match, cells
    hidden_dim: int = 32

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

    def validate(self) -> "PoseNetConfig":
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise InputError(f"model setting {f.name} = {value} is not finite")
        h, w = self.image_hw
        if h % COARSE_STRIDE or w % COARSE_STRIDE:
            raise InputError(f"image_hw {self.image_hw} must be multiples of {COARSE_STRIDE}")
        if self.patch_px % COARSE_STRIDE:
            raise InputError(f"patch_px {self.patch_px} must be a multiple of {COARSE_STRIDE}")
        if self.fine_px % (2 ** (self.corr_levels - 1)):
            raise InputError(f"fine satellite grid {self.fine_px} is not divisible by 2^(corr_levels-1)")
        if (self.coarse_px - self.volume_cells) % 2 or self.volume_cells > self.coarse_px or self.volume_cells < 2:
            raise InputError(f"volume_cells {self.volume_cells} must be <= {self.coarse_px} with the same parity")
        if self.bev_rows % 2 or self.bev_cols % 2:
            raise InputError("BEV extent must be an even number of fine cells (it is pooled 2x2)")
        if not (self.patch_mpp > 0 and self.bev_forward_m > 0 and self.bev_half_width_m > 0):
            raise InputError("patch_mpp and BEV extents must be positive")
        if self.yaw_bins < 2 or not 0 < self.yaw_window_deg <= 180:
            raise InputError("need >= 2 yaw bins and a yaw window in (0, 180] degrees")
        if self.iterations < 1:
            raise InputError("iterations must be >= 1")
        if not 1 <= self.corr_radius <= self.corr_window:
            raise InputError("need 1 <= corr_radius <= corr_window")
        return self

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "PoseNetConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"unknown model setting(s): {', '.join(unknown)}")
        kwargs = {}
        for name, value in values.items():
            default = known[name].default
            kwargs[name] = tuple(value) if isinstance(default, tuple) else type(default)(value)
        return cls(**kwargs).validate()


@dataclass
class TrainConfig:
    """Training hyper-parameters (seed 002 §3.4 and §4.3, scaled to CPU)."""

    seed: int = 0
    epochs: int = 8                      # paper: 25
    batch_size: int = 8                  # paper: 6
    lr: float = 1e-3                     # paper: 2e-5 (Adam); from scratch on small nets a larger rate
    weight_decay: float = 0.0
    lr_final_fraction: float = 0.1       # cosine decay to lr * this
    grad_clip: float = 5.0
    alpha_confidence: float = 100.0      # alpha of Eq. 7
    beta_position: float = 1.0           # beta of Eq. 7 before the switch
    beta_position_late: float = 10.0     # ... and after it
    kappa: float = 200.0                 # kappa of Eq. 5 before the switch
    kappa_late: float = 20.0             # ... and after it
    switch_epoch: int = 5                # paper: epoch 15 of 25
    nll_weight: float = 1.0              # negative log-likelihood of the truth in the volume
    matching_weight: float = 1.0         # scale of sum_l L_m
    refine_init_noise_m: float = 1.6     # training: refinement starts at truth + noise ...
    refine_init_noise_deg: float = 3.0
    refine_init_from_volume: float = 0.5  # ... or (this fraction of samples) at the volume's argmax
    yaw_prior_noise_deg: float = 10.0    # resample the yaw prior uniformly within +- this
    photometric_jitter: float = 0.15     # brightness/contrast jitter of both images
    threads: int = 2
    log_every: int = 20

    # (field, low, high, low inclusive): every number must be finite and in its range.
    RANGES = (
        ("seed", 0, math.inf, True), ("epochs", 1, math.inf, True), ("batch_size", 1, math.inf, True),
        ("lr", 0.0, 1.0, False), ("weight_decay", 0.0, math.inf, True), ("lr_final_fraction", 0.0, 1.0, True),
        ("grad_clip", 0.0, math.inf, False), ("alpha_confidence", 0.0, math.inf, True),
        ("beta_position", 0.0, math.inf, True), ("beta_position_late", 0.0, math.inf, True),
        ("kappa", 0.0, math.inf, False), ("kappa_late", 0.0, math.inf, False), ("switch_epoch", 0, math.inf, True),
        ("nll_weight", 0.0, math.inf, True), ("matching_weight", 0.0, math.inf, True),
        ("refine_init_noise_m", 0.0, math.inf, True), ("refine_init_noise_deg", 0.0, math.inf, True),
        ("refine_init_from_volume", 0.0, 1.0, True), ("yaw_prior_noise_deg", 0.0, 180.0, True),
        ("photometric_jitter", 0.0, 1.0, True), ("threads", 1, 1024, True), ("log_every", 1, math.inf, True),
    )

    def validate(self) -> "TrainConfig":
        """InputError for a setting that is not finite (`lr: nan`) or outside its range."""
        for name, low, high, low_inclusive in self.RANGES:
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InputError(f"training setting {name} = {value} is not a finite number")
            if value < low or (value == low and not low_inclusive) or value > high:
                bracket = "[" if low_inclusive else "("
                raise InputError(f"training setting {name} = {value} is outside {bracket}{low}, {high}]")
        return self


@dataclass
class FullConfig:
    model: PoseNetConfig = field(default_factory=PoseNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": dataclasses.asdict(self.train)}


def _train_from_dict(values: dict) -> TrainConfig:
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"unknown training setting(s): {', '.join(unknown)}")
    return TrainConfig(**{k: type(known[k].default)(v) for k, v in values.items()}).validate()


def config_from_dict(values: dict) -> FullConfig:
    unknown = sorted(set(values) - {"model", "train"})
    if unknown:
        raise InputError(f"unknown config section(s): {', '.join(unknown)}; expected model, train")
    return FullConfig(
        model=PoseNetConfig.from_dict(values.get("model") or {}),
        train=_train_from_dict(values.get("train") or {}),
    )


def load_config(path: str | Path | None) -> FullConfig:
    """Defaults merged with a YAML file holding `model:` and `train:` sections."""
    if path is None:
        return FullConfig(model=PoseNetConfig().validate())
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such config file: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise InputError(f"{path} must hold a mapping with model: and train: sections")
    try:
        return config_from_dict(values)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise InputError(f"{path}: {exc}") from None
        raise InputError(f"{path}: bad value ({exc})") from None
