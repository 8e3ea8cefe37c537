"""`cvgl train-retrieval`: the descriptor network of seed 001, geo-local or geo-global.

"Cross-View Matching for Vehicle Localization by Learning Geographically Local
Representations" trains SAFA with (geo-local) local mini-batches of Eq. 4 and the
geo-distance weighted soft-margin triplet loss of Eq. 1-3, or (geo-global, the baseline)
random mini-batches and all weights 1:

    run_retrieval_training("data/pairs", None, "runs/desc")                 # geo-local
    run_retrieval_training("data/pairs", None, "runs/desc_global", local=False)

Data: a `cvgl sim pairs` set. The satellite position pi(S_i) of a pair is its patch centre,
`position_en_m - offset_en_m` in its world's ENU frame (pairs of different worlds are never
neighbours). The paper matches a query to a satellite image up to 5 m away on its dense
RobotCar set (§IV-B); pairs whose offset exceeds `max_pair_offset_m` (default 5 m) are left
out, so make the set with `cvgl sim pairs --max-shift-m 3.5` (3.5 * sqrt 2 < 5 m) to use it
all. Augmentation as §IV-B: the patch rotated by a random multiple of 90 deg, and a small
photometric jitter. Adam, as the paper (lr 5e-5 there on a pre-trained VGG; from scratch on
a small CNN a larger rate), gamma = 10, sigma_geo = 10 m, step decay, r = 50 m and N = 32
(`cvgl_ros.train.local_batches` says why).

Writes into `out/`: `config.json`, `checkpoint_epochNNN.pt` and `last.pt` (what `--resume`
continues from; the RNG of an epoch is a function of (seed, epoch), so a resumed run
continues as an uninterrupted one), `history.json`, `curves.png`, and at the end the ONNX
encoders and their card (`cvgl_ros.train.retrieval_export`), then `finished`.

Validation (`val` or `same_area` split): recall@1 of the true satellite patch among the
split's patches within r of the truth (the geo-local test of §IV-C) and among all of them.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from cvgl_ros.atomic import atomic_path, write_json, write_text
from cvgl_ros.config import Settings, read_yaml, setting
from cvgl_ros.errors import InputError
from cvgl_ros.models.descriptor import DescriptorConfig, DescriptorNet, descriptor_distances
from cvgl_ros.models.geo_local_loss import DECAYS, GAMMA, SIGMA_GEO_M, geo_local_loss, soft_margin_triplet_loss
from cvgl_ros.train.local_batches import DEFAULT_BATCH, DEFAULT_RADIUS_M, LocalBatchSampler, RandomBatchSampler

CHECKPOINT_FORMAT = "cvgl-descriptor-checkpoint/1"
RUN_NAMES = ("checkpoint_epoch*.pt", "last.pt", "history.json", "curves.png", "config.json", "descriptor.json",
             "descriptor_ground.onnx", "descriptor_satellite.onnx", "finished")
STEP_WINDOW = 10


class RetrievalTrainConfig(Settings):
    """Training of the descriptor network (seed 001 §III-C, §IV-B, §IV-D; scaled for 2 CPU cores)."""

    what: ClassVar[str] = "retrieval training setting"

    seed: int = setting(0, "random seed", ge=0)
    epochs: int = setting(12, "passes over the training pairs (paper: 100 on CVACT)", ge=1)
    batch_size: int = setting(DEFAULT_BATCH, "N pairs per mini-batch (paper: 64 on RobotCar, 16 on CVACT)", ge=2)
    local: bool = setting(True, "geo-local: local mini-batches (Eq. 4) and w_geo (Eq. 3); false: the geo-global "
                                "baseline (random batches, all weights 1)")
    radius_m: float = setting(DEFAULT_RADIUS_M, "r: the prior's maximum error, m (paper: 50 m RobotCar, 100 m CVACT)",
                              gt=0.0)
    sigma_geo_m: float = setting(SIGMA_GEO_M, "sigma_geo of the nearby down-weighting, m (paper: 10 m)", ge=0.0)
    decay: str = setting("step", "p_r of Eq. 3 (paper: step)", choices=DECAYS)
    gamma: float = setting(GAMMA, "gamma of Eq. 1-2 (paper: 10)", gt=0.0)
    lr: float = setting(1e-3, "Adam learning rate (paper: 5e-5 with a pre-trained VGG)", gt=0.0, le=1.0)
    weight_decay: float = setting(0.0, "Adam weight decay", ge=0.0)
    grad_clip: float = setting(5.0, "gradient norm clip", gt=0.0)
    max_pair_offset_m: float = setting(5.0, "pairs whose satellite centre is further from the camera are left "
                                            "out, m (paper: 5 m)", gt=0.0)
    rotate_satellite_90: bool = setting(True, "rotate each patch by a random multiple of 90 deg, the yaw alike "
                                              "(paper §IV-B)")
    yaw_noise_deg: float = setting(2.0, "1-sigma noise added to the true yaw (the filter's yaw at run time)",
                                   ge=0.0, le=45.0)
    photometric_jitter: float = setting(0.1, "brightness/contrast jitter of both images", ge=0.0, le=1.0)
    validation_pairs: int = setting(512, "pairs of the validation split scored per epoch (0: none)", ge=0)
    threads: int = setting(2, "torch threads", ge=1, le=1024)


class RetrievalConfig(Settings):
    """A YAML config file: a `model:` and a `train:` section."""

    what: ClassVar[str] = "config section"

    model: DescriptorConfig = setting(DescriptorConfig(), "the descriptor network")
    train: RetrievalTrainConfig = setting(RetrievalTrainConfig(), "its training")


def load_retrieval_config(path: str | Path | None) -> RetrievalConfig:
    if path is None:
        return RetrievalConfig()
    values = read_yaml(path)
    try:
        return RetrievalConfig(**{k: v or {} for k, v in values.items()})
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


# -- data ---------------------------------------------------------------------------------

def load_pairs(data: str | Path, split: str, model: DescriptorConfig, max_offset_m: float,
               max_pairs: int | None = None) -> dict:
    """One split at the model's input sizes, in memory: ground (N, h, w, 3) uint8 with its K
    (N, 3, 3) and true yaw (N,), the polar satellite images (N, R, P, 3) uint8, positions (N, 2)
    of the patch centres, world (N,) ids, dropped count."""
    from cvgl_ros.datasets.pairs import PairDataset
    from cvgl_ros.retrieval.sectors import polar_maps, polar_patch
    from cvgl_ros.runtime.preprocess import resample_patch, resize_ground
    from cvgl_ros.train.batches import dataset_patch_mpp

    dataset = PairDataset(data, split)
    data_mpp = dataset_patch_mpp(dataset.meta)
    maps = polar_maps(model.patch_px, model.polar_hw)
    grounds, ks, yaws, polars, positions, worlds, dropped = [], [], [], [], [], [], 0
    for sample in dataset.iter_shards():
        if max_pairs is not None and len(grounds) >= max_pairs:
            break
        offset = np.asarray(sample["offset_en_m"], np.float64)
        if not np.isfinite(offset).all() or float(np.linalg.norm(offset)) > max_offset_m:
            dropped += 1
            continue
        ground, k = resize_ground(sample["ground"], sample["K"], tuple(model.image_hw))
        grounds.append(ground)
        ks.append(k)
        yaws.append(float(sample["yaw_enu_rad"]))
        polars.append(polar_patch(resample_patch(sample["satellite"], data_mpp, model.patch_px, model.patch_mpp), maps))
        positions.append(np.asarray(sample["position_en_m"], np.float64) - offset)
        worlds.append(dataset.world_ids.index(sample["world"]))
    if not grounds:
        raise InputError(f"split {split} of {data} has no pair within {max_offset_m:g} m of its satellite centre "
                         f"({dropped} further): make the pairs with cvgl sim pairs --max-shift-m 3.5")
    return {"ground": np.stack(grounds), "K": np.stack(ks), "yaw": np.array(yaws), "satellite": np.stack(polars),
            "positions": np.array(positions), "world": np.array(worlds), "dropped": dropped, "split": split}


def batch_tensors(pairs: dict, index: np.ndarray, rng: np.random.Generator | None, train: RetrievalTrainConfig,
                  model: DescriptorConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ground, sector weights, polar satellite) tensors of the pairs `index`, augmented when
    `rng`: a rotation of the world by k * 90 deg (the polar columns rolled by k * P / 4, the yaw
    turned by k * 90 deg), yaw noise of `yaw_noise_deg` and a photometric jitter."""
    from cvgl_ros.retrieval.sectors import sector_weights

    ground = pairs["ground"][index].astype(np.float32) / 255.0
    satellite = pairs["satellite"][index].astype(np.float32) / 255.0
    yaw = pairs["yaw"][index].astype(np.float64)
    if rng is not None:
        if train.rotate_satellite_90:
            turns = rng.integers(0, 4, len(index))
            quarter = satellite.shape[2] // 4
            satellite = np.stack([np.roll(s, int(k) * quarter, axis=1) for s, k in zip(satellite, turns)])
            yaw = yaw + turns * (np.pi / 2)
        yaw = yaw + rng.normal(0.0, np.radians(train.yaw_noise_deg), len(index))
        for images in (ground, satellite):
            jitter = train.photometric_jitter
            if jitter > 0:
                n = len(index)
                images *= (1 + rng.uniform(-jitter, jitter, (n, 1, 1, 3))).astype(np.float32)
                images += (rng.uniform(-jitter, jitter, (n, 1, 1, 1)) * 0.5).astype(np.float32)
                np.clip(images, 0, 1, out=images)
    weights = sector_weights(yaw, pairs["K"][index], model.image_hw[1], model.stride, model.sectors)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    return to_t(ground), torch.from_numpy(weights), to_t(satellite)


