"""Plots of pose-estimation errors (matplotlib, written atomically)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cvgl_ros.evaluation.figures import pyplot, save_figure


def _cdf(ax, values: np.ndarray, label: str, limit: float) -> None:
    v = np.sort(np.asarray(values, dtype=float))
    v = np.where(np.isfinite(v), v, limit * 10)
    ax.plot(v, np.arange(1, len(v) + 1) / len(v) * 100.0, label=label)


def plot_error_cdf(errors: dict[str, np.ndarray], path: str | Path, title: str, extra: dict | None = None) -> Path:
    """Cumulative distribution of position, lateral, longitudinal (m) and azimuth (deg) errors.

    `errors` is `pose_metrics.pose_errors(...)`; `extra` maps a label to more position errors
    (e.g. the volume's best cell) drawn dashed on the position panel.
    """
    plt = pyplot()
    fig, (ax_m, ax_d) = plt.subplots(1, 2, figsize=(11, 4.2))
    limit_m = 10.0
    for key, label in (("position_m", "position"), ("lateral_m", "lateral"), ("longitudinal_m", "longitudinal")):
        _cdf(ax_m, errors[key], f"{label} (median {np.median(errors[key]):.2f} m)", limit_m)
    for label, values in (extra or {}).items():
        v = np.sort(np.asarray(values, dtype=float))
        ax_m.plot(v, np.arange(1, len(v) + 1) / len(v) * 100.0, "--", label=f"{label} (median {np.median(v):.2f} m)")
    for d in (1, 3, 5):
        ax_m.axvline(d, color="0.8", lw=0.8, zorder=0)
    ax_m.set(xlim=(0, limit_m), ylim=(0, 100), xlabel="error (m)", ylabel="pairs below (%)", title="position errors")
    ax_m.legend(loc="lower right", fontsize=8)
    ax_m.grid(alpha=0.3)
    limit_d = 10.0
    _cdf(ax_d, errors["azimuth_deg"], f"azimuth (median {np.median(errors['azimuth_deg']):.2f} deg)", limit_d)
    for d in (1, 3, 5):
        ax_d.axvline(d, color="0.8", lw=0.8, zorder=0)
    ax_d.set(xlim=(0, limit_d), ylim=(0, 100), xlabel="error (deg)", title="azimuth error")
    ax_d.legend(loc="lower right", fontsize=8)
    ax_d.grid(alpha=0.3)
    fig.suptitle(f"{title} ({len(errors['position_m'])} pairs)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
