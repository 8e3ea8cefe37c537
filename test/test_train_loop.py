"""Training: the loop learns, a run is deterministic and resumes exactly, the CLI writes its
files and refuses bad requests in one line. Uses a tiny network on flat-ground pairs."""
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from cvgl_ros.datasets.pairs import PairDataset
from cvgl_ros.errors import InputError
from cvgl_ros.models import FullConfig, PoseNet, PoseNetConfig, TrainConfig
from cvgl_ros.train.checkpoint import load_model
from support.flat_pairs import write_flat_pairs
from cvgl_ros.train.loop import evaluate, train_one_epoch
from cvgl_ros.train.trainer import run_training

TINY_MODEL = dict(image_hw=[32, 128], patch_px=64, patch_mpp=0.8, ground_channels=[8, 8, 16],
                  satellite_channels=[8, 8, 16], feature_dim=8, context_dim=8, bev_forward_m=12.8,
                  bev_half_width_m=6.4, volume_cells=12, yaw_bins=5, iterations=2, corr_levels=2, corr_window=3,
                  corr_radius=2, hidden_dim=8)


@pytest.fixture(scope="module")
def flat_set(tmp_path_factory):
    return write_flat_pairs(tmp_path_factory.mktemp("pairs") / "flat", {"train": 24, "same_area": 8}, seed=5)


@pytest.fixture
def one_thread():
    """The tiny network trains fastest on one thread (and the machine is shared); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_yaml(tmp_path):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"model": TINY_MODEL, "train": {"epochs": 2, "batch_size": 4, "lr": 3e-3,
                                                                  "switch_epoch": 1, "threads": 1}}))
    return path


def test_training_lowers_the_loss_on_repeated_data(flat_set, one_thread):
    torch.manual_seed(0)
    cfg = FullConfig(model=PoseNetConfig.from_dict(TINY_MODEL),
                     train=TrainConfig(batch_size=4, lr=3e-3, switch_epoch=100, photometric_jitter=0.0, threads=1))
    model = PoseNet(cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    data = PairDataset(flat_set, "train")
    losses = [train_one_epoch(model, data, optimizer, cfg, epoch, progress=False, max_pairs=8)
              for epoch in range(6)]
    # The total is dominated by the confidence term's constant (alpha * 1 while confidences
    # saturate), so judge the learnable terms: each must fall clearly on data seen repeatedly.
    first, last = losses[0], losses[-1]
    assert last["matching"] < 0.5 * first["matching"]
    assert last["nll"] < 0.6 * first["nll"]
    assert last["position"] < 0.8 * first["position"]
    assert last["loss"] < first["loss"]
    result = evaluate(model, PairDataset(flat_set, "same_area"), cfg, progress=False)
    assert result["pose"].shape == (8, 3) and np.all(np.isfinite(result["pose"])) and np.all(np.isfinite(result["nll"]))


def test_run_is_deterministic_and_resume_continues_exactly(flat_set, tiny_yaml, tmp_path, one_thread):
    straight = run_training(flat_set, tiny_yaml, tmp_path / "a", progress=False, validation_pairs=4)
    # A run interrupted after its first epoch: only that epoch's checkpoint survives.
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "checkpoint_epoch001.pt", tmp_path / "b" / "last.pt")
    resumed = run_training(flat_set, None, tmp_path / "b", resume=True, progress=False, validation_pairs=4)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    a, _ = load_model(tmp_path / "a" / "last.pt")
    b, _ = load_model(tmp_path / "b" / "last.pt")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert straight["history"][-1]["train"]["loss"] == resumed["history"][-1]["train"]["loss"]
    for f in ("checkpoint_epoch001.pt", "checkpoint_epoch002.pt", "best.pt", "history.json", "curves.png"):
        assert (tmp_path / "a" / f).is_file(), f
    with pytest.raises(InputError, match="already holds a run"):
        run_training(flat_set, tiny_yaml, tmp_path / "a", progress=False)
    with pytest.raises(InputError, match="already finished"):
        run_training(flat_set, None, tmp_path / "a", resume=True, progress=False)


def test_cli_train_evaluate_and_bad_input(flat_set, tiny_yaml, tmp_path, cvgl_bin):
    out = tmp_path / "run"
    done = subprocess.run([cvgl_bin, "train", "--data", str(flat_set), "--config", str(tiny_yaml), "--out", str(out),
                           "--epochs", "1", "--max-pairs", "8", "--quiet"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and history[0]["train"]["pairs"] == 8
    report = tmp_path / "report.json"
    done = subprocess.run([cvgl_bin, "evaluate", "--model", str(out / "best.pt"), "--data", str(flat_set),
                           "--split", "same_area", "--out", str(report), "--quiet"], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    rep = json.loads(report.read_text())
    assert rep["count"] == 8 and (tmp_path / "report_cdf.png").stat().st_size > 10_000
    for key in ("position_mean_m", "position_median_m", "lateral_recall_1m", "lateral_recall_5m",
                "longitudinal_recall_1m", "longitudinal_recall_5m", "azimuth_recall_1deg", "azimuth_recall_5deg",
                "azimuth_mean_deg", "azimuth_median_deg"):
        assert key in rep["table1"]
    assert "lateral_3m_and_azimuth_3deg_recall" in rep["metrics"]
    bad = subprocess.run([cvgl_bin, "train", "--data", str(flat_set), "--out", str(tmp_path / "none"), "--resume"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such checkpoint" in bad.stderr
    bad = subprocess.run([cvgl_bin, "evaluate", "--model", str(tiny_yaml), "--data", str(flat_set), "--out",
                          str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "checkpoint" in bad.stderr
