"""The fleet accuracy benchmark: a fixed set of simulated drives, replayed through the real
nodes with the shipped model and scored against the truth (`cvgl evaluate-fleet`,
`cvgl bench --only accuracy`).

The fleet is data, here and nowhere else: `WORLDS` (seed, style, size; whether a shipped
model was trained on it: the Makefile's MODEL_WORLDS are seeds 11-15) and `DRIVES` (world,
seed, GNSS profile, duration; `quick` marks the three drives of `--quick`). Every drive is
turn-rich (`RoadGraph.route(turn_rich=True)`: a turn at least every 30 s, U-turns where the
road graph allows, stops at intersections and crossings); its seed sets the route, the
speed profile, the GNSS errors and the camera's appearance. The drive seeds were picked
once so that every route turns within every 30 s (`test/test_evaluation_fleet.py` checks it).

Pipeline (`run_fleet`):

1. worlds and drives are generated once into a cache directory, each under a name keyed by
   a hash of its definition (for drives also the camera size and rates) and of the
   simulator's source code, and reused when present; `--no-motion-sensors` replays filtered
   copies without /imu/data and /odom/wheel;
2. each drive is replayed in lockstep (one frame at a time: reproducible) through
   `cross_view_node` and `particle_filter_node` (`cvgl_ros.replay.replay_bag`, which leases a
   ROS domain of its own), in fresh processes, `workers` replays at once; a drive whose
   replay fails is reported (`failed`, and a failed acceptance check), the others still count;
3. each drive is scored (`score_drive`) with the trajectories of `cvgl_ros.evaluation.track`:
   fused `/cvgl/pose`, raw GNSS, the GNSS-only particle filter and the constant-velocity
   Kalman filter;
4. `fleet.json`, `fleet.md` and `fleet.png` (per-drive p99 and max, fused vs raw GNSS vs the
   GNSS-only filter, log scale; `cvgl_ros.evaluation.fleet_report`) are written atomically
   into the output directory.

Metrics of a trajectory with position errors e_i at stamps t_i (`track_metrics`):

* mean, p50/p95/p99 and max of e_i (every pose counts once);
* seconds over 5 m / 10 m: sum of h_i over e_i > d, where the hold h_i = min(t_{i+1} - t_i,
  HOLD_CAP_S) is how long pose i stood (the last one holds the median interval);
* yaw error mean / p99 (degrees), where the trajectory has a yaw;
* `divergence_s` (fused only): the longest stretch during which the fused error exceeds
  10 m while raw GNSS was valid and within 10 m (the acceptance allows none over 2 s). Raw
  GNSS at a pose's stamp is the latest fix at or before it, if at most GNSS_STALE_S old;
  NO_FIX or no fix counts as "raw GNSS absent". A stretch runs from its first bad pose to
  the first good pose after it (or its last pose's hold);
* mean 2-D NEES of the (x, y) covariance: NEES_i = d_i^T P_i^-1 d_i with d_i the (east, north)
  error; 2 on average when the covariance is consistent. For the fused pose P_i is the
  x, y block of /cvgl/pose's covariance; for raw GNSS it is sigma_i^2 I with the receiver's
  reported sigma; not computed for the two GNSS-only filters (`evaluation.track`
  returns their poses only);
* protection-level coverage: the fraction of poses whose error is within the horizontal
  protection level published on /cvgl/protection_level (geometry_msgs/Vector3Stamped, header
  stamp = the pose's stamp, vector.x = HPL in metres), matched by stamp; absent (None) when
  the run has no such topic.

Fleet rows pool every pose of every drive (seconds add up); the NEES row also gives the
per-drive range.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError

FLEET_VERSION = 1
MODEL_WORLD_SEEDS = (11, 12, 13, 14, 15)  # Makefile MODEL_WORLDS: what the shipped model saw
# The receiver models the fleet drives with: every GNSS profile of cvgl_ros.sim.gnss but `clean`,
# which is the ground truth itself (error 0), a test fixture that no estimate can beat.
RECEIVER_PROFILES = ("open_sky", "urban_canyon", "multipath")
CAMERA_HZ = 5.0     # camera rate of the fleet's drives (docs/accuracy.md: why)
GNSS_HZ = 5.0
HOLD_CAP_S = 1.0
GNSS_STALE_S = 1.0
DIVERGENCE_M = 10.0
TOPIC_PROTECTION_LEVEL = "/cvgl/protection_level"
MSG_VECTOR3_STAMPED = "geometry_msgs/msg/Vector3Stamped"
MOTION_TOPICS = ("/imu/data", "/odom/wheel")
METHOD_ORDER = ("fused", "gnss_raw", "gnss_particle_filter", "kalman_cv")


@dataclass(frozen=True)
class FleetWorld:
    name: str
    seed: int
    style: str
    size_m: float
    trained_on: bool  # a shipped model was trained on this world


@dataclass(frozen=True)
class FleetDrive:
    name: str
    world: str
    seed: int
    gnss: str
    duration_s: float = 180.0
    quick: bool = False


WORLDS = (
    FleetWorld("suburban12", 12, "suburban", 1000.0, trained_on=True),
    FleetWorld("urban21", 21, "urban", 1000.0, trained_on=False),
    FleetWorld("suburban22", 22, "suburban", 1000.0, trained_on=False),
    FleetWorld("rural25", 25, "rural", 800.0, trained_on=False),
    FleetWorld("urban24", 24, "urban", 1000.0, trained_on=False),
)

DRIVES = (
    FleetDrive("suburban12-open_sky-1", "suburban12", 1, "open_sky"),
    FleetDrive("suburban12-urban_canyon-7", "suburban12", 7, "urban_canyon"),
    FleetDrive("suburban12-multipath-19", "suburban12", 19, "multipath"),
    FleetDrive("urban21-open_sky-36", "urban21", 36, "open_sky"),
    FleetDrive("urban21-urban_canyon-16", "urban21", 16, "urban_canyon"),
    FleetDrive("urban21-multipath-32", "urban21", 32, "multipath", quick=True),
    FleetDrive("urban21-multipath-13", "urban21", 13, "multipath"),
    FleetDrive("suburban22-open_sky-4", "suburban22", 4, "open_sky"),
    FleetDrive("suburban22-urban_canyon-16", "suburban22", 16, "urban_canyon", quick=True),
    FleetDrive("suburban22-multipath-19", "suburban22", 19, "multipath"),
    FleetDrive("rural25-urban_canyon-5", "rural25", 5, "urban_canyon"),
    FleetDrive("rural25-open_sky-28", "rural25", 28, "open_sky", quick=True),
    FleetDrive("rural25-multipath-16", "rural25", 16, "multipath"),
    FleetDrive("urban24-open_sky-15", "urban24", 15, "open_sky"),
    FleetDrive("urban24-urban_canyon-18", "urban24", 18, "urban_canyon"),
    FleetDrive("urban24-multipath-3", "urban24", 3, "multipath"),
)


def world_by_name(name: str) -> FleetWorld:
    for w in WORLDS:
        if w.name == name:
            return w
    raise InputError(f"the fleet has no world {name!r}")


def fleet_drives(quick: bool = False, names=None) -> tuple[FleetDrive, ...]:
    """The fleet, its `--quick` three, or the drives named (in the fleet's order)."""
    if names:
        unknown = sorted(set(names) - {d.name for d in DRIVES})
        if unknown:
            raise InputError(f"the fleet has no drive {', '.join(unknown)} (cvgl_ros/evaluation/fleet.py DRIVES)")
        return tuple(d for d in DRIVES if d.name in set(names))
    return tuple(d for d in DRIVES if d.quick) if quick else DRIVES


# What a drive's bag does not depend on (the world's files depend on the rest of sim/).
_NOT_WORLD_SOURCES = {"drive.py", "gnss.py", "trajectory.py", "motion_sensors.py", "ground_camera.py", "pairs.py",
                      "preview.py", "simulated_cross_view.py"}


def _key(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(f"fleet/{FLEET_VERSION}/{text}".encode()).hexdigest()[:12]


def _sources_hash(world_only: bool) -> str:
    """sha256 of the simulator's code (and the bag format for drives): a cached world or drive
    made by other code is made again."""
    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "sim").glob("*.py"))
    if world_only:
        files = [f for f in files if f.name not in _NOT_WORLD_SOURCES]
    else:  # the bag format, and what the camera's K and the stamps are computed with
        files += [root / "datasets" / "bag.py", root / "geo" / "pinhole.py", root / "stamps.py"]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def world_key(world: FleetWorld) -> str:
    """Cache key of a world: its definition and the simulator code that makes it."""
    return _key({"world": asdict(world), "code": _sources_hash(world_only=True)})


