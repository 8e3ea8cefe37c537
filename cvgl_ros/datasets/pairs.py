"""Cross-view training/evaluation pairs on disk: sharded, streamable, with an index.

Layout of a data set directory DS:

    DS/index.json              format, meta (sizes, m/px, camera), worlds, splits -> shards
    DS/shards/<split>-00000.npz

Splits follow the KITTI cross-view protocol of "Learning Dense Flow Field for
Highly-accurate Cross-view Camera Localization" and "Federated Learning for Cross-view
Geo-localization": `train`, `same_area` (held-out drives in the training worlds) and
`cross_area` (worlds never seen in training); `val` is optional.

One sample (a dict, as `PairDataset[i]` returns it):

    ground             HxWx3 uint8 RGB camera image
    satellite          SxSx3 uint8 RGB north-up patch, centred at the (perturbed) prior position
    K                  3x3 float32 intrinsics of `ground`
    camera_height_m    float, camera height above the (flat) ground
    offset_en_m        (2,) float32 true vehicle position minus patch centre, (east, north) metres
    yaw_enu_rad        float, true yaw (REP-103, counter-clockwise from east)
    yaw_prior_enu_rad  float, the yaw prior (NaN when unknown)
    position_en_m      (2,) float64 true position in the world's ENU frame
    world              str, world id (a key of index.json "worlds")
    drive, frame       int

Images are stored JPEG-encoded (quality in meta) so 20 000 pairs stay around 1 GB.
Shards are plain `.npz` (no pickle): image bytes concatenated with an offsets array.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from cvgl_ros.atomic import atomic_dir, write_json
from cvgl_ros.errors import InputError, read_json

FORMAT = "cvgl-pairs/1"
SPLITS = ("train", "val", "same_area", "cross_area")
NUMERIC_FIELDS = {
    "K": np.float32, "camera_height_m": np.float32, "offset_en_m": np.float32, "yaw_enu_rad": np.float32,
    "yaw_prior_enu_rad": np.float32, "position_en_m": np.float64, "drive": np.int32, "frame": np.int32,
}
IMAGE_FIELDS = ("ground", "satellite")


def _encode_jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError("JPEG encoding failed")
    return buf.reshape(-1)


def _decode_jpeg(buf: np.ndarray) -> np.ndarray:
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError("corrupt image in pair shard")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class PairWriter:
    """Write a pair data set atomically: `with PairWriter(DS, meta) as w: w.add("train", sample)`."""

    def __init__(self, path: str | Path, meta: dict, shard_size: int = 256, jpeg_quality: int = 95):
        self.path = Path(path)
        self.meta = dict(meta, jpeg_quality=jpeg_quality)
        self.shard_size = shard_size
        self.jpeg_quality = jpeg_quality
        self.worlds: dict[str, dict] = {}
        self._buffers: dict[str, list[dict]] = {}
        self._shards: dict[str, list[dict]] = {s: [] for s in SPLITS}
        self._ctx = None
        self._tmp: Path | None = None

    def __enter__(self) -> "PairWriter":
        self._ctx = atomic_dir(self.path)
        self._tmp = self._ctx.__enter__()
        (self._tmp / "shards").mkdir()
        return self

    def add_world(self, world_id: str, info: dict) -> None:
        """Record a world (its datum, style, seed...) once; samples refer to it by id."""
        self.worlds[world_id] = info

    def add(self, split: str, sample: dict) -> None:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if sample["world"] not in self.worlds:
            raise InputError(f"sample refers to unknown world {sample['world']!r}: call add_world first")
        buf = self._buffers.setdefault(split, [])
        buf.append(sample)
        if len(buf) >= self.shard_size:
            self._flush(split)

    def _flush(self, split: str) -> None:
        samples = self._buffers.get(split) or []
        if not samples:
            return
        arrays = {}
        for field in IMAGE_FIELDS:
            encoded = [_encode_jpeg(s[field], self.jpeg_quality) for s in samples]
            arrays[f"{field}_jpeg"] = np.concatenate(encoded)
            arrays[f"{field}_offsets"] = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
        for field, dtype in NUMERIC_FIELDS.items():
            arrays[field] = np.stack([np.asarray(s[field], dtype=dtype) for s in samples])
        world_ids = sorted(self.worlds)
        arrays["world_index"] = np.array([world_ids.index(s["world"]) for s in samples], dtype=np.int32)
        name = f"shards/{split}-{len(self._shards[split]):05d}.npz"
        np.savez(self._tmp / name, **arrays)
        self._shards[split].append({"file": name, "count": len(samples)})
        self._buffers[split] = []

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            for split in list(self._buffers):
                self._flush(split)
            index = {
                "format": FORMAT,
                "meta": self.meta,
                "worlds": {k: self.worlds[k] for k in sorted(self.worlds)},
                "splits": {s: shards for s, shards in self._shards.items() if shards},
            }
            write_json(self._tmp / "index.json", index)
        return self._ctx.__exit__(exc_type, exc, tb)


class PairDataset:
    """Read one split of a pair data set; random access (`ds[i]`) and streaming (`iter_shards`)."""

    def __init__(self, path: str | Path, split: str):
        self.path = Path(path)
        index_file = self.path / "index.json"
        if not index_file.is_file():
            raise InputError(f"{self.path} is not a pair data set (no index.json)")
        self.index = read_json(index_file)
        if self.index.get("format") != FORMAT:
            raise InputError(f"{index_file}: unsupported format {self.index.get('format')!r}, expected {FORMAT}")
        if split not in self.index["splits"]:
            have = ", ".join(self.index["splits"]) or "none"
            raise InputError(f"data set {self.path} has no split {split!r} (has: {have})")
        self.split = split
        self.meta = self.index["meta"]
        self.world_ids = sorted(self.index["worlds"])
        self.shards = self.index["splits"][split]
        self._starts = np.cumsum([0] + [s["count"] for s in self.shards])
        self._cache_key: int | None = None
        self._cache = None

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _load_shard(self, k: int):
        if self._cache_key != k:
            with np.load(self.path / self.shards[k]["file"], allow_pickle=False) as z:
                self._cache = {name: z[name] for name in z.files}
            self._cache_key = k
        return self._cache

    def _sample(self, arrays: dict, j: int) -> dict:
        sample = {}
        for field in IMAGE_FIELDS:
            off = arrays[f"{field}_offsets"]
            sample[field] = _decode_jpeg(arrays[f"{field}_jpeg"][off[j]:off[j + 1]])
        for field in NUMERIC_FIELDS:
            value = arrays[field][j]
            sample[field] = value.item() if value.ndim == 0 else value
        sample["world"] = self.world_ids[int(arrays["world_index"][j])]
        return sample

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self._sample(self._load_shard(k), i - int(self._starts[k]))

    def iter_shards(self, order: np.ndarray | None = None) -> Iterator[dict]:
        """Stream samples shard by shard (optionally in a given shard order)."""
        for k in (range(len(self.shards)) if order is None else order):
            arrays = self._load_shard(int(k))
            for j in range(self.shards[int(k)]["count"]):
                yield self._sample(arrays, j)
