"""`cvgl federated compare`: the four scenarios of seed 000 with one budget, as its Tables I-II.

"Federated Learning for Cross-view Geo-localization" (seed 000, §IV) compares single-client,
classical FL (whole model), FL sharing only the encoders and centralized training on the
same data; it reports, per scenario, the maximum over rounds of each recall (Table I:
distance, lateral and angle recall at 1/3/5 m and degrees; Table II: lateral and angle
together) and plots recall against round (Fig. 3). Its "distance" is the longitudinal
error (the text names lateral, longitudinal and orientation as the metrics).

We run the four scenarios with the same settings (vehicles, rounds x local epochs, pairs,
model config, evaluation split) and write

    OUT/comparison.md        Tables I and II (max over rounds), communication and wall time, verdicts
    OUT/comparison.json      the same numbers, plus the last round's and every round's
    OUT/recall_vs_round.png  recall against round, one line per scenario (cf. Fig. 3)
    OUT/{single,centralized,fedavg,encoders}/   each scenario's run
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cvgl_ros.atomic import write_json, write_text
from cvgl_ros.evaluation.figures import pyplot, save_figure
from cvgl_ros.federated.settings import FederationSettings

SCENARIOS = ("single", "fedavg", "encoders", "centralized")
LABELS = {"single": "Single vehicle", "fedavg": "FL (classical FedAvg)", "encoders": "FL (only encoders)",
          "centralized": "Centralized"}
TABLE_I = [("Distance 1m", "longitudinal_recall_1m"), ("Distance 3m", "longitudinal_recall_3m"),
           ("Distance 5m", "longitudinal_recall_5m"), ("Lateral 1m", "lateral_recall_1m"),
           ("Lateral 3m", "lateral_recall_3m"), ("Lateral 5m", "lateral_recall_5m"),
           ("Angle 1°", "azimuth_recall_1deg"), ("Angle 3°", "azimuth_recall_3deg"), ("Angle 5°", "azimuth_recall_5deg")]
TABLE_II = [("Lat 1m & Angle 1°", "lateral_1m_and_azimuth_1deg_recall"),
            ("Lat 3m & Angle 3°", "lateral_3m_and_azimuth_3deg_recall"),
            ("Lat 5m & Angle 5°", "lateral_5m_and_azimuth_5deg_recall")]
PLOTTED = [("lateral_recall_5m", "lateral recall < 5 m (%)"), ("longitudinal_recall_5m", "distance recall < 5 m (%)"),
           ("azimuth_recall_5deg", "angle recall < 5° (%)"), ("lateral_5m_and_azimuth_5deg_recall", "lat 5 m & angle 5° (%)")]


def run_compare(base: FederationSettings, engine: str = "deployment", progress: bool = True) -> dict:
    """Train the four scenarios with `base`'s budget (its strategy is ignored); write the comparison."""
    from tqdm import tqdm

    from cvgl_ros.federated import baselines
    from cvgl_ros.federated.runner import check_engine, preflight, run_federation

    check_engine(engine)
    out = Path(base.out).resolve()
    shares = preflight(base)
    histories: dict[str, list[dict]] = {}
    comms: dict[str, dict] = {}
    bar = tqdm(total=len(SCENARIOS), desc="scenarios", unit="scenario", disable=not progress)
    for scenario in SCENARIOS:
        bar.set_postfix_str(scenario)
        settings = base.replace(out=str(out / scenario))
        if scenario in ("fedavg", "encoders"):
            settings = settings.replace(strategy=scenario)
            summary = run_federation(settings, engine=engine, progress=progress)
            rows = summary["rounds"]
            histories[scenario] = [{"round": r["round"], "metrics": r["metrics"], "wall_s": r["wall_s"]} for r in rows]
            comms[scenario] = {
                "uplink_bytes_per_vehicle_per_round": float(np.mean([r["uplink_bytes_per_vehicle"] for r in rows])),
                "downlink_bytes_per_vehicle_per_round": float(np.mean([r["downlink_bytes_per_vehicle"] for r in rows])),
                "evaluation_downlink_bytes_per_vehicle_per_round": float(
                    np.mean([r["evaluation_downlink_bytes_per_vehicle"] for r in rows])),
                "arrays_per_message": rows[0]["arrays_per_message"] if rows else 0,
                "vehicles_failed": int(sum(r["vehicles_failed"] for r in rows)),
            }
        elif scenario == "centralized":
            rows = baselines.centralized(settings, Path(settings.out))
            histories[scenario] = [{"round": r["round"], "metrics": r["metrics"], "wall_s": r["wall_s"]} for r in rows]
            comms[scenario] = {"raw_upload_bytes_per_vehicle": raw_upload_bytes(base)}
        else:
            rows = baselines.single_vehicle(settings, Path(settings.out))
            histories[scenario] = [{"round": r["round"], "metrics": r["metrics"], "wall_s": r["wall_s"]} for r in rows]
            comms[scenario] = {"uplink_bytes_per_vehicle_per_round": 0.0}
        bar.update(1)
    bar.close()
    comparison = build_comparison(base, histories, comms, shares, engine)
    write_json(out / "comparison.json", comparison)
    write_text(out / "comparison.md", render_markdown(comparison))
    plot_recall_vs_round(histories, out / "recall_vs_round.png", base)
    return comparison