def drive_key(drive: FleetDrive, image_wh: tuple[int, int]) -> str:
    """Cache key of a drive: its definition (not `quick`), its world's, the camera size and
    rates, and the simulator code."""
    world = world_by_name(drive.world)
    return _key({"drive": asdict(drive) | {"quick": None}, "world": asdict(world), "image_wh": list(image_wh),
                 "camera_hz": CAMERA_HZ, "gnss_hz": GNSS_HZ, "turn_rich": True, "code": _sources_hash(False)})


# -- metrics --------------------------------------------------------------------------------

def holds_s(t_s: np.ndarray) -> np.ndarray:
    """How long each pose stood: min(t_{i+1} - t_i, HOLD_CAP_S); the last holds the median step."""
    t = np.asarray(t_s, dtype=float)
    if t.size == 0:
        return np.zeros(0)
    if t.size == 1:
        return np.zeros(1)
    dt = np.diff(t)
    return np.minimum(np.append(dt, np.median(dt)), HOLD_CAP_S)


def longest_stretch_s(t_s: np.ndarray, bad: np.ndarray) -> float:
    """Longest run of `bad` poses, from its first pose to the first good pose after it (or the
    last bad pose's hold when the track ends bad)."""
    t = np.asarray(t_s, dtype=float)
    bad = np.asarray(bad, dtype=bool)
    if not bad.any():
        return 0.0
    hold = holds_s(t)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(np.int8), [0]])))
    longest = 0.0
    for a, b in zip(edges[::2], edges[1::2]):
        end = t[b] if b < len(t) else t[b - 1] + hold[b - 1]
        longest = max(longest, float(end - t[a]))
    return longest


