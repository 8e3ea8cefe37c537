"""The two non-federated scenarios of seed 000 §IV-C, with the federation's budget.

"Federated Learning for Cross-view Geo-localization" brackets federated training between

* **centralized** training: one model sees every vehicle's pairs (the raw images would
  have to be uploaded) — expected to be the best;
* **single-vehicle** training: a model sees only its own vehicle's pairs — expected to
  be the worst. We train one per vehicle and report their mean.

Both train for `rounds * local_epochs` epochs with the same schedule, the same pairs
(the vehicles' capped shares) and the same evaluation after every `local_epochs` epochs
("round"), so their curves sit on the federated runs' round axis.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cvgl_ros.atomic import write_json
from cvgl_ros.federated.settings import FederationSettings


def train_baseline(settings: FederationSettings, data, out_dir: Path, label: str, progress=None) -> list[dict]:
    """Train one model on `data` round by round; returns one row per round (metrics, wall time)."""
    from cvgl_ros.federated.task import PoseTask

    task = PoseTask(settings)
    model = task.build_model()
    eval_data = task.eval_data()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(out_dir / "rounds.jsonl", "w") as log:
        for server_round in range(1, settings.rounds + 1):
            started = time.time()
            stats = task.train(model, data, settings.local_epochs, server_round, settings.rounds)
            train_wall = time.time() - started
            metrics = task.evaluate(model, eval_data)
            row = {"round": server_round, "scenario": label, "pairs": len(data), "train_loss": stats["loss"],
                   "train_wall_s": train_wall, "wall_s": time.time() - started, "metrics": metrics}
            rows.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            if progress is not None:
                progress(label, server_round)
    task.save(model, out_dir / "model.pt", dataset=data, server_round=settings.rounds, scenario=label)
    return rows


def centralized(settings: FederationSettings, out_dir: Path, progress=None) -> list[dict]:
    from cvgl_ros.federated.task import PoseTask

    data = PoseTask(settings).all_train_data()
    return train_baseline(settings, data, out_dir, "centralized", progress)


def single_vehicle(settings: FederationSettings, out_dir: Path, progress=None) -> list[dict]:
    """One model per vehicle on its own share; rows carry the mean over vehicles (and each vehicle's)."""
    from cvgl_ros.federated.task import PoseTask

    task = PoseTask(settings)
    per_vehicle = []
    for k in range(settings.vehicles):
        per_vehicle.append(train_baseline(settings, task.vehicle_data(k), out_dir / f"v{k}", f"single-v{k}", progress))
    rows = []
    for r in range(settings.rounds):
        names = set.intersection(*(set(v[r]["metrics"]) for v in per_vehicle))
        rows.append({
            "round": r + 1, "scenario": "single",
            "metrics": {n: float(np.mean([v[r]["metrics"][n] for v in per_vehicle])) for n in sorted(names)},
            "metrics_per_vehicle": [v[r]["metrics"] for v in per_vehicle],
            "wall_s": float(np.mean([v[r]["wall_s"] for v in per_vehicle])),
        })
    write_json(out_dir / "rounds.json", rows)
    return rows
