"""The fleet benchmark's report: the Markdown tables and the PNGs (`cvgl_ros.evaluation.fleet`).

* `markdown_report(result)`: the fleet rows per method, one row per drive, the acceptance
  checks and the wall times;
* `plot_fleet(path, result)`: per drive, the p99 (top) and maximum (bottom) position error
  of the fused pose, raw GNSS and the GNSS-only particle filter on a log scale, 10 m dashed,
  "fused worse" marked where the fused pose loses to raw GNSS;
* `plot_drive_errors(path, name, series)`: one drive's error against time, every method, the
  NO_FIX epochs marked.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cvgl_ros.evaluation.fleet import METHOD_ORDER

def _fmt(v, digits=2, unit=""):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}{unit}"


def _which(result: dict) -> str:
    """'quick, ' or 'named, ' (`--drives`) before the drive count: not the whole fleet."""
    return "quick, " if result["quick"] else "named, " if result.get("drives_named") else ""


def markdown_report(result: dict) -> str:
    labels = {"fused": "fused (cross-view + GNSS)", "gnss_raw": "raw GNSS",
              "gnss_particle_filter": "GNSS-only particle filter", "kalman_cv": "GNSS constant-velocity Kalman"}
    lines = [f"# Fleet accuracy ({_which(result)}{len(result['drives'])} drives, "
             f"{'with' if result['motion_sensors'] else 'without'} IMU/wheel odometry)", "",
             f"Model `{result['model']}`; {result['camera_hz']:g} Hz camera {result['image_wh'][0]}x"
             f"{result['image_wh'][1]}, {result['gnss_hz']:g} Hz GNSS, lockstep replay; commit {result['git_commit']}.",
             "", "## Fleet (every pose of every drive pooled)", "",
             "| method | mean (m) | p50 (m) | p95 (m) | p99 (m) | max (m) | s > 5 m | s > 10 m | yaw mean (deg) "
             "| yaw p99 (deg) | mean NEES | HPL coverage |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in METHOD_ORDER:
        m = result["fleet"].get(name)
        if not m:
            continue
        nees = _fmt(m.get("nees_mean"))
        if "nees_drive_min" in m:
            nees += f" ({m['nees_drive_min']:.1f}–{m['nees_drive_max']:.1f})"
        cov = m.get("hpl_coverage")
        lines.append(f"| {labels[name]} | {_fmt(m['mean_m'])} | {_fmt(m['p50_m'])} | {_fmt(m['p95_m'])} | "
                     f"{_fmt(m['p99_m'])} | {_fmt(m['max_m'])} | {_fmt(m['seconds_over_5m'], 0)} | "
                     f"{_fmt(m['seconds_over_10m'], 0)} | {_fmt(m.get('yaw_mean_deg'))} | "
                     f"{_fmt(m.get('yaw_p99_deg'), 1)} | {nees} | {'–' if cov is None else f'{100 * cov:.1f} %'} |")
    lines += ["", f"Total {result['fleet']['fused']['duration_s'] / 60:.1f} min of fused poses; NEES range over "
              "drives in brackets (2 = consistent).", "", "## Per drive", "",
              "| drive | world | GNSS | fused mean / p99 / max (m) | raw GNSS mean / p99 / max (m) "
              "| GNSS-only PF p99 / max (m) | Kalman p99 (m) | fused s > 10 m | diverged (s) | fused yaw p99 (deg) "
              "| NEES | HPL cov. |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in result["drives"]:
        f, r = d["methods"]["fused"], d["methods"]["gnss_raw"]
        p, k = d["methods"]["gnss_particle_filter"], d["methods"]["kalman_cv"]
        world = d["world"]
        cov = f.get("hpl_coverage")
        lines.append(
            f"| {d['name']} | {world['style']} {world['seed']}{' (trained on)' if world['trained_on'] else ''} | "
            f"{d['gnss']} | {_fmt(f['mean_m'])} / {_fmt(f['p99_m'])} / {_fmt(f['max_m'])} | "
            f"{_fmt(r['mean_m'])} / {_fmt(r['p99_m'])} / {_fmt(r['max_m'])} | "
            f"{_fmt(p['p99_m'])} / {_fmt(p['max_m'])} | "
            f"{_fmt(k['p99_m'])} | {_fmt(f['seconds_over_10m'], 1)} | {_fmt(f['divergence_s'], 1)} | "
            f"{_fmt(f.get('yaw_p99_deg'), 1)} | {_fmt(f.get('nees_mean'), 1)} | "
            f"{'–' if cov is None else f'{100 * cov:.1f} %'} |")
    lines += ["", "*diverged*: the longest stretch with the fused error over 10 m while raw GNSS was valid and "
              "within 10 m."]
    if result.get("failed"):
        lines += ["", "**Replays that failed** (not in the tables):", ""]
        lines += [f"- {name}: {why}" for name, why in result["failed"].items()]
    lines += ["", "## Acceptance: what a fused pose must meet before it ships", ""]
    for a in result["acceptance"]:
        lines.append(f"- [{'x' if a['passed'] else ' '}] {a['check']}: {a['detail']}")
    t = result["timing_s"]
    lines += ["", f"Wall time: {t['total']:.0f} s (worlds {t['worlds']:.0f} s, drives {t['drives']:.0f} s, replays "
              f"{t['replays']:.0f} s, scoring {t['scoring']:.0f} s).", ""]
    return "\n".join(lines)


def plot_fleet(path: Path, result: dict) -> None:
    """Per-drive p99 and max error, fused vs raw GNSS vs the GNSS-only filter, log scale."""
    from cvgl_ros.evaluation.figures import pyplot, save_figure

    plt = pyplot()

    drives = result["drives"]
    names = [d["name"] for d in drives]
    x = np.arange(len(drives))
    series = (("fused", "fused (cross-view + GNSS)", "#1f77b4"), ("gnss_raw", "raw GNSS", "#7f7f7f"),
              ("gnss_particle_filter", "GNSS-only particle filter", "#ff7f0e"))
    fig, axes = plt.subplots(2, 1, figsize=(max(9.0, 0.62 * len(drives) + 3.0), 8.0), sharex=True)
    width = 0.27
    for ax, stat, title in ((axes[0], "p99_m", "99th percentile position error"),
                            (axes[1], "max_m", "maximum position error")):
        lowest = np.inf
        for i, (key, label, color) in enumerate(series):
            values = [max(d["methods"][key].get(stat, np.nan), 0.05) for d in drives]
            ax.bar(x + (i - 1) * width, values, width, label=label, color=color)
            lowest = min(lowest, np.nanmin(values))
            if key == "fused":
                for xi, v in zip(x, values):
                    ax.text(xi - width, v * 1.04, f"{v:.1f}", ha="center", va="bottom", fontsize=7, color=color)
        ax.set_ylim(bottom=lowest / 1.6)
        worse = [j for j, d in enumerate(drives) if d["methods"]["fused"][stat] > d["methods"]["gnss_raw"][stat]]
        for j in worse:
            ax.annotate("fused worse", (x[j] - width, drives[j]["methods"]["fused"][stat]), xytext=(0, 3),
                        textcoords="offset points", ha="center", fontsize=7, color="#d62728", rotation=90)
        ax.set_yscale("log")
        _plain_log_ticks(ax)
        ax.axhline(10.0, color="#d62728", lw=0.8, ls="--")
        ax.set_ylabel("error (m, log)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 0.955), frameon=False)
    axes[1].set_xticks(x)
    axes[1].set_xticklabels(names, rotation=40, ha="right", fontsize=8)
    f, r = result["fleet"]["fused"], result["fleet"]["gnss_raw"]
    fig.suptitle(f"Fleet accuracy, {_which(result)}{len(drives)} drives: fused mean "
                 f"{f['mean_m']:.2f} m / p99 {f['p99_m']:.1f} m vs raw GNSS {r['mean_m']:.2f} m / {r['p99_m']:.1f} m "
                 "(dashed: 10 m)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    save_figure(fig, path, dpi=110)


def plot_drive_errors(path: Path, name: str, series: dict) -> None:
    """Error against time of one drive, every method, NO_FIX epochs marked (log scale)."""
    from cvgl_ros.evaluation.figures import pyplot, save_figure

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(11, 3.6))
    no_fix_t = series["gnss_no_fix"][0]
    if len(no_fix_t):
        ax.plot(no_fix_t, np.full(len(no_fix_t), 0.12), "|", color="#d62728", ms=6, label="GNSS NO_FIX")
    for key, color in (("gnss_raw", "#7f7f7f"), ("gnss_particle_filter", "#ff7f0e"), ("kalman_cv", "#2ca02c"),
                       ("fused", "#1f77b4")):
        t, e, _ = series[key]
        t, e = _break_gaps(np.asarray(t, dtype=float), np.maximum(np.asarray(e, dtype=float), 0.1))
        ax.plot(t, e, lw=0.9 if key != "fused" else 1.4, color=color, label=key)
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.axhline(10.0, color="#d62728", lw=0.8, ls="--")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("position error (m)")
    ax.set_title(name, fontsize=10)
    ax.legend(fontsize=7, ncol=5, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def _plain_log_ticks(ax) -> None:
    """Log axis labelled 0.1, 0.2, 0.5, 1, 2, 5, 10, ... in plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _break_gaps(t: np.ndarray, e: np.ndarray, gap_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN where consecutive samples are more than `gap_s` apart (no line across a gap)."""
    if t.size < 2:
        return t, e
    cut = np.flatnonzero(np.diff(t) > gap_s) + 1
    return np.insert(t, cut, np.nan), np.insert(e, cut, np.nan)