def gnss_at(t_s: np.ndarray, gnss_t_s: np.ndarray, gnss_error_m: np.ndarray) -> np.ndarray:
    """Raw GNSS error at each stamp: the latest fix at or before it, NaN when that fix is
    NO_FIX (NaN error), older than GNSS_STALE_S, or there is none."""
    t = np.asarray(t_s, dtype=float)
    gt = np.asarray(gnss_t_s, dtype=float)
    ge = np.asarray(gnss_error_m, dtype=float)
    k = np.searchsorted(gt, t + 1e-6, side="right") - 1  # 1 us: float seconds keep ~0.2 us
    out = np.full(t.shape, np.nan)
    ok = (k >= 0)
    kk = np.clip(k, 0, max(len(gt) - 1, 0))
    if len(gt):
        ok &= (t - gt[kk]) <= GNSS_STALE_S
        out[ok] = ge[kk[ok]]
    return out


def divergence_s(t_s: np.ndarray, fused_error_m: np.ndarray, raw_error_m: np.ndarray,
                 threshold_m: float = DIVERGENCE_M) -> float:
    """Longest stretch with the fused error above `threshold_m` while raw GNSS was present and
    within it (`raw_error_m` NaN where absent)."""
    raw = np.asarray(raw_error_m, dtype=float)
    bad = (np.asarray(fused_error_m, dtype=float) > threshold_m) & np.isfinite(raw) & (raw <= threshold_m)
    return longest_stretch_s(t_s, bad)


def nees_2d(de_m: np.ndarray, dn_m: np.ndarray, cov_2x2: np.ndarray) -> np.ndarray:
    """d^T P^-1 d per pose for (N, 2, 2) covariances; NaN where P is not positive definite."""
    d = np.stack([np.asarray(de_m, dtype=float), np.asarray(dn_m, dtype=float)], axis=-1)
    p = np.asarray(cov_2x2, dtype=float).reshape(-1, 2, 2)
    det = p[:, 0, 0] * p[:, 1, 1] - p[:, 0, 1] * p[:, 1, 0]
    ok = np.isfinite(det) & (det > 0) & (p[:, 0, 0] > 0) & np.all(np.isfinite(d), axis=1)
    out = np.full(len(d), np.nan)
    inv = np.zeros_like(p)
    inv[ok, 0, 0], inv[ok, 1, 1] = p[ok, 1, 1] / det[ok], p[ok, 0, 0] / det[ok]
    inv[ok, 0, 1], inv[ok, 1, 0] = -p[ok, 0, 1] / det[ok], -p[ok, 1, 0] / det[ok]
    out[ok] = np.einsum("ni,nij,nj->n", d[ok], inv[ok], d[ok])
    return out


def track_metrics(t_s: np.ndarray, error_m: np.ndarray, yaw_error_deg: np.ndarray | None = None) -> dict:
    """Position (and yaw) error statistics of one trajectory (module docstring)."""
    e = np.asarray(error_m, dtype=float)
    out: dict = {"n": int(e.size)}
    if e.size == 0:
        return out
    hold = holds_s(t_s)
    out["mean_m"] = float(e.mean())
    for q, v in zip((50, 95, 99), np.percentile(e, [50, 95, 99])):
        out[f"p{q}_m"] = float(v)
    out["max_m"] = float(e.max())
    out["seconds_over_5m"] = float(hold[e > 5.0].sum())
    out["seconds_over_10m"] = float(hold[e > 10.0].sum())
    out["duration_s"] = float(hold.sum())
    if yaw_error_deg is not None and len(yaw_error_deg):
        y = np.asarray(yaw_error_deg, dtype=float)
        out["yaw_mean_deg"] = float(y.mean())
        out["yaw_p99_deg"] = float(np.percentile(y, 99))
    return out


