"""Pose-estimation metrics of the cross-view literature, from estimated and true poses.

* "Learning Dense Flow Field for Highly-accurate Cross-view Camera Localization" (seed 002,
  Table 1): mean and median position error (m); lateral and longitudinal recall at 1 m and
  5 m; azimuth recall at 1 and 5 degrees; mean and median azimuth error (degrees).
* "Federated Learning for Cross-view Geo-localization" (seed 000, Tables I-II): lateral,
  longitudinal and azimuth recall at 1/3/5 m and degrees, and the combined recalls
  (lateral < d m and azimuth < d degrees, d = 1, 3, 5).

Lateral/longitudinal split the position error along the *true* heading
(`cvgl_ros.geo.vehicle_errors`); recall at d is the fraction with |error| < d. Recalls are
percentages, as the papers print them.
"""
from __future__ import annotations

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.vehicle_errors import lateral_longitudinal
from cvgl_ros.geo.yaw import angle_diff

THRESHOLDS = (1, 3, 5)


def pose_errors(estimate: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 3) estimated and true (east_m, north_m, yaw_enu_rad) -> per-pose error arrays."""
    est = np.asarray(estimate, dtype=float)
    tru = np.asarray(truth, dtype=float)
    if est.shape != tru.shape or est.ndim != 2 or est.shape[1] != 3:
        raise InputError(f"estimates {est.shape} and truth {tru.shape} must both be (N, 3)")
    if len(est) == 0:
        raise InputError("no poses to evaluate")
    de, dn = est[:, 0] - tru[:, 0], est[:, 1] - tru[:, 1]
    lateral, longitudinal = lateral_longitudinal(de, dn, tru[:, 2])
    yaw_err = np.degrees(np.abs(angle_diff(est[:, 2], tru[:, 2])))
    position = np.hypot(de, dn)
    # A non-finite estimate counts as infinitely wrong (never a NaN metric).
    bad = ~np.all(np.isfinite(est), axis=1)
    for arr in (position, lateral, longitudinal, yaw_err):
        arr[bad] = np.inf
    return {"position_m": position, "lateral_m": np.abs(lateral), "longitudinal_m": np.abs(longitudinal),
            "azimuth_deg": yaw_err}


def _recall(errors: np.ndarray, threshold: float) -> float:
    return float(100.0 * np.mean(errors < threshold))


def _finite_mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if np.all(np.isfinite(x)) else float("inf")


def pose_metrics(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Every metric of seed 002 Table 1 and seed 000 Tables I-II (recalls in %)."""
    err = pose_errors(estimate, truth)
    m: dict[str, float] = {"count": int(len(err["position_m"]))}
    m["position_mean_m"] = _finite_mean(err["position_m"])
    m["position_median_m"] = float(np.median(err["position_m"]))
    m["lateral_median_m"] = float(np.median(err["lateral_m"]))
    m["longitudinal_median_m"] = float(np.median(err["longitudinal_m"]))
    m["azimuth_mean_deg"] = _finite_mean(err["azimuth_deg"])
    m["azimuth_median_deg"] = float(np.median(err["azimuth_deg"]))
    for d in THRESHOLDS:
        m[f"lateral_recall_{d}m"] = _recall(err["lateral_m"], d)
        m[f"longitudinal_recall_{d}m"] = _recall(err["longitudinal_m"], d)
        m[f"azimuth_recall_{d}deg"] = _recall(err["azimuth_deg"], d)
        m[f"lateral_{d}m_and_azimuth_{d}deg_recall"] = float(
            100.0 * np.mean((err["lateral_m"] < d) & (err["azimuth_deg"] < d)))
        m[f"longitudinal_{d}m_and_azimuth_{d}deg_recall"] = float(
            100.0 * np.mean((err["longitudinal_m"] < d) & (err["azimuth_deg"] < d)))
        m[f"position_recall_{d}m"] = _recall(err["position_m"], d)
    return m


def table1_row(metrics: dict[str, float]) -> dict[str, float]:
    """The columns of seed 002 Table 1, in its order."""
    keys = ("position_mean_m", "position_median_m", "lateral_recall_1m", "lateral_recall_5m",
            "longitudinal_recall_1m", "longitudinal_recall_5m", "azimuth_recall_1deg", "azimuth_recall_5deg",
            "azimuth_mean_deg", "azimuth_median_deg")
    return {k: metrics[k] for k in keys}


def truth_cell(shape: tuple[int, int, int], yaw_bins: np.ndarray, cell_m: float, east: float, north: float,
               yaw: float, wraps: bool) -> tuple[int, int, int] | None:
    """Nearest (yaw bin, row, col) of a pose given relative to the volume centre; None when outside."""
    k, h, w = shape
    col = int(round(east / cell_m + (w - 1) / 2))
    row = int(round((h - 1) / 2 - north / cell_m))
    step = float(yaw_bins[1] - yaw_bins[0])
    rel = float((yaw - yaw_bins[0]) % (2 * np.pi)) if wraps else float((yaw - yaw_bins[0] + np.pi) % (2 * np.pi) - np.pi)
    kk = int(round(rel / step)) % k if wraps else int(round(rel / step))
    if not (0 <= col < w and 0 <= row < h and 0 <= kk < k):
        return None
    return kk, row, col


def randomized_pit(log_prob: np.ndarray, cell: tuple[int, int, int] | None, u: float) -> float:
    """Probability integral transform of the truth under a discrete volume (randomized for the
    truth's own cell): the mass of the cells more likely than the truth's cell plus u times that
    cell's mass. Uniform on [0, 1] when the volume is calibrated; 1 when the truth is outside."""
    if cell is None:
        return 1.0
    p = np.exp(log_prob.astype(np.float64) - np.max(log_prob))
    p /= p.sum()
    p_truth = p[cell]
    return float(p[p > p_truth].sum() + u * p_truth)


def calibration(pit: np.ndarray) -> dict[str, float]:
    """How often the truth lies in the 50 / 90 % highest-probability region (50 / 90 when calibrated)."""
    pit = np.asarray(pit, dtype=float)
    return {"truth_in_hpd50_percent": float(100 * np.mean(pit <= 0.5)),
            "truth_in_hpd90_percent": float(100 * np.mean(pit <= 0.9))}
