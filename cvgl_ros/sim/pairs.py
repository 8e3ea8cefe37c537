"""Cross-view training and evaluation pairs from synthetic worlds, following the KITTI protocol of
"Learning Dense Flow Field for Highly-accurate Cross-view Camera Localization" (after Shi and
Li) that "Federated Learning for Cross-view Geo-localization" also uses:

* a ground image from a forward camera (KITTI colour camera intrinsics scaled to the ground
  size, 1.65 m above the road; default 512 x 128, half of the 1024 x 256 those methods
  resize KITTI's 1242 x 375 frames to, sized for 2-CPU training);
* a north-up satellite patch at ~0.2 m/px (KITTI's satellite images: 0.2 m/px, ~100 m;
  default 256 px = 51.2 m, so that a +-20 m offset keeps the camera inside), centred at the
  true position perturbed by up to +-`max_shift_m` laterally and longitudinally (uniform, in
  the vehicle's axes);
* a yaw prior perturbed by up to +-`max_yaw_prior_deg` (uniform; KITTI's +-10 deg), or
  unknown (NaN);
* ground truth: offset of the true position from the patch centre (east, north) and the yaw.

Splits as those papers evaluate: `train`; `same_area`, held-out drives in the training worlds
(KITTI's Test1); `cross_area`, worlds never seen in training (KITTI's Test2); `val`
(optional) more held-out drives of the training worlds. A drive is a route of
`frames_per_drive * FRAME_SPACING_M` metres under its own appearance (sun, season, cars), so
held-out drives differ from training drives in both place and conditions.

Written with `cvgl_ros.datasets.pairs.PairWriter` (sharded .npz with index.json). Drives are
rendered in worker processes and written in drive order, so the output does not depend on
the number of workers.
"""
from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cvgl_ros.errors import InputError
from cvgl_ros.geo.yaw import wrap_angle

FRAME_SPACING_M = 6.0      # mean spacing of frames along a drive
MAX_TRIES = 20


@dataclass(frozen=True)
class PairConfig:
    ground_width: int = 512
    ground_height: int = 128
    satellite_px: int = 256
    satellite_mpp: float = 0.2
    max_shift_m: float = 20.0
    max_yaw_prior_deg: float = 10.0
    yaw_prior: str = "perturbed"          # or "unknown"
    frames_per_drive: int = 100
    same_area_fraction: float = 0.15
    cross_area_fraction: float = 0.15
    val_fraction: float = 0.0
    cross_area_worlds: int | None = None  # None: 1 in 5 worlds, at least 1 when there are 2+
    seed: int = 0

    def check(self) -> None:
        if self.yaw_prior not in ("perturbed", "unknown"):
            raise InputError(f"yaw prior must be 'perturbed' or 'unknown', got {self.yaw_prior!r}")
        if self.satellite_px * self.satellite_mpp < 2 * self.max_shift_m + 4.0:
            raise InputError(f"a satellite patch of {self.satellite_px} px x {self.satellite_mpp} m/px cannot hold a "
                             f"+-{self.max_shift_m:g} m offset: make it larger than {2 * self.max_shift_m + 4:g} m")
        if self.same_area_fraction + self.cross_area_fraction + self.val_fraction >= 1.0:
            raise InputError("same-area, cross-area and val fractions must leave some pairs for training")


def split_plan(world_ids: list[str], n: int, config: PairConfig) -> tuple[list[str], dict[str, int]]:
    """(cross-area world ids, {split: number of pairs})."""
    k = len(world_ids)
    n_cross_worlds = config.cross_area_worlds
    if n_cross_worlds is None:
        n_cross_worlds = 0 if k < 2 else max(1, round(k / 5))
    if n_cross_worlds < 0 or (n_cross_worlds >= k and k > 0):
        raise InputError(f"{n_cross_worlds} cross-area worlds of {k}: at least one world must remain for training")
    cross = world_ids[k - n_cross_worlds:] if n_cross_worlds else []
    counts = {}
    counts["cross_area"] = int(round(n * config.cross_area_fraction)) if cross else 0
    counts["same_area"] = int(round(n * config.same_area_fraction))
    counts["val"] = int(round(n * config.val_fraction))
    counts["train"] = n - counts["cross_area"] - counts["same_area"] - counts["val"]
    return cross, {s: c for s, c in counts.items() if c > 0}


def _drive_jobs(world_ids, cross, counts, config: PairConfig) -> list[dict]:
    """One job per drive: (split, world, drive number, frames). Drives of a split rotate over its worlds;
    drive numbers are disjoint between splits, so no drive is in two splits."""
    train_worlds = [w for w in world_ids if w not in cross]
    jobs = []
    offsets = {"train": 0, "val": 1_000_000, "same_area": 2_000_000, "cross_area": 3_000_000}
    for split in ("train", "val", "same_area", "cross_area"):
        n = counts.get(split, 0)
        worlds = cross if split == "cross_area" else train_worlds
        k = 0
        while n > 0:
            frames = min(config.frames_per_drive, n)
            jobs.append({"split": split, "world": worlds[k % len(worlds)], "drive": offsets[split] + k,
                         "frames": frames})
            n -= frames
            k += 1
    return jobs


_WORKER: dict = {}


def _worker_world(world_dir: str):
    from cvgl_ros.sim.world import World

    cache = _WORKER.setdefault("worlds", {})
    if world_dir not in cache:
        cache.clear()  # one world in memory at a time
        cache[world_dir] = World.load(world_dir)
    return cache[world_dir]


