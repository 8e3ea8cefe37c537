"""A vehicle that crashes mid-round does not stop the federation (real SuperLink + 3 SuperNodes)."""
import json
import time

import pytest

from support.federated_fixtures import write_tiny_model_config, write_tiny_pairs
from cvgl_ros.federated.runner import read_rounds, run_federation
from cvgl_ros.federated.settings import FederationSettings


def _log(run, k):
    path = run / "vehicles" / f"v{k}" / "rounds.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(600)    # a loaded shared machine: the fleet's processes start slowly
def test_killing_one_of_three_vehicles_mid_round_leaves_the_others_to_finish(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # relative paths, as a user gives them: the runner must not rewrite the settings
    write_tiny_pairs(tmp_path / "ds", worlds=3, drives_per_world=1, pairs_per_drive=12)
    write_tiny_model_config(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    settings = FederationSettings(strategy="fedavg", vehicles=3, rounds=2, data="ds", config_file="tiny.yaml",
                                  out="run", min_available=2, join_timeout_s=120, straggler_timeout_s=5,
                                  evaluate_every=2, max_eval_pairs=2)
    given = settings.replace()
    # An earlier run's log in which vehicle 2 had started training: the rerun starts without it.
    (run / "vehicles" / "v2").mkdir(parents=True)
    (run / "vehicles" / "v2" / "rounds.jsonl").write_text(json.dumps({"round": 1, "phase": "train-start"}) + "\n")
    killed = {}

    def crash_vehicle_2_once_it_trains(fleet):
        if not killed and any(r["phase"] == "train-start" for r in _log(run, 2)):
            fleet.kill_vehicle(2)
            killed["at"] = time.time()

    summary = run_federation(settings, engine="deployment", progress=False, timeout_s=560,
                             fleet_hook=crash_vehicle_2_once_it_trains)
    assert killed, "vehicle 2 never started training"
    assert settings == given
    assert summary["result"]["status"] == "completed"
    # It was killed mid-round: it started round 1 and never finished it.
    phases = [(r["round"], r["phase"]) for r in _log(run, 2)]
    assert (1, "train-start") in phases and (1, "train-end") not in phases

    rows = read_rounds(run / "server" / "rounds.jsonl")
    assert [r["round"] for r in rows] == [1, 2]
    for row in rows:
        assert sorted(row["aggregated_from"]) == [0, 1]
        assert 2 not in [r["vehicle"] for r in row["received"]]
    assert rows[-1]["metrics"] and "lateral_recall_5m" in rows[-1]["metrics"]
    assert (run / "server" / "model.pt").is_file()
    for k in (0, 1):
        assert [(r["round"], r["phase"]) for r in _log(run, k) if r["phase"] == "train-end"] == [(1, "train-end"),
                                                                                                  (2, "train-end")]
