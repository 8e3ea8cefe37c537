"""A real Flower deployment on loopback: SuperLink + 2 SuperNodes (separate processes), strategy `encoders`.

What the server receives is what its strategy recorded from the reply messages
(server/rounds.jsonl); what each vehicle holds is in its own log and files.
"""
import json

import psutil
import pytest
import torch

from support.federated_fixtures import write_tiny_model_config, write_tiny_pairs
from cvgl_ros.federated.runner import read_rounds, run_federation
from cvgl_ros.federated.settings import FederationSettings
from cvgl_ros.models import ENCODER_MODULES, PoseNet, load_config
from cvgl_ros.train.checkpoint import read_checkpoint


def _vehicle_log(run, k):
    return [json.loads(line) for line in (run / "vehicles" / f"v{k}" / "rounds.jsonl").read_text().splitlines()]


def _phase(log, server_round, phase):
    rows = [r for r in log if r["round"] == server_round and r["phase"] == phase]
    assert len(rows) == 1, (server_round, phase, log)
    return rows[0]


@pytest.mark.timeout(600)    # a loaded shared machine: the fleet's processes start slowly
def test_encoders_only_the_encoders_reach_the_server_and_agree_on_every_vehicle(tmp_path):
    data = write_tiny_pairs(tmp_path / "ds", worlds=2, drives_per_world=2, pairs_per_drive=4)
    config = write_tiny_model_config(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    settings = FederationSettings(strategy="encoders", vehicles=2, rounds=2, data=str(data), config_file=str(config),
                                  out=str(run), min_available=2, join_timeout_s=120, straggler_timeout_s=120,
                                  evaluate_every=2)
    started = []

    def remember_processes(fleet):
        for proc in fleet.processes:
            try:
                tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            started.extend(p for p in tree if p.pid not in {q.pid for q in started})

    summary = run_federation(settings, engine="deployment", progress=False, timeout_s=560,
                             fleet_hook=remember_processes)
    assert summary["result"]["status"] == "completed"

    state = PoseNet(load_config(config).model).state_dict()
    encoder_keys = {k for k in state if k.split(".")[0] in ENCODER_MODULES}
    head_keys = set(state) - encoder_keys
    assert encoder_keys and head_keys

    # What the server received, every round, from both vehicles: the encoders, nothing else.
    rows = read_rounds(run / "server" / "rounds.jsonl")
    assert [r["round"] for r in rows] == [1, 2]
    for row in rows:
        assert sorted(r["vehicle"] for r in row["received"]) == [0, 1]
        assert row["failures"] == []
        for reply in row["received"]:
            assert set(reply["keys"]) == encoder_keys
            assert not set(reply["keys"]) & head_keys
            assert "rejected" not in reply
        assert row["sent_to_each_vehicle"]["train_arrays"] == len(encoder_keys)
    server_encoders = torch.load(run / "server" / "encoders.pt", weights_only=True)
    assert set(server_encoders) == encoder_keys

    # After each aggregation every vehicle holds the same encoders: the server's average.
    logs = [_vehicle_log(run, k) for k in range(2)]
    after_round_1 = [_phase(log, 2, "train-start") for log in logs]
    after_round_2 = [_phase(log, 2, "evaluate") for log in logs]
    assert after_round_1[0]["shared_digest"] == after_round_1[1]["shared_digest"] == rows[0]["aggregated_digest"]
    assert after_round_2[0]["shared_digest"] == after_round_2[1]["shared_digest"] == rows[1]["aggregated_digest"]
    # ... while the heads stayed on the vehicles, each trained on its own drives.
    assert after_round_2[0]["local_digest"] != after_round_2[1]["local_digest"]
    for log in logs:
        assert _phase(log, 1, "train-start")["local_digest"] != _phase(log, 2, "train-start")["local_digest"]

    models = []
    for k in range(2):
        kept = torch.load(run / "vehicles" / f"v{k}" / "local_state.pt", weights_only=True)
        assert set(kept) == head_keys
        models.append(read_checkpoint(run / "vehicles" / f"v{k}" / "model.pt")["model"])
    for key in encoder_keys:
        assert torch.equal(models[0][key], models[1][key])
        assert torch.equal(models[0][key].to(server_encoders[key].dtype), server_encoders[key])
    assert any(not torch.equal(models[0][key], models[1][key]) for key in head_keys)

    # Each vehicle's own model (shared encoders + its head) exports like any checkpoint.
    from cvgl_ros.train.export import export_checkpoint

    card = export_checkpoint(run / "vehicles" / "v1" / "model.pt", tmp_path / "v1.onnx", progress=False)
    assert card["parity"]["ok"] and (tmp_path / "v1.onnx").is_file()

    # Every process the fleet started is gone.
    assert started
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
