"""The same Flower app on Flower's simulation engine (Ray): the quick local run."""
import pytest
import torch

from support.federated_fixtures import write_tiny_model_config, write_tiny_pairs
from cvgl_ros.federated.runner import read_rounds, run_federation
from cvgl_ros.federated.settings import FederationSettings
from cvgl_ros.train.checkpoint import read_checkpoint


@pytest.mark.timeout(600)    # Ray starts its own processes
def test_fedavg_on_the_simulation_engine_averages_by_local_data_size(tmp_path):
    # vehicle 0 owns one drive of 4 pairs, vehicle 1 two drives of 4: weights 1/3 and 2/3
    data = write_tiny_pairs(tmp_path / "ds", worlds=1, drives_per_world=3, pairs_per_drive=4)
    config = write_tiny_model_config(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    settings = FederationSettings(strategy="fedavg", vehicles=2, rounds=2, data=str(data), model_config=str(config),
                                  out=str(run), max_eval_pairs=2)
    summary = run_federation(settings, engine="simulation", progress=False, timeout_s=560)
    assert summary["engine"] == "simulation" and summary["result"]["status"] == "completed"
    assert sorted(summary["pairs_per_vehicle"]) == [4, 8]
    rows = read_rounds(run / "server" / "rounds.jsonl")
    assert [r["round"] for r in rows] == [1, 2]
    for row in rows:
        assert sorted(r["num_examples"] for r in row["received"]) == [4, 8]
        assert all(len(r["keys"]) == row["sent_to_each_vehicle"]["train_arrays"] for r in row["received"])
        assert "lateral_recall_5m" in row["metrics"]
    model = read_checkpoint(run / "server" / "model.pt")
    assert model["provenance"]["federated"]["strategy"] == "fedavg"
    assert all(torch.isfinite(v.float()).all() for v in model["model"].values())
