"""Trajectory evaluation of a localization run against ground truth (`cvgl evaluate-track`).

Inputs are two bags: the *estimate* bag holds the fused poses on `/cvgl/pose`
(`geometry_msgs/PoseWithCovarianceStamped`, frame `map`); the *truth* bag is the recording
(`/ground_truth/pose`, `/gnss/fix`, its `map` datum in metadata). Four trajectories are
scored against the truth, interpolated at each one's own stamps:

* `fused`: the estimate bag (cross-view + GNSS particle filter);
* `gnss_raw`: the raw fixes (valid ones; NO_FIX epochs have no position);
* `gnss_particle_filter`: the particle filter in GNSS-only mode run here on the raw fixes
  (the "GPS" row of Table III of "Cross-View Matching for Vehicle Localization by Learning
  Geographically Local Representations"), an estimate at every GNSS epoch;
* `kalman_cv`: a constant-velocity Kalman filter on the raw fixes (filterpy), the plain
  smoother a user would otherwise pick, an estimate at every GNSS epoch.

For each: position error mean and 50/90/95/99 % quantiles (as in Table III), maximum,
lateral and longitudinal errors (along the *true* heading, `cvgl_ros.geo.vehicle_errors`),
and the absolute yaw error where the trajectory has a yaw. Written atomically to
`DIR/metrics.json` and `DIR/table.md`, with the PNGs of `track_plots`.

Estimate and truth must belong together (`check_belong_together`), else InputError before
any work: the estimate's recorded datum (when it records one) is the truth's to within
`SAME_DATUM_M`, the estimate's poses overlap the truth's time span, and an estimate written
by `cvgl replay` was replayed from this very truth bag (its source fingerprint,
`cvgl_ros.datasets.bag_identity`). What was checked is in metrics.json under "checks".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvgl_ros.atomic import write_json, write_text
from cvgl_ros.datasets.bag import (COVARIANCE_TYPE_UNKNOWN, NAVSAT_STATUS_NO_FIX, TOPIC_GNSS_FIX, TOPIC_GT_POSE,
                                   bag_datum, bag_topics, read_messages, recorded_datum)
from cvgl_ros.errors import InputError
from cvgl_ros.filter.kalman_baseline import run_kalman
from cvgl_ros.filter.particle_filter import ParticleFilter, ParticleFilterConfig
from cvgl_ros.geo.datum import Datum
from cvgl_ros.geo.vehicle_errors import lateral_longitudinal
from cvgl_ros.geo.yaw import angle_diff, quaternion_to_yaw
from cvgl_ros.stamps import stamp_to_ns

TOPIC_FUSED_POSE = "/cvgl/pose"
MSG_POSE_WITH_COVARIANCE = "geometry_msgs/msg/PoseWithCovarianceStamped"
QUANTILES = (50, 90, 95, 99)
SAME_DATUM_M = 0.01  # two map frames whose origins are closer than this are one frame
METHODS = {  # name -> label in the table and plots
    "fused": "cross-view + GNSS (particle filter)",
    "gnss_particle_filter": "GNSS-only particle filter",
    "kalman_cv": "GNSS constant-velocity Kalman",
    "gnss_raw": "raw GNSS",
}


@dataclass(frozen=True)
class Poses:
    """A trajectory in the `map` frame; `yaw_enu_rad` is None when it has no heading."""

    t_s: np.ndarray
    east_m: np.ndarray
    north_m: np.ndarray
    yaw_enu_rad: np.ndarray | None = None


@dataclass(frozen=True)
class GnssFixes:
    t_s: np.ndarray
    east_m: np.ndarray   # NaN where NO_FIX
    north_m: np.ndarray
    sigma_m: np.ndarray  # NaN where the receiver reports no covariance
    valid: np.ndarray


@dataclass(frozen=True)
class ScoredTrack:
    """A trajectory with its errors against the truth at its own stamps."""

    name: str
    poses: Poses
    error_m: np.ndarray
    lateral_m: np.ndarray
    longitudinal_m: np.ndarray
    yaw_error_deg: np.ndarray | None


# -- reading ------------------------------------------------------------------------------

def _require_topic(path, topic: str, msgtype: str) -> None:
    topics = bag_topics(path)
    if topic not in topics:
        raise InputError(f"bag {path} has no {topic} topic (topics: {', '.join(sorted(topics)) or 'none'})")
    if topics[topic][0] != msgtype:
        raise InputError(f"{topic} in {path} is {topics[topic][0]}, expected {msgtype}")
    if topics[topic][1] == 0:
        raise InputError(f"{topic} in {path} holds no messages")


def _pose_rows(path, topic: str, msgtype: str, covariance: bool) -> Poses:
    _require_topic(path, topic, msgtype)
    # One pose per stamp: the last one recorded, i.e. the filter's latest word on that time (a
    # measurement that came late is applied at its stamp and the newest pose published again).
    by_stamp = {}
    for _, _, _, msg in read_messages(path, [topic]):
        pose = msg.pose.pose if covariance else msg.pose
        q = pose.orientation
        row = (pose.position.x, pose.position.y, float(quaternion_to_yaw(q.x, q.y, q.z, q.w)))
        if all(math.isfinite(v) for v in row):
            by_stamp[stamp_to_ns(msg.header.stamp)] = row
    if not by_stamp:
        raise InputError(f"{topic} in {path} holds no finite pose")
    stamps = sorted(by_stamp)
    arr = np.array([by_stamp[t] for t in stamps], dtype=float)
    return Poses(np.array(stamps, dtype=np.int64) * 1e-9, arr[:, 0], arr[:, 1], arr[:, 2])


def load_truth(path) -> Poses:
    """`/ground_truth/pose` (PoseStamped, `map`) in stamp order."""
    return _pose_rows(path, TOPIC_GT_POSE, "geometry_msgs/msg/PoseStamped", covariance=False)


def load_estimate(path, topic: str = TOPIC_FUSED_POSE) -> Poses:
    """The fused poses (PoseWithCovarianceStamped, `map`) in stamp order."""
    return _pose_rows(path, topic, MSG_POSE_WITH_COVARIANCE, covariance=True)


def load_gnss(path, datum: Datum) -> GnssFixes:
    """`/gnss/fix` converted to the `map` frame of `datum`; NO_FIX and non-finite fixes invalid."""
    _require_topic(path, TOPIC_GNSS_FIX, "sensor_msgs/msg/NavSatFix")
    rows = []
    for _, _, _, msg in read_messages(path, [TOPIC_GNSS_FIX]):
        cov = np.asarray(msg.position_covariance, dtype=float)
        sigma = math.nan
        if msg.position_covariance_type != COVARIANCE_TYPE_UNKNOWN and np.all(np.isfinite(cov[[0, 4]])):
            sigma = math.sqrt(max(0.5 * (cov[0] + cov[4]), 0.0)) or math.nan
        ok = (msg.status.status != NAVSAT_STATUS_NO_FIX and math.isfinite(msg.latitude) and math.isfinite(msg.longitude)
              and abs(msg.latitude) <= 90.0 and abs(msg.longitude) <= 180.0)
        alt = msg.altitude if ok and math.isfinite(msg.altitude) else datum.alt_m
        rows.append((stamp_to_ns(msg.header.stamp) * 1e-9, msg.latitude if ok else datum.lat_deg,
                     msg.longitude if ok else datum.lon_deg, alt, sigma, ok))
    rows.sort(key=lambda r: r[0])
    arr = np.array([r[:5] for r in rows], dtype=float).reshape(-1, 5)
    t, sigma = arr[:, 0], arr[:, 4]
    valid = np.array([r[5] for r in rows], dtype=bool)
    east, north, _ = datum.to_enu(arr[:, 1], arr[:, 2], arr[:, 3])
    east = np.where(valid, east, np.nan)
    north = np.where(valid, north, np.nan)
    return GnssFixes(t, east, north, sigma, valid)


# -- scoring ------------------------------------------------------------------------------

def truth_at(truth: Poses, t_s: np.ndarray) -> tuple[np.ndarray, Poses]:
    """Truth interpolated at the stamps inside its time span: (mask of those stamps, poses)."""
    t = np.asarray(t_s, dtype=float)
    inside = (t >= truth.t_s[0]) & (t <= truth.t_s[-1])
    ti = t[inside]
    yaw = np.interp(ti, truth.t_s, np.unwrap(truth.yaw_enu_rad))
    return inside, Poses(ti, np.interp(ti, truth.t_s, truth.east_m), np.interp(ti, truth.t_s, truth.north_m), yaw)


def score(name: str, poses: Poses, truth: Poses) -> ScoredTrack:
    inside, ref = truth_at(truth, poses.t_s)
    kept = Poses(poses.t_s[inside], poses.east_m[inside], poses.north_m[inside],
                 None if poses.yaw_enu_rad is None else poses.yaw_enu_rad[inside])
    de, dn = kept.east_m - ref.east_m, kept.north_m - ref.north_m
    lateral, longitudinal = lateral_longitudinal(de, dn, ref.yaw_enu_rad)
    yaw_err = None if kept.yaw_enu_rad is None else np.degrees(np.abs(angle_diff(kept.yaw_enu_rad, ref.yaw_enu_rad)))
    return ScoredTrack(name, kept, np.hypot(de, dn), lateral, longitudinal, yaw_err)


def position_error_stats(errors_m) -> dict:
    """Table III numbers of position errors: n, mean, the QUANTILES (50/90/95/99 %) and max, m."""
    e = np.asarray(errors_m, dtype=float)
    out: dict = {"n": int(e.size)}
    if e.size == 0:
        return out
    out["mean_m"] = float(e.mean())
    for q, v in zip(QUANTILES, np.percentile(e, QUANTILES)):
        out[f"p{q}_m"] = float(v)
    out["max_m"] = float(e.max())
    return out


def error_stats(track: ScoredTrack) -> dict:
    """Table III numbers (mean, 50/90/95/99 %), max, lateral/longitudinal and yaw errors."""
    out: dict = {"label": METHODS.get(track.name, track.name), **position_error_stats(track.error_m)}
    if track.error_m.size == 0:
        return out
    for key, values in (("lateral", np.abs(track.lateral_m)), ("longitudinal", np.abs(track.longitudinal_m))):
        out[f"{key}_mean_m"] = float(values.mean())
        out[f"{key}_p95_m"] = float(np.percentile(values, 95))
    if track.yaw_error_deg is not None:
        out["yaw_mean_deg"] = float(track.yaw_error_deg.mean())
        out["yaw_p50_deg"] = float(np.median(track.yaw_error_deg))
        out["yaw_p95_deg"] = float(np.percentile(track.yaw_error_deg, 95))
    return out


def gnss_only_particle_filter(gnss: GnssFixes, seed: int = 0, num_particles: int = 2000) -> Poses:
    """The paper's GNSS-only baseline: the particle filter without cross-view, at every epoch."""
    pf = ParticleFilter(ParticleFilterConfig(num_particles=num_particles, use_cross_view=False), seed=seed)
    rows = []
    for t, e, n, s, ok in zip(gnss.t_s, gnss.east_m, gnss.north_m, gnss.sigma_m, gnss.valid):
        pf.add_gnss(float(t), float(e), float(n), float(s), bool(ok))
        est = pf.estimate(float(t))
        if est.initialized:
            rows.append((float(t), est.east_m, est.north_m, est.yaw_enu_rad))
    arr = np.array(rows, dtype=float).reshape(-1, 4)
    return Poses(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])