def batch_loss(model: DescriptorNet, pairs: dict, index: np.ndarray, rng, train: RetrievalTrainConfig) -> dict:
    g, f = model(*batch_tensors(pairs, index, rng, train, model.config))
    distances = descriptor_distances(f, g)
    if train.local:
        return geo_local_loss(distances, pairs["positions"][index], pairs["world"][index], train.radius_m,
                              train.sigma_geo_m, train.decay, train.gamma)
    return soft_margin_triplet_loss(distances, None, train.gamma)


@torch.no_grad()
def encode_all(model: DescriptorNet, pairs: dict, train: RetrievalTrainConfig, batch: int = 64):
    """(g (N, D), f (N, D)) numpy descriptors of every pair, no augmentation, eval mode."""
    model.eval()
    gs, fs = [], []
    for start in range(0, len(pairs["ground"]), batch):
        index = np.arange(start, min(start + batch, len(pairs["ground"])))
        g, f = model(*batch_tensors(pairs, index, None, train, model.config))
        gs.append(g.numpy())
        fs.append(f.numpy())
    return np.concatenate(gs), np.concatenate(fs)


def retrieval_recall(g: np.ndarray, f: np.ndarray, positions: np.ndarray, world: np.ndarray, radius_m: float) -> dict:
    """recall@1 of each ground query's own patch among the patches within `radius_m` of it
    (same world) and among all patches, and the share whose best patch within `radius_m` lies
    within 5 m of its own; distances as the loss's."""
    d = np.clip(2.0 - 2.0 * g @ f.T, 0.0, None)                        # [query j, patch i]
    delta = np.linalg.norm(positions[:, None] - positions[None], axis=2)
    near = (delta <= radius_m) & (world[:, None] == world[None])
    best = np.where(near, d, np.inf).argmin(1)
    n = len(g)
    return {"count": n, "recall_at_1_local": float(np.mean(best == np.arange(n)) * 100),
            "recall_at_5m_local": float(np.mean(delta[np.arange(n), best] <= 5.0) * 100),
            "recall_at_1_global": float(np.mean(d.argmin(1) == np.arange(n)) * 100),
            "candidates_local_median": float(np.median(near.sum(1)))}


