"""PNGs of `cvgl evaluate-track`: trajectories (over the satellite map when a tile cache is
given), position error against time with the GNSS status, and error CDFs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cvgl_ros.evaluation.figures import pyplot, save_figure

COLORS = {"fused": "tab:green", "gnss_particle_filter": "tab:blue", "kalman_cv": "tab:purple", "gnss_raw": "tab:red"}
MAX_BACKGROUND_PX = 2048


def _satellite_background(tiles, datum, east_m, north_m, margin_m: float = 30.0):
    """(rgb, extent) of a north-up patch covering the trajectory, or None if nothing valid."""
    from cvgl_ros.tiles import PatchSampler

    ce, cn = 0.5 * (np.min(east_m) + np.max(east_m)), 0.5 * (np.min(north_m) + np.max(north_m))
    span = max(np.ptp(east_m), np.ptp(north_m)) + 2 * margin_m
    mpp = max(0.25, span / MAX_BACKGROUND_PX)
    size_px = int(np.ceil(span / mpp))
    with PatchSampler(tiles) as sampler:
        patch = sampler.patch_enu(datum, float(ce), float(cn), size_px, mpp)
    if patch.valid_fraction == 0.0:
        return None
    half = 0.5 * size_px * mpp
    return patch.rgb, (ce - half, ce + half, cn - half, cn + half)


def plot_trajectories(path: Path, truth, tracks: dict, datum=None, tiles=None) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(9, 8))
    background = None
    if tiles is not None:
        background = _satellite_background(tiles, datum, truth.east_m, truth.north_m)
    if background is not None:
        rgb, extent = background
        ax.imshow(rgb, extent=extent, origin="upper", interpolation="bilinear")
    ax.plot(truth.east_m, truth.north_m, color="black", lw=2.5, label="ground truth", zorder=2)
    for name in ("gnss_raw", "kalman_cv", "gnss_particle_filter", "fused"):
        track = tracks.get(name)
        if track is None or track.poses.t_s.size == 0:
            continue
        p = track.poses
        if name == "gnss_raw":
            ax.scatter(p.east_m, p.north_m, s=4, color=COLORS[name], alpha=0.6, label="raw GNSS", zorder=3)
        else:
            ax.plot(p.east_m, p.north_m, color=COLORS[name], lw=1.2, label=_label(name), zorder=4)
    ax.set_aspect("equal")
    ax.set_xlabel("east (m, map frame)")
    ax.set_ylabel("north (m, map frame)")
    ax.set_title("trajectories" + (" over the satellite map" if background is not None else ""))
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _no_fix_spans(gnss):
    """(start, end) times of NO_FIX runs."""
    spans, start = [], None
    dt = np.median(np.diff(gnss.t_s)) if gnss.t_s.size > 1 else 0.2
    for t, ok in zip(gnss.t_s, gnss.valid):
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, gnss.t_s[-1] + dt))
    return spans


def plot_error_vs_time(path: Path, tracks: dict, gnss, t0: float) -> None:
    plt = pyplot()

    fig, (ax, ax_yaw) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    for i, (a, b) in enumerate(_no_fix_spans(gnss)):
        for axis in (ax, ax_yaw):
            axis.axvspan(a - t0, b - t0, color="0.8", alpha=0.7, lw=0, label="GNSS NO_FIX" if i == 0 and axis is ax else None)
    for name in ("gnss_raw", "kalman_cv", "gnss_particle_filter", "fused"):
        track = tracks.get(name)
        if track is None or track.error_m.size == 0:
            continue
        t = track.poses.t_s - t0
        if name == "gnss_raw":
            ax.scatter(t, track.error_m, s=3, color=COLORS[name], alpha=0.6, label="raw GNSS")
        else:
            ax.plot(t, track.error_m, color=COLORS[name], lw=1.0, label=_label(name))
            if track.yaw_error_deg is not None:
                ax_yaw.plot(t, track.yaw_error_deg, color=COLORS[name], lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("position error (m)")
    ax.set_title("position error against time (grey: GNSS NO_FIX)")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    ax_yaw.set_yscale("symlog", linthresh=1.0)
    ax_yaw.set_ylabel("|yaw error| (deg)")
    ax_yaw.set_xlabel("time since start (s)")
    ax_yaw.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_error_cdf(path: Path, tracks: dict) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for name in ("fused", "gnss_particle_filter", "kalman_cv", "gnss_raw"):
        track = tracks.get(name)
        if track is None or track.error_m.size == 0:
            continue
        e = np.sort(track.error_m)
        ax.plot(e, np.arange(1, e.size + 1) / e.size, color=COLORS[name], lw=1.5,
                label=f"{_label(name)} (mean {e.mean():.2f} m)")
    for q in (0.5, 0.9, 0.95, 0.99):
        ax.axhline(q, color="0.6", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("position error (m)")
    ax.set_ylabel("fraction of samples")
    ax.set_ylim(0, 1.01)
    ax.set_title("error CDF (dotted: 50/90/95/99 %)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _label(name: str) -> str:
    from cvgl_ros.evaluation.track import METHODS

    return METHODS.get(name, name)


def write_plots(out_dir: Path, truth, tracks: dict, gnss, datum=None, tiles=None) -> list[str]:
    """Write the three PNGs into `out_dir`; returns their file names."""
    out_dir = Path(out_dir)
    plot_trajectories(out_dir / "trajectories.png", truth, tracks, datum=datum, tiles=tiles)
    plot_error_vs_time(out_dir / "error_vs_time.png", tracks, gnss, t0=float(truth.t_s[0]))
    plot_error_cdf(out_dir / "error_cdf.png", tracks)
    return ["trajectories.png", "error_vs_time.png", "error_cdf.png"]
