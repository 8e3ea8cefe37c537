"""From pair data sets to network batches: resizing to the model's inputs, augmentation, shuffling.

Samples are brought to the card's sizes with `cvgl_ros.runtime.preprocess`, the same code
the runtime uses, so training and deployment see identical pixels. Shuffling is by chunks
of shards (streamed, never the whole set in memory) and is reproducible for a seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from cvgl_ros.datasets.pairs import PairDataset
from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import wrap_angle
from cvgl_ros.models.config import PoseNetConfig
from cvgl_ros.runtime.preprocess import resample_patch, resize_ground

META_MPP_KEYS = ("patch_mpp", "satellite_mpp", "sat_mpp", "mpp")


def dataset_patch_mpp(meta: dict) -> float:
    """Metres per pixel of a pair set's satellite patches, from its index meta."""
    for key in META_MPP_KEYS:
        value = meta.get(key)
        if value is None and isinstance(meta.get("satellite"), dict):
            value = meta["satellite"].get(key)
        if value is not None:
            value = float(value)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"pair set meta {key}={value} is not a positive number")
            return value
    raise InputError(f"pair set meta gives no satellite m/px (looked for {', '.join(META_MPP_KEYS)})")


@dataclass
class Example:
    """One sample at the model's input sizes (numpy, uint8 images)."""

    ground: np.ndarray          # (h, w, 3) uint8
    satellite: np.ndarray       # (S, S, 3) uint8
    intrinsics: np.ndarray      # (3, 3)
    camera_height_m: float
    offset_en_m: np.ndarray     # (2,)
    yaw_enu_rad: float
    yaw_prior_enu_rad: float
    index: int


def to_example(sample: dict, index: int, model_cfg: PoseNetConfig, data_mpp: float) -> Example:
    ground, k = resize_ground(sample["ground"], sample["K"], model_cfg.image_hw)
    satellite = resample_patch(sample["satellite"], data_mpp, model_cfg.patch_px, model_cfg.patch_mpp)
    return Example(ground, satellite, k, float(sample["camera_height_m"]), np.asarray(sample["offset_en_m"], float),
                   float(sample["yaw_enu_rad"]), float(sample["yaw_prior_enu_rad"]), index)


def iterate_examples(dataset: PairDataset, model_cfg: PoseNetConfig, *, max_pairs: int | None = None,
                     rng: np.random.Generator | None = None, chunk_shards: int = 4) -> Iterator[Example]:
    """Examples of (the first `max_pairs` of) a split; shuffled by shard chunks when `rng` is given."""
    data_mpp = dataset_patch_mpp(dataset.meta)
    limit = len(dataset) if max_pairs is None else min(int(max_pairs), len(dataset))
    starts = np.cumsum([0] + [s["count"] for s in dataset.shards])
    shards = [k for k in range(len(dataset.shards)) if starts[k] < limit]
    order = list(shards) if rng is None else list(rng.permutation(shards))
    for c in range(0, len(order), chunk_shards):
        chunk = order[c:c + chunk_shards]
        examples = []
        for k, sample in zip(_repeat_each(chunk, dataset), dataset.iter_shards(chunk)):
            k_shard, j = k
            index = int(starts[k_shard]) + j
            if index < limit:
                examples.append(to_example(sample, index, model_cfg, data_mpp))
        if rng is not None:
            examples = [examples[i] for i in rng.permutation(len(examples))]
        yield from examples


def _repeat_each(chunk, dataset):
    for k in chunk:
        for j in range(dataset.shards[int(k)]["count"]):
            yield int(k), j


def collate(examples: list[Example], *, rng: np.random.Generator | None = None, yaw_prior_noise_deg: float = -1.0,
            photometric_jitter: float = 0.0) -> dict[str, torch.Tensor]:
    """Stack examples into network inputs and targets (augmenting when `rng` is given)."""
    ground = np.stack([e.ground for e in examples]).astype(np.float32) / 255.0
    satellite = np.stack([e.satellite for e in examples]).astype(np.float32) / 255.0
    yaw = np.array([e.yaw_enu_rad for e in examples])
    prior = np.array([e.yaw_prior_enu_rad for e in examples])
    if rng is not None:
        if photometric_jitter > 0:
            for images in (ground, satellite):
                n = len(examples)
                gain = 1 + rng.uniform(-photometric_jitter, photometric_jitter, (n, 1, 1, 3))
                bias = rng.uniform(-photometric_jitter, photometric_jitter, (n, 1, 1, 1)) * 0.5
                images *= gain.astype(np.float32)
                images += bias.astype(np.float32)
                np.clip(images, 0, 1, out=images)
        if yaw_prior_noise_deg >= 0:
            noise = np.radians(rng.uniform(-yaw_prior_noise_deg, yaw_prior_noise_deg, len(examples)))
            prior = wrap_angle(yaw + noise)
    if not np.all(np.isfinite(prior)):
        raise InputError("a sample has no yaw prior (NaN): this model needs one (window around the prior)")
    return {
        "ground": torch.from_numpy(np.ascontiguousarray(ground.transpose(0, 3, 1, 2))),
        "satellite": torch.from_numpy(np.ascontiguousarray(satellite.transpose(0, 3, 1, 2))),
        "intrinsics": torch.tensor(np.stack([e.intrinsics for e in examples]), dtype=torch.float32),
        "camera_height_m": torch.tensor([e.camera_height_m for e in examples], dtype=torch.float32),
        "yaw_prior_rad": torch.tensor(prior, dtype=torch.float32),
        "offset_en_m": torch.tensor(np.stack([e.offset_en_m for e in examples]), dtype=torch.float32),
        "yaw_enu_rad": torch.tensor(yaw, dtype=torch.float32),
        "index": torch.tensor([e.index for e in examples]),
    }


def iterate_batches(dataset: PairDataset, model_cfg: PoseNetConfig, batch_size: int, *, max_pairs: int | None = None,
                    rng: np.random.Generator | None = None, yaw_prior_noise_deg: float = -1.0,
                    photometric_jitter: float = 0.0, drop_last: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    buffer: list[Example] = []
    for example in iterate_examples(dataset, model_cfg, max_pairs=max_pairs, rng=rng):
        buffer.append(example)
        if len(buffer) == batch_size:
            yield collate(buffer, rng=rng, yaw_prior_noise_deg=yaw_prior_noise_deg, photometric_jitter=photometric_jitter)
            buffer = []
    if buffer and not drop_last:
        yield collate(buffer, rng=rng, yaw_prior_noise_deg=yaw_prior_noise_deg, photometric_jitter=photometric_jitter)