# -- the run -------------------------------------------------------------------------------

def save_state(path: Path, model, optimizer, epoch: int, config: RetrievalConfig, history: list, provenance: dict):
    state = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "epoch": int(epoch), "config": config.to_dict(), "history": history, "provenance": provenance}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def read_state(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"no checkpoint {path} to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise InputError(f"{path} is not a readable checkpoint: {(str(exc).splitlines() or ['?'])[0][:200]}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return state


def train_epoch(model, optimizer, pairs: dict, sampler, config: RetrievalConfig, epoch: int, progress: bool) -> dict:
    """One epoch; returns mean loss terms and the per-STEP_WINDOW curve."""
    t = config.train
    rng = np.random.default_rng([t.seed, epoch])
    torch.manual_seed(t.seed * 1000 + epoch)
    model.train()
    sums, steps, curve, window = {}, 0, [], []
    bar = tqdm(desc=f"epoch {epoch + 1}", unit="batch", disable=not progress, dynamic_ncols=True)
    for index in sampler.epoch(rng):
        losses = batch_loss(model, pairs, index, rng, t)
        if not torch.isfinite(losses["loss"]):
            raise RuntimeError(f"non-finite loss at epoch {epoch + 1} step {steps}")
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        steps += 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        window.append(values["loss"])
        if len(window) == STEP_WINDOW:
            curve.append({"step": steps, "loss": float(np.mean(window))})
            window = []
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}", w=f"{sums['weight_mean'] / steps:.2f}")
    bar.close()
    for point in curve:
        point["epoch"] = epoch + point["step"] / max(1, steps)
    if steps == 0:
        raise InputError(f"no training batch in epoch {epoch + 1}: {len(sampler)} pairs give no batch of "
                         f"{t.batch_size}" + (f" within r = {t.radius_m:g} m" if t.local else ""))
    return {k: v / steps for k, v in sums.items()} | {"steps": steps, "curve": curve}