def raw_upload_bytes(settings: FederationSettings) -> float:
    """What centralized training needs each vehicle to upload once: its pairs' JPEG bytes (mean)."""
    from cvgl_ros.datasets.pairs import PairDataset
    from cvgl_ros.federated.partition import cap_evenly, partition_dataset

    split = PairDataset(settings.data, "train")
    sizes = []
    for shard in split.shards:
        with np.load(split.path / shard["file"], allow_pickle=False) as z:
            sizes.append(np.diff(z["ground_offsets"]) + np.diff(z["satellite_offsets"]))
    per_pair = np.concatenate(sizes)
    parts = partition_dataset(split, settings.vehicles)
    return float(np.mean([per_pair[cap_evenly(p.indices, settings.max_train_pairs)].sum() for p in parts]))


def best_over_rounds(history: list[dict], key: str) -> float | None:
    values = [r["metrics"][key] for r in history if key in (r.get("metrics") or {})]
    return float(max(values)) if values else None


def last_round(history: list[dict], key: str) -> float | None:
    values = [r["metrics"][key] for r in history if key in (r.get("metrics") or {})]
    return float(values[-1]) if values else None


def between(single: float | None, fed: float | None, central: float | None) -> bool | None:
    if None in (single, fed, central):
        return None
    return min(single, central) <= fed <= max(single, central)


def build_comparison(settings: FederationSettings, histories: dict, comms: dict, shares: dict, engine: str) -> dict:
    keys = [k for _, k in TABLE_I + TABLE_II]
    best = {s: {k: best_over_rounds(histories[s], k) for k in keys} for s in histories}
    last = {s: {k: last_round(histories[s], k) for k in keys} for s in histories}
    verdicts = {}
    for fed in ("fedavg", "encoders"):
        checks = {k: between(best["single"][k], best[fed][k], best["centralized"][k]) for k in keys}
        known = [v for v in checks.values() if v is not None]
        ties = [k for k in keys if checks[k] is not None and best["single"][k] == best["centralized"][k]]
        above = [k for k in keys if checks[k] is False and best[fed][k] > max(best["single"][k], best["centralized"][k])]
        verdicts[fed] = {"between_single_and_centralized": checks, "metrics_between": int(sum(known)),
                         "metrics_compared": len(known), "single_equals_centralized": len(ties),
                         "above_both": len(above)}
    fed_up = comms.get("fedavg", {}).get("uplink_bytes_per_vehicle_per_round")
    enc_up = comms.get("encoders", {}).get("uplink_bytes_per_vehicle_per_round")
    wall = {s: float(np.mean([r["wall_s"] for r in histories[s] if r.get("wall_s") is not None] or [np.nan]))
            for s in histories}
    return {
        "settings": {k: v for k, v in settings.to_run_config().items() if k not in ("strategy", "out")},
        "engine": engine,
        **shares,
        "table_max_over_rounds": best,
        "table_last_round": last,
        "communication": comms,
        "encoders_over_fedavg_bytes": (enc_up / fed_up) if fed_up and enc_up is not None else None,
        "wall_s_per_round": {s: (None if np.isnan(v) else v) for s, v in wall.items()},
        "verdicts": verdicts,
        "history": histories,
    }