def _finite_mean(x) -> float | None:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


# -- scoring one drive ----------------------------------------------------------------------

def _fused_covariances(estimate_bag) -> dict[int, np.ndarray]:
    """stamp ns -> the x, y block of the last /cvgl/pose covariance recorded at that stamp."""
    from cvgl_ros.datasets.bag import read_messages
    from cvgl_ros.stamps import stamp_to_ns
    from cvgl_ros.evaluation.track import TOPIC_FUSED_POSE

    out = {}
    for _, _, _, msg in read_messages(estimate_bag, [TOPIC_FUSED_POSE]):
        c = np.asarray(msg.pose.covariance, dtype=float).reshape(6, 6)
        out[stamp_to_ns(msg.header.stamp)] = c[:2, :2].copy()
    return out


def _protection_levels(estimate_bag) -> dict[int, float] | None:
    """stamp ns -> HPL (m) from /cvgl/protection_level, None when the run has no such topic."""
    from cvgl_ros.datasets.bag import bag_topics, read_messages
    from cvgl_ros.stamps import stamp_to_ns

    topics = bag_topics(estimate_bag)
    if TOPIC_PROTECTION_LEVEL not in topics or topics[TOPIC_PROTECTION_LEVEL][1] == 0:
        return None
    if topics[TOPIC_PROTECTION_LEVEL][0] != MSG_VECTOR3_STAMPED:
        raise InputError(f"{TOPIC_PROTECTION_LEVEL} in {estimate_bag} is {topics[TOPIC_PROTECTION_LEVEL][0]}, "
                         f"expected {MSG_VECTOR3_STAMPED}")
    return {stamp_to_ns(msg.header.stamp): float(msg.vector.x)
            for _, _, _, msg in read_messages(estimate_bag, [TOPIC_PROTECTION_LEVEL])}


def at_stamps(t_s: np.ndarray, by_stamp_ns: dict, missing) -> np.ndarray:
    """The values of `by_stamp_ns` (integer ns -> value) at float-second stamps `t_s`, matched
    to the nearest within 1 us (seconds since 1970 in a float64 keep only ~0.2 us: exact ns
    are lost on the way), `missing` where none is that close."""
    t = np.asarray(t_s, dtype=float)
    out = [missing] * len(t)
    if by_stamp_ns and len(t):
        keys = np.array(sorted(by_stamp_ns), dtype=np.int64)
        key_s = keys * 1e-9
        right = np.clip(np.searchsorted(key_s, t), 0, len(keys) - 1)
        left = np.clip(right - 1, 0, len(keys) - 1)
        nearest = np.where(np.abs(key_s[left] - t) < np.abs(key_s[right] - t), left, right)
        for i in np.flatnonzero(np.abs(key_s[nearest] - t) <= 1e-6):
            out[i] = by_stamp_ns[int(keys[nearest[i]])]
    return np.array(out)


def _signed_errors(poses, truth):
    from cvgl_ros.evaluation.track import truth_at

    inside, ref = truth_at(truth, poses.t_s)
    return inside, poses.east_m[inside] - ref.east_m, poses.north_m[inside] - ref.north_m