def _sampler(pairs: dict, train: RetrievalTrainConfig):
    if train.local:
        return LocalBatchSampler(pairs["positions"], train.batch_size, train.radius_m, pairs["world"])
    return RandomBatchSampler(len(pairs["ground"]), train.batch_size)


def _start(out: Path, config_path, data, resume: bool, command: str | None, max_pairs, overrides: dict):
    """(config, history, first epoch, provenance, checkpoint state or None) of a new or resumed run."""
    last = out / "last.pt"
    if resume:
        state = read_state(last)
        config = RetrievalConfig(**state["config"])
        return config, list(state["history"]), int(state["epoch"]), dict(state["provenance"]), state
    if last.exists():
        raise InputError(f"{out} already holds a run (last.pt): use --resume, or another --out")
    config = load_retrieval_config(config_path)
    config = config.replace(train=config.train.replace(**overrides)) if overrides else config
    provenance = {"data": str(data), "config_file": str(config_path) if config_path else None,
                  "command": command or shlex.join(["cvgl", *sys.argv[1:]]), "max_pairs": max_pairs}
    return config, [], 0, provenance, None


def _validation_split(data) -> str | None:
    import json

    splits = json.loads((Path(data) / "index.json").read_text()).get("splits", {})
    return next((s for s in ("val", "same_area") if s in splits), None)