def render_drive(job: dict, world_dir: str, config: PairConfig) -> list[dict]:
    """The samples of one drive (see the module docstring)."""
    from cvgl_ros.sim.ground_camera import GroundRenderer, default_camera
    from cvgl_ros.sim.world import stream
    from cvgl_ros.tiles import PatchSampler

    world = _worker_world(world_dir)
    camera = default_camera(config.ground_width, config.ground_height)
    rng = stream(world.seed, "pairs", config.seed, job["drive"])
    appearance = int(rng.integers(1 << 30))
    renderer = GroundRenderer(world, camera, appearance_seed=appearance)
    length = config.frames_per_drive * FRAME_SPACING_M + 20.0
    route = world.route(int(rng.integers(1 << 30)), length)
    half_patch = config.satellite_px * config.satellite_mpp / 2.0 * math.sqrt(2.0)
    world_half = world.size_m / 2.0
    samples = []
    with renderer, PatchSampler(world.tiles_path, cache_mb=64, decode_threads=1) as sampler:
        s_values = np.sort(rng.uniform(5.0, route.length_m - 5.0, job["frames"] * 3))
        frame = 0
        for s in s_values:
            if frame >= job["frames"]:
                break
            e, n, yaw = (float(v) for v in route.pose_at(s))
            fwd = np.array([math.cos(yaw), math.sin(yaw)])
            left = np.array([-math.sin(yaw), math.cos(yaw)])
            for _ in range(MAX_TRIES):
                lon, lat = rng.uniform(-config.max_shift_m, config.max_shift_m, 2)
                offset = lon * fwd + lat * left             # true position - patch centre
                centre = np.array([e, n]) - offset
                if np.all(np.abs(centre) + half_patch <= world_half):
                    break
            else:
                continue
            patch = sampler.patch_enu(world.datum, float(centre[0]), float(centre[1]), config.satellite_px,
                                      config.satellite_mpp)
            if not patch.valid.all():
                continue
            yaw_err = math.radians(rng.uniform(-config.max_yaw_prior_deg, config.max_yaw_prior_deg))
            prior = float(wrap_angle(yaw + yaw_err)) if config.yaw_prior == "perturbed" else math.nan
            ground = renderer.render(e, n, yaw, time_s=s / 10.0)
            samples.append({
                "ground": ground, "satellite": patch.rgb, "K": camera.k.astype(np.float32),
                "camera_height_m": camera.height_m, "offset_en_m": offset.astype(np.float32),
                "yaw_enu_rad": float(wrap_angle(yaw)), "yaw_prior_enu_rad": prior,
                "position_en_m": np.array([e, n]), "world": job["world"], "drive": job["drive"], "frame": frame,
            })
            frame += 1
    return samples


def _run_job(args):
    job, world_dir, config = args
    return job, render_drive(job, world_dir, config)


def generate_pairs(world_dirs, n: int, out, config: PairConfig = PairConfig(), workers: int = 2,
                   progress: bool = True) -> dict:
    """Render `n` pairs from the worlds into a pair data set at `out` (atomic). Returns a summary."""
    from cvgl_ros.datasets.pairs import PairWriter
    from cvgl_ros.sim.ground_camera import default_camera
    from cvgl_ros.sim.world import World

    config.check()
    if n <= 0:
        raise InputError(f"number of pairs must be positive, got {n}")
    dirs = [Path(d) for d in world_dirs]
    if not dirs:
        raise InputError("give at least one world directory")
    worlds = {}
    for d in dirs:
        world = World.load(d)  # validates every world before any rendering
        wid = d.resolve().name
        if wid in worlds:
            wid = f"{wid}-{len(worlds)}"
        worlds[wid] = (d, world)
    ids = list(worlds)
    cross, counts = split_plan(ids, n, config)
    jobs = _drive_jobs(ids, cross, counts, config)
    camera = default_camera(config.ground_width, config.ground_height)
    meta = {
        "source": "cvgl sim pairs",
        "protocol": ("KITTI cross-view (Shi & Li; seeds 000/002): centre offset +-max_shift_m lateral and "
                     "longitudinal, yaw prior +-max_yaw_prior_deg"),
        "config": asdict(config),
        "ground_size_wh": [config.ground_width, config.ground_height],
        "satellite_px": config.satellite_px, "satellite_mpp": config.satellite_mpp,
        "camera": camera.camera_info_fields() | {"height_m": camera.height_m},
        "planned_counts": counts, "cross_area_worlds": cross,
    }
    written = {s: 0 for s in counts}
    with PairWriter(out, meta) as writer:
        for wid, (d, world) in worlds.items():
            writer.add_world(wid, {"path": str(d), "seed": world.seed, "style": world.style, "size_m": world.size_m,
                                   "datum": world.datum.to_dict(), "split": "cross_area" if wid in cross else "train"})
        tasks = [(job, str(worlds[job["world"]][0]), config) for job in jobs]
        bar = tqdm(total=sum(counts.values()), desc="pairs", unit="pair", disable=not progress)
        if workers <= 1:
            results = map(_run_job, tasks)
            pool = None
        else:
            import multiprocessing as mp

            pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
            results = pool.map(_run_job, tasks)
        try:
            for job, samples in results:
                for sample in samples:
                    writer.add(job["split"], sample)
                written[job["split"]] += len(samples)
                bar.update(len(samples))
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        writer.meta["counts"] = written
    return {"total": sum(written.values()), "counts": written, "worlds": ids, "cross_area_worlds": cross}