def score_drive(estimate_bag, truth_bag, seed: int = 0) -> dict:
    """Every metric of the module docstring for one replayed drive, per method, plus the
    samples `series`: method -> (seconds since the truth's start, error m, yaw error deg or
    None), and "gnss_no_fix" -> (the NO_FIX epochs, None, None); for plots and pooling."""
    from cvgl_ros.datasets.bag import bag_datum
    from cvgl_ros.evaluation.track import (Poses, gnss_only_particle_filter, kalman_on_gnss, load_estimate, load_gnss,
                                           load_truth, score)

    datum = bag_datum(truth_bag)
    truth = load_truth(truth_bag)
    gnss = load_gnss(truth_bag, datum)
    fused = load_estimate(estimate_bag)
    raw_poses = Poses(gnss.t_s[gnss.valid], gnss.east_m[gnss.valid], gnss.north_m[gnss.valid])
    tracks = {
        "fused": score("fused", fused, truth),
        "gnss_raw": score("gnss_raw", raw_poses, truth),
        "gnss_particle_filter": score("gnss_particle_filter", gnss_only_particle_filter(gnss, seed), truth),
        "kalman_cv": score("kalman_cv", kalman_on_gnss(gnss), truth),
    }
    if tracks["fused"].error_m.size == 0:
        raise InputError(f"no pose of {estimate_bag} falls within the truth's time span")
    methods = {name: track_metrics(tr.poses.t_s, tr.error_m, tr.yaw_error_deg) for name, tr in tracks.items()}

    # raw GNSS error at every GNSS epoch (NaN where NO_FIX): for the divergence stretches
    raw_err_epoch = np.full(gnss.t_s.shape, np.nan)
    inside_raw, de_raw, dn_raw = _signed_errors(raw_poses, truth)
    valid_idx = np.flatnonzero(gnss.valid)[inside_raw]
    raw_err_epoch[valid_idx] = np.hypot(de_raw, dn_raw)
    f = tracks["fused"]
    raw_at_fused = gnss_at(f.poses.t_s, gnss.t_s, raw_err_epoch)
    methods["fused"]["divergence_s"] = divergence_s(f.poses.t_s, f.error_m, raw_at_fused)

    # NEES: the fused covariance (x, y block) and the receiver's reported sigma
    covs = _fused_covariances(estimate_bag)
    _, de_f, dn_f = _signed_errors(f.poses, truth)
    cov = at_stamps(f.poses.t_s, covs, np.full((2, 2), np.nan)).reshape(-1, 2, 2)
    methods["fused"]["nees_mean"] = _finite_mean(nees_2d(de_f, dn_f, cov))
    sigma = gnss.sigma_m[gnss.valid][inside_raw]
    raw_cov = (sigma**2)[:, None, None] * np.eye(2)[None]
    methods["gnss_raw"]["nees_mean"] = _finite_mean(nees_2d(de_raw, dn_raw, raw_cov))

    hpl = _protection_levels(estimate_bag)
    if hpl is not None:
        levels = at_stamps(f.poses.t_s, hpl, np.nan).astype(float)
        have = np.isfinite(levels)
        methods["fused"]["hpl_poses"] = int(have.sum())
        methods["fused"]["hpl_coverage"] = float(np.mean(f.error_m[have] <= levels[have])) if have.any() else None
        methods["fused"]["hpl_mean_m"] = float(levels[have].mean()) if have.any() else None
    series = {name: (tr.poses.t_s - truth.t_s[0], tr.error_m, tr.yaw_error_deg) for name, tr in tracks.items()}
    series["gnss_no_fix"] = (gnss.t_s[~gnss.valid] - truth.t_s[0], None, None)
    return {"methods": methods,
            "gnss_epochs": {"epochs": int(gnss.t_s.size), "no_fix_fraction": float(1.0 - gnss.valid.mean())},
            "series": series}


def pool_methods(per_drive: list[dict]) -> dict:
    """Fleet rows: every pose of every drive pooled (percentiles over all poses, seconds summed);
    each drive's dict holds its `methods` and `series` (`score_drive`)."""
    pooled = {}
    for name in METHOD_ORDER:
        rows = [d["methods"][name] for d in per_drive if name in d["methods"] and d["methods"][name].get("n")]
        samples = [d["series"][name] for d in per_drive if name in d.get("series", {})]
        if not rows:
            continue
        t = np.concatenate([s[0] + 1e6 * i for i, s in enumerate(samples)])  # drives apart in time
        e = np.concatenate([s[1] for s in samples])
        yaw = [s[2] for s in samples if s[2] is not None]
        m = track_metrics(t, e, np.concatenate(yaw) if len(yaw) == len(samples) else None)
        m["seconds_over_5m"] = float(sum(r["seconds_over_5m"] for r in rows))
        m["seconds_over_10m"] = float(sum(r["seconds_over_10m"] for r in rows))
        m["duration_s"] = float(sum(r["duration_s"] for r in rows))
        for key in ("divergence_s",):
            if any(key in r for r in rows):
                m[f"{key}_max"] = float(max(r.get(key, 0.0) for r in rows))
        nees = [r["nees_mean"] for r in rows if r.get("nees_mean") is not None]
        if nees:
            m["nees_mean"] = float(np.mean(nees))
            m["nees_drive_min"], m["nees_drive_max"] = float(min(nees)), float(max(nees))
        cov = [(r["hpl_coverage"], r["hpl_poses"]) for r in rows if r.get("hpl_coverage") is not None]
        if cov:
            m["hpl_coverage"] = float(sum(c * n for c, n in cov) / max(sum(n for _, n in cov), 1))
        pooled[name] = m
    return pooled