def run_retrieval_training(data: str | Path, config_path: str | Path | None, out: str | Path, *,
                           resume: bool = False, local: bool | None = None, epochs: int | None = None,
                           max_pairs: int | None = None, progress: bool = True, command: str | None = None) -> dict:
    """Train (or resume) into `out`, then export the encoders; returns {"out", "history", "card"}."""
    from cvgl_ros.train.retrieval_export import export_descriptor

    out = Path(out)
    overrides = {k: v for k, v in (("local", local), ("epochs", epochs)) if v is not None}
    config, history, start, provenance, state = _start(out, config_path, data, resume, command, max_pairs,
                                                       {} if resume else overrides)
    if resume and epochs is not None:
        config = config.replace(train=config.train.replace(epochs=int(epochs)))
    t = config.train
    pairs = load_pairs(data, "train", config.model, t.max_pair_offset_m, max_pairs)
    val_split = _validation_split(data) if t.validation_pairs > 0 else None
    val = load_pairs(data, val_split, config.model, t.max_pair_offset_m, t.validation_pairs) if val_split else None
    provenance.setdefault("train_pairs", len(pairs["ground"]))
    provenance.setdefault("pairs_left_out_offset", pairs["dropped"])
    provenance.setdefault("validation_split", val_split)
    torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    model = DescriptorNet(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    sampler = _sampler(pairs, t)
    if t.local and progress:
        counts = np.array([len(n) for n in sampler.neighbours])
        print(f"{len(counts)} pairs; neighbours within r = {t.radius_m:g} m: median {np.median(counts):.0f}, "
              f"{np.mean(counts >= t.batch_size - 1) * 100:.0f} % have the {t.batch_size - 1} a batch needs",
              file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config.to_dict())
    for epoch in range(start, t.epochs):
        entry = {"epoch": epoch + 1, "train": train_epoch(model, optimizer, pairs, sampler, config, epoch, progress)}
        if val is not None:
            entry["val"] = retrieval_recall(*encode_all(model, val, t), val["positions"], val["world"], t.radius_m)
        history.append(entry)
        for name in (f"checkpoint_epoch{epoch + 1:03d}.pt", "last.pt"):
            save_state(out / name, model, optimizer, epoch + 1, config, history, provenance)
        write_json(out / "history.json", history)
        plot_retrieval_curves(history, out / "curves.png", title=f"{out.name}: {provenance['data']}")
        if progress:
            print(f"epoch {epoch + 1}/{t.epochs}: loss {entry['train']['loss']:.4f} "
                  + (f"val R@1 local {entry['val']['recall_at_1_local']:.1f} % (R@5m "
                     f"{entry['val']['recall_at_5m_local']:.1f} %) global "
                     f"{entry['val']['recall_at_1_global']:.1f} %" if "val" in entry else ""), file=sys.stderr)
    card = export_descriptor(model.eval(), config, out, history=history, provenance=provenance,
                             parity_batch=batch_tensors(pairs, np.arange(min(3, len(pairs["ground"]))), None, t,
                                                        config.model))
    write_text(out / "finished", "ok\n")
    return {"out": str(out), "history": history, "card": card}


def plot_retrieval_curves(history: list[dict], path: str | Path, title: str = "retrieval training") -> Path:
    """Training loss (STEP_WINDOW-step means and epoch means) and validation recall@1 per epoch."""
    from cvgl_ros.evaluation.figures import pyplot, save_figure

    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    curve = [c for h in history for c in h["train"].get("curve", [])]
    if curve:
        ax.plot([c["epoch"] for c in curve], [c["loss"] for c in curve], lw=1.0, label=f"{STEP_WINDOW}-step means")
    ax.plot([h["epoch"] for h in history], [h["train"]["loss"] for h in history], "o", label="epoch means")
    ax.set(xlabel="epoch", ylabel="loss (Eq. 1-2, mean of both directions)", title="training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    val = [h for h in history if "val" in h]
    for key, label in (("recall_at_1_local", "recall@1 within r"), ("recall_at_1_global", "recall@1, all patches")):
        bx.plot([h["epoch"] for h in val], [h["val"][key] for h in val], marker="o", label=label)
    count = val[-1]["val"]["count"] if val else 0
    bx.set(xlabel="epoch", ylabel="%", title=f"validation ({count} pairs)", ylim=(0, 100))
    bx.grid(alpha=0.3)
    bx.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