def kalman_on_gnss(gnss: GnssFixes) -> Poses:
    kt = run_kalman(gnss.t_s, gnss.east_m, gnss.north_m, np.where(np.isfinite(gnss.sigma_m), gnss.sigma_m, 5.0),
                    gnss.valid)
    k = kt.initialized
    return Poses(kt.t_s[k], kt.east_m[k], kt.north_m[k], kt.yaw_enu_rad[k])


def markdown_table(metrics: dict) -> str:
    """Table III style: position error mean and quantiles, then lateral/longitudinal/yaw."""
    lines = [
        "| method | mean (m) | 50 % (m) | 90 % (m) | 95 % (m) | 99 % (m) | lateral mean (m) | longitudinal mean (m) | yaw mean (deg) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in metrics["methods"].items():
        if m.get("n", 0) == 0:
            lines.append(f"| {m['label']} | no samples | | | | | | | |")
            continue
        yaw = f"{m['yaw_mean_deg']:.2f}" if "yaw_mean_deg" in m else "–"
        lines.append(f"| {m['label']} | {m['mean_m']:.2f} | {m['p50_m']:.2f} | {m['p90_m']:.2f} | {m['p95_m']:.2f} | "
                     f"{m['p99_m']:.2f} | {m['lateral_mean_m']:.2f} | {m['longitudinal_mean_m']:.2f} | {yaw} |")
    g = metrics["gnss"]
    lines.append("")
    lines.append(f"{g['epochs']} GNSS epochs, {100 * g['no_fix_fraction']:.1f} % NO_FIX; errors against "
                 f"`/ground_truth/pose` interpolated at each trajectory's stamps.")
    return "\n".join(lines) + "\n"


def check_belong_together(estimate_bag, truth_bag, datum: Datum, fused: Poses, truth: Poses) -> dict:
    """InputError unless the estimate was made on the truth's drive in the truth's map frame
    (see the module docstring); what was checked, for metrics.json."""
    from cvgl_ros.datasets.bag_identity import bag_fingerprint, source_of

    checks = {}
    est_datum = recorded_datum(estimate_bag)  # invalid: InputError
    if est_datum is None:
        checks["datum"] = "not recorded in the estimate"
    else:
        e, n, u = (float(v) for v in datum.to_enu(est_datum.lat_deg, est_datum.lon_deg, est_datum.alt_m))
        offset_m = math.sqrt(e * e + n * n + u * u)
        if offset_m > SAME_DATUM_M:
            raise InputError(f"the estimate's map frame (datum {est_datum.lat_deg:.7f},{est_datum.lon_deg:.7f},"
                             f"{est_datum.alt_m:.2f}) is anchored {offset_m:.2f} m from the truth's "
                             f"({datum.lat_deg:.7f},{datum.lon_deg:.7f},{datum.alt_m:.2f}): {estimate_bag} does not "
                             f"belong to {truth_bag}")
        checks["datum"] = "same"
    source, fingerprint = source_of(estimate_bag)
    if fingerprint is None:
        checks["source"] = "not recorded in the estimate"
    else:
        truth_fingerprint = bag_fingerprint(truth_bag)
        if fingerprint != truth_fingerprint:
            raise InputError(f"{estimate_bag} was replayed from another recording ({source}, fingerprint "
                             f"{fingerprint}) than {truth_bag} (fingerprint {truth_fingerprint})")
        checks["source"] = "same recording"
    t0, t1 = truth.t_s[0], truth.t_s[-1]
    inside = (fused.t_s >= t0) & (fused.t_s <= t1)
    if not inside.any():
        raise InputError(f"the estimate's poses ({fused.t_s[0]:.3f} to {fused.t_s[-1]:.3f} s) do not overlap the "
                         f"ground truth's time span ({t0:.3f} to {t1:.3f} s): {estimate_bag} does not belong to "
                         f"{truth_bag}")
    checks["poses_within_truth_span"] = float(inside.mean())
    return checks


def evaluate_track(estimate_bag, truth_bag, out_dir, tiles=None, seed: int = 0, num_particles: int = 2000,
                   estimate_topic: str = TOPIC_FUSED_POSE) -> dict:
    """Score the fused run and the GNSS baselines; write metrics.json, table.md and PNGs.

    Refuses (InputError) an estimate that does not belong to the truth (`check_belong_together`)."""
    from cvgl_ros.evaluation.track_plots import write_plots

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed {seed!r} must be an integer >= 0")
    if isinstance(num_particles, bool) or not isinstance(num_particles, (int, np.integer)) or num_particles < 1:
        raise InputError(f"number of particles {num_particles!r} must be an integer >= 1")
    out_dir = Path(out_dir)
    datum = bag_datum(truth_bag)
    truth = load_truth(truth_bag)
    if truth.t_s.size < 2:
        raise InputError(f"{TOPIC_GT_POSE} in {truth_bag} needs at least 2 poses")
    fused = load_estimate(estimate_bag, estimate_topic)
    checks = check_belong_together(estimate_bag, truth_bag, datum, fused, truth)
    gnss = load_gnss(truth_bag, datum)
    tracks = {
        "fused": score("fused", fused, truth),
        "gnss_particle_filter": score("gnss_particle_filter", gnss_only_particle_filter(gnss, seed, num_particles), truth),
        "kalman_cv": score("kalman_cv", kalman_on_gnss(gnss), truth),
        "gnss_raw": score("gnss_raw", Poses(gnss.t_s[gnss.valid], gnss.east_m[gnss.valid], gnss.north_m[gnss.valid]),
                          truth),
    }
    if tracks["fused"].error_m.size == 0:
        raise InputError(f"no pose of {estimate_bag} falls within the ground truth's time span "
                         f"[{truth.t_s[0]:.3f}, {truth.t_s[-1]:.3f}] s")
    metrics = {
        "estimate_bag": str(estimate_bag),
        "truth_bag": str(truth_bag),
        "datum": datum.to_dict(),
        "checks": checks,
        "duration_s": float(truth.t_s[-1] - truth.t_s[0]),
        "gnss": {"epochs": int(gnss.t_s.size), "fixes": int(gnss.valid.sum()),
                 "no_fix_fraction": float(1.0 - gnss.valid.mean()) if gnss.t_s.size else 0.0},
        "methods": {name: error_stats(track) for name, track in tracks.items()},
    }
    metrics["pngs"] = write_plots(out_dir, truth, tracks, gnss, datum=datum, tiles=tiles)
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "table.md", markdown_table(metrics))
    return metrics