def acceptance(per_drive: list[dict], fleet: dict, motion_sensors: bool = True,
               failed: dict | None = None) -> list[dict]:
    """The requirements a fused pose must meet before it ships, as this benchmark measures them:
    at the tail never worse than raw GNSS or the GNSS-only filter, no divergence while GNSS is
    good, a fleet mean well under raw GNSS (0.25 x with IMU and wheel odometry, 0.35 x without),
    a consistent covariance (NEES) and a protection level that bounds the error;
    [{check, passed, detail}] (`failed`: drive -> why its replay failed, when any did)."""
    out = []

    def add(check, passed, detail):
        out.append({"check": check, "passed": bool(passed), "detail": detail})

    if failed:
        add("every drive replayed", False, "; ".join(f"{name}: {why}" for name, why in failed.items()))

    bad = [d["name"] for d in per_drive if not (d["methods"]["fused"]["p99_m"] <= d["methods"]["gnss_raw"]["p99_m"])]
    add("fused p99 <= raw GNSS p99 on every drive", not bad, ", ".join(bad) or "all drives")
    bad = [d["name"] for d in per_drive
           if not (d["methods"]["fused"]["p99_m"] <= d["methods"]["gnss_particle_filter"]["p99_m"])]
    add("fused p99 <= GNSS-only PF p99 on every drive", not bad, ", ".join(bad) or "all drives")
    bad = [d["name"] for d in per_drive if not (d["methods"]["fused"]["max_m"] <= d["methods"]["gnss_raw"]["max_m"])]
    add("fused max <= raw GNSS max on every drive", not bad, ", ".join(bad) or "all drives")
    worst = max(per_drive, key=lambda d: d["methods"]["fused"]["divergence_s"])
    add("no stretch > 2 s with fused > 10 m while raw GNSS <= 10 m", worst["methods"]["fused"]["divergence_s"] <= 2.0,
        f"longest {worst['methods']['fused']['divergence_s']:.1f} s ({worst['name']})")
    ratio = fleet["fused"]["mean_m"] / fleet["gnss_raw"]["mean_m"]
    bound = 0.25 if motion_sensors else 0.35
    add(f"fleet mean <= {bound} x raw GNSS ({'with' if motion_sensors else 'without'} IMU and wheel odometry)",
        ratio <= bound, f"{fleet['fused']['mean_m']:.2f} m / {fleet['gnss_raw']['mean_m']:.2f} m = {ratio:.3f}")
    nees = [(d["name"], d["methods"]["fused"].get("nees_mean")) for d in per_drive]
    bad = [n for n, v in nees if v is None or not 1.0 <= v <= 3.0]
    add("mean 2-D NEES in [1, 3] on every drive", not bad, ", ".join(bad) or "all drives")
    cov = fleet["fused"].get("hpl_coverage")
    add("protection level bounds >= 99 % of fleet poses", cov is not None and cov >= 0.99,
        "no /cvgl/protection_level recorded" if cov is None else f"{100 * cov:.2f} %")
    return out


# -- generation and replay ------------------------------------------------------------------

