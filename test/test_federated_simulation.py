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
    settings = FederationSettings(strategy="fedavg", vehicles=2, rounds=2, data=str(data), config_file=str(config),
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
    # The global model is the average of what the two vehicles sent in the last round, weighted
    # 4 : 8 by their local data sizes (seed 000, Eq. 6), recomputed here from their sent.pt.
    sizes = summary["pairs_per_vehicle"]
    sent = [torch.load(run / "vehicles" / f"v{k}" / "sent.pt", weights_only=True) for k in range(2)]
    assert set(sent[0]) == set(sent[1]) == set(model["model"])
    assert any(not torch.equal(sent[0][key], sent[1][key]) for key in sent[0])  # they trained on different data
    unweighted_differs = False
    for key, value in model["model"].items():
        average = sum(n * s[key].double() for n, s in zip(sizes, sent)) / sum(sizes)
        if value.dtype.is_floating_point:
            assert torch.allclose(value.double(), average, rtol=1e-6, atol=1e-7), key
            unweighted_differs |= not torch.allclose(value.double(), (sent[0][key].double() + sent[1][key].double()) / 2,
                                                     rtol=1e-6, atol=1e-7)
        else:                                                        # counters: rounded, as the server does
            assert torch.equal(value, torch.round(average).to(value.dtype)), key
    assert unweighted_differs  # the check tells the weighted average from the plain one