def _fmt(value, digits=2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _bytes(value) -> str:
    if value is None:
        return "—"
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


def render_markdown(c: dict) -> str:
    s = c["settings"]
    lines = [
        "# Federated vs centralized vs single-vehicle training (seed 000 protocol)",
        "",
        f"{s['vehicles']} vehicles, {s['rounds']} rounds x {s['local-epochs']} local epoch(s), "
        f"pairs per vehicle {c['pairs_per_vehicle']}, evaluation on `{s['eval-split']}`"
        f"{' (at most ' + str(s['max-eval-pairs']) + ' pairs)' if s['max-eval-pairs'] else ''}, "
        f"model config `{s['model-config'] or 'defaults'}`, Flower engine: {c['engine']}.",
        "Values are recalls in %, the maximum over rounds as in seed 000 (the last round's are in comparison.json).",
        "",
        "## Table I",
        "",
        "| Scenario | " + " | ".join(name for name, _ in TABLE_I) + " |",
        "|---|" + "---|" * len(TABLE_I),
    ]
    for scenario in SCENARIOS:
        row = c["table_max_over_rounds"].get(scenario, {})
        lines.append(f"| {LABELS[scenario]} | " + " | ".join(_fmt(row.get(k)) for _, k in TABLE_I) + " |")
    lines += ["", "## Table II", "", "| Scenario | " + " | ".join(name for name, _ in TABLE_II) + " |",
              "|---|" + "---|" * len(TABLE_II)]
    for scenario in SCENARIOS:
        row = c["table_max_over_rounds"].get(scenario, {})
        lines.append(f"| {LABELS[scenario]} | " + " | ".join(_fmt(row.get(k)) for _, k in TABLE_II) + " |")
    comms = c["communication"]
    lines += ["", "## Communication and time", "",
              "| Scenario | sent per vehicle per round | received per vehicle per round | arrays per message "
              "| wall time per round (s) |", "|---|---|---|---|---|"]
    for scenario in SCENARIOS:
        m = comms.get(scenario, {})
        if scenario == "centralized":
            sent, received = f"{_bytes(m.get('raw_upload_bytes_per_vehicle'))} of raw pairs, once", "—"
        elif scenario == "single":
            sent, received = "0 B", "0 B"
        else:
            sent = _bytes(m.get("uplink_bytes_per_vehicle_per_round"))
            received = _bytes(m.get("downlink_bytes_per_vehicle_per_round"))
            if m.get("evaluation_downlink_bytes_per_vehicle_per_round"):
                received += f" (+ {_bytes(m['evaluation_downlink_bytes_per_vehicle_per_round'])} for evaluation)"
        lines.append(f"| {LABELS[scenario]} | {sent} | {received} | {m.get('arrays_per_message', '—')} "
                     f"| {_fmt(c['wall_s_per_round'].get(scenario), 1)} |")
    lines += ["", "Bytes are the array payloads of the Flower messages (ArrayRecord.count_bytes), without "
              "transport overhead.", "", "## Verdicts", ""]
    if c.get("encoders_over_fedavg_bytes") is not None:
        lines.append(f"- Sharing only the encoders sends {100 * c['encoders_over_fedavg_bytes']:.1f} % of the bytes "
                     f"of classical FedAvg per vehicle and round "
                     f"({_bytes(comms['encoders']['uplink_bytes_per_vehicle_per_round'])} vs "
                     f"{_bytes(comms['fedavg']['uplink_bytes_per_vehicle_per_round'])}).")
    for fed in ("fedavg", "encoders"):
        v = c["verdicts"][fed]
        lines.append(f"- {LABELS[fed]} lands between single-vehicle and centralized training (inclusive) on "
                     f"{v['metrics_between']} of {v['metrics_compared']} metrics, above both on {v['above_both']}; "
                     f"single vehicle and centralized tie on {v['single_equals_centralized']} "
                     f"(seed 000: between on all of them).")
    return "\n".join(lines) + "\n"


def plot_recall_vs_round(histories: dict, path: Path, settings: FederationSettings) -> Path:
    """Recall against round for each scenario (cf. seed 000 Fig. 3)."""
    plt = pyplot()
    styles = {"single": ("tab:gray", "s", ":"), "fedavg": ("tab:blue", "o", "-"),
              "encoders": ("tab:orange", "^", "-"), "centralized": ("tab:green", "D", "--")}
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.8), constrained_layout=True)
    for ax, (key, label) in zip(axes, PLOTTED):
        for scenario in SCENARIOS:
            rows = [r for r in histories.get(scenario, []) if key in (r.get("metrics") or {})]
            if rows:
                colour, marker, line = styles[scenario]
                ax.plot([r["round"] for r in rows], [r["metrics"][key] for r in rows], color=colour, marker=marker,
                        linestyle=line, label=LABELS[scenario])
        ax.set_xlabel("round (x local epochs)")
        ax.set_ylabel(label)
        ax.set_xticks(range(1, settings.rounds + 1))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{settings.vehicles} vehicles, {settings.rounds} rounds x {settings.local_epochs} local epoch(s), "
                 f"evaluated on {settings.eval_split}", fontsize=10)
    return save_figure(fig, path, dpi=110)