def _marker(path: Path) -> dict | None:
    try:
        return json.loads((path / "fleet_item.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_world(world: FleetWorld, cache_dir: Path) -> Path:
    """The world's directory in the cache, generated when absent (World.save is atomic)."""
    from cvgl_ros.atomic import write_json
    from cvgl_ros.sim.world import World

    key = world_key(world)
    out = cache_dir / "worlds" / f"{world.name}-{key}"
    if (_marker(out) or {}).get("key") == key and (out / "tiles.mbtiles").is_file():
        return out
    if out.exists():
        raise InputError(f"{out} exists but is not a finished fleet world; remove it to regenerate")
    out.parent.mkdir(parents=True, exist_ok=True)
    World.generate(world.seed, world.style, world.size_m).save(out)
    write_json(out / "fleet_item.json", {"key": key, "world": asdict(world)})
    return out


def ensure_drive(drive: FleetDrive, world_dir: Path, cache_dir: Path, image_wh: tuple[int, int]) -> Path:
    """The drive's bag in the cache (`<dir>/bag`), recorded when absent."""
    from cvgl_ros.atomic import write_json
    from cvgl_ros.sim.drive import record_drive

    key = drive_key(drive, image_wh)
    out = cache_dir / "drives" / f"{drive.name}-{key}"
    if (_marker(out) or {}).get("key") == key and (out / "bag" / "metadata.yaml").is_file():
        return out / "bag"
    if (out / "bag").exists():
        raise InputError(f"{out} exists but is not a finished fleet drive; remove it to regenerate")
    out.mkdir(parents=True, exist_ok=True)
    result = record_drive(world_dir, out / "bag", seed=drive.seed, duration_s=drive.duration_s, gnss=drive.gnss,
                          camera_hz=CAMERA_HZ, gnss_hz=GNSS_HZ, width=image_wh[0], height=image_wh[1],
                          progress=False, turn_rich=True)
    write_json(out / "fleet_item.json", {"key": key, "drive": asdict(drive), "counts": result.counts,
                                         "gnss_error": result.gnss_error_stats()})
    return out / "bag"


def without_motion_sensors(bag: Path) -> Path:
    """A copy of `bag` without /imu/data and /odom/wheel beside it (`<bag>_no_motion`), made once;
    the bag itself when it has neither."""
    from cvgl_ros.datasets.bag import BagWriter, bag_custom_data, bag_topics, read_messages

    if not any(t in bag_topics(bag) for t in MOTION_TOPICS):
        return bag
    out = bag.with_name(bag.name + "_no_motion")
    if (out / "metadata.yaml").is_file():
        return out
    with BagWriter(out) as writer:
        for key, value in bag_custom_data(bag).items():
            writer.set_custom_data(key, value)
        for topic, msgtype, t_ns, cdr in read_messages(bag, raw=True):
            if topic not in MOTION_TOPICS:
                writer.write_raw(topic, msgtype, t_ns, cdr)
    return out


def replay_lockstep(bag: str, out: str, tiles: str, model: str, log_dir: str, overrides: dict | None = None,
                    progress: bool = False) -> dict:
    """One replay through both nodes in lockstep (a worker process's job): its summary as a dict."""
    from cvgl_ros.replay import replay_bag

    summary = replay_bag(bag, out, tiles=tiles, model=model, lockstep=True, log_dir=log_dir, progress=progress,
                         overrides=overrides)
    return summary.to_dict()


def _git_commit() -> str:
    import subprocess

    try:
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5)
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_out_dir(out_dir: Path) -> Path:
    """Make `out_dir` and prove it writable with a probe file (InputError otherwise): before
    any long work starts. The probe is this function's own and is removed again."""
    import tempfile

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".cvgl-write-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write to the output directory {out_dir}: {exc.strerror or exc}") from None
    return out_dir


def score_fleet(out_dir: Path, drives, bags: dict, summaries: dict, meta: dict, timing: dict,
                progress: bool = True) -> dict:
    """Score the replayed drives (`out_dir/runs/<drive>/estimate`) and write fleet.json, fleet.md,
    fleet.png; `meta` (quick, motion_sensors, model, image_wh, workers) and `timing` go into the
    report, its scoring time and total added."""
    from tqdm import tqdm

    from cvgl_ros.atomic import write_json, write_text
    from cvgl_ros.evaluation.fleet_report import markdown_report, plot_drive_errors, plot_fleet

    t0 = time.monotonic()
    run_dir = Path(out_dir) / "runs"
    per_drive = []
    for d in tqdm(drives, desc="fleet scoring", unit="drive", disable=not progress):
        scored = score_drive(run_dir / d.name / "estimate", bags[d.name], seed=d.seed)
        plot_drive_errors(run_dir / d.name / "error_vs_time.png", d.name, scored["series"])
        s = summaries[d.name]
        per_drive.append({**asdict(d), "world": asdict(world_by_name(d.world)), **scored,
                          "replay": {k: s[k] for k in ("frames", "frames_processed", "frames_skipped", "poses",
                                                        "real_time_factor", "wall_s", "lockstep_timeouts")}})
    fleet = pool_methods(per_drive)
    timing = dict(timing, scoring=time.monotonic() - t0)
    timing["total"] = timing.get("total", 0.0) + timing["scoring"]
    for d in per_drive:
        d.pop("series")
    result = {"format": "cvgl-fleet/1", "fleet_version": FLEET_VERSION, **meta, "camera_hz": CAMERA_HZ,
              "gnss_hz": GNSS_HZ, "git_commit": _git_commit(), "fleet": fleet, "drives": per_drive,
              "timing_s": timing}
    result["acceptance"] = acceptance(per_drive, fleet, meta["motion_sensors"], failed=meta.get("failed") or {})
    write_json(Path(out_dir) / "fleet.json", result)
    write_text(Path(out_dir) / "fleet.md", markdown_report(result))
    plot_fleet(Path(out_dir) / "fleet.png", result)
    return result


def _replay_fleet(drives, bags: dict, world_dirs: dict, run_dir: Path, model: Path, workers: int, progress: bool,
                  log, grids: dict | None = None) -> tuple[dict, dict]:
    """Replay every drive (`workers` at once, fresh processes, each its own ROS domain); returns
    (replay summaries, failures) by drive name."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from cvgl_ros.atomic import write_json

    summaries, failed = {}, {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {}
        for d in drives:
            estimate = run_dir / d.name / "estimate"
            if estimate.exists():
                if not (run_dir / d.name / "replay.json").is_file():
                    raise InputError(f"{estimate} exists and was not written by evaluate-fleet; remove it or "
                                     "choose another --out")
                from cvgl_ros.datasets.bag import remove_bag

                (run_dir / d.name / "replay.json").unlink()
                remove_bag(estimate)  # this command's own output of an earlier run
            (run_dir / d.name).mkdir(parents=True, exist_ok=True)
            tiles = world_dirs[d.world] / "tiles.mbtiles"
            overrides = {"retrieval_index": str(grids[d.world])} if grids else None
            futures[d.name] = pool.submit(replay_lockstep, str(bags[d.name]), str(estimate), str(tiles), str(model),
                                          str(run_dir / d.name / "logs"), overrides, progress and workers == 1)
        for name, future in tqdm(futures.items(), desc="fleet replays", unit="drive", disable=not progress):
            try:
                summaries[name] = future.result()
            except Exception as exc:  # noqa: BLE001 - a failed drive is reported, the others still count
                failed[name] = f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"
                log(f"{name}: replay FAILED: {failed[name]}")
                continue
            s = summaries[name]
            write_json(run_dir / name / "replay.json", s)
            log(f"{name}: {s['frames_processed']}/{s['frames']} frames, real-time factor "
                f"{s['real_time_factor']:.2f}x, {s['lockstep_timeouts']} lockstep time-outs")
    return summaries, failed


def run_fleet(out_dir, cache_dir, model=None, quick: bool = False, motion_sensors: bool = True, workers: int = 1,
              progress: bool = True, log=None, drive_names=None, descriptor=None) -> dict:
    """Generate (once), replay and score the fleet; write fleet.json/md/png (module docstring).
    `descriptor` (a descriptor card): replay with the coarse stage, each world's grid built once."""
    from tqdm import tqdm

    from cvgl_ros.share import default_model_path
    from cvgl_ros.runtime.card import read_card

    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    t_start = time.monotonic()
    out_dir, cache_dir = check_out_dir(Path(out_dir)), check_out_dir(Path(cache_dir))
    if not (isinstance(workers, int) and workers >= 1):
        raise InputError(f"workers {workers!r} must be an integer >= 1")
    model = Path(model) if model else default_model_path()
    if model is None or not Path(model).is_file():
        raise InputError(f"no model: {model or 'models/*.onnx'} is missing (pass --model)")
    height, width = (int(v) for v in read_card(model)["image_hw"])
    image_wh = (width, height)
    drives = fleet_drives(quick, drive_names)
    timing = {}

    t0 = time.monotonic()
    world_dirs = {}
    for w in tqdm([world_by_name(n) for n in dict.fromkeys(d.world for d in drives)], desc="fleet worlds",
                  unit="world", disable=not progress):
        world_dirs[w.name] = ensure_world(w, cache_dir)
    timing["worlds"] = time.monotonic() - t0
    t0 = time.monotonic()
    bags = {}
    for d in tqdm(drives, desc="fleet drives", unit="drive", disable=not progress):
        bag = ensure_drive(d, world_dirs[d.world], cache_dir, image_wh)
        bags[d.name] = bag if motion_sensors else without_motion_sensors(bag)
    timing["drives"] = time.monotonic() - t0

    t0 = time.monotonic()
    run_dir = out_dir / "runs"
    run_dir.mkdir(exist_ok=True)
    grids = None
    if descriptor is not None:
        from cvgl_ros.evaluation.relocalization import ensure_grid
        from cvgl_ros.retrieval.encoders import DescriptorModel

        desc = DescriptorModel(descriptor)
        grids = {name: ensure_grid(path, desc, cache_dir, progress=False) for name, path in world_dirs.items()}
    summaries, failed = _replay_fleet(drives, bags, world_dirs, run_dir, model, workers, progress, log, grids)
    timing["replays"] = time.monotonic() - t0

    timing["total"] = time.monotonic() - t_start
    meta = {"quick": quick, "drives_named": list(drive_names or []), "motion_sensors": motion_sensors,
            "model": str(model), "image_wh": list(image_wh), "workers": workers,
            "retrieval": str(descriptor) if descriptor else None}
    if not summaries:
        raise InputError(f"every replay of the fleet failed; first: {next(iter(failed.values()))}")
    replayed = [d for d in drives if d.name in summaries]
    result = score_fleet(out_dir, replayed, bags, summaries, meta | {"failed": failed}, timing, progress=progress)
    return result
