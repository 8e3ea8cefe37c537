"""`cvgl train-retrieval` on a handful of flat-ground pairs with a tiny network: a few steps of
geo-local and geo-global training, checkpoints and resume, the curve PNG, both encoders exported
with ONNX Runtime matching torch, and bad input as one line."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cvgl_ros.errors import InputError
from cvgl_ros.retrieval.encoders import DescriptorModel, read_descriptor_card
from cvgl_ros.retrieval.sectors import sector_weights
from cvgl_ros.runtime.card import sha256_file
from cvgl_ros.train.retrieval import read_state, run_retrieval_training
from support.flat_pairs import write_flat_pairs

TINY = """\
model:
  image_hw: [32, 128]
  patch_px: 32
  patch_mpp: 1.6
  polar_hw: [32, 128]
  channels: [8, 8, 16, 16]
  attention_maps: 2
  sector_dim: 4
train:
  epochs: 1
  batch_size: 4
  radius_m: 150.0
  validation_pairs: 6
  threads: 1
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval_train")
    pairs = write_flat_pairs(root / "pairs", {"train": 14, "same_area": 6}, seed=3, max_offset_m=3.0)
    (root / "tiny.yaml").write_text(TINY)
    return root, pairs, root / "tiny.yaml"


@pytest.fixture(scope="module")
def local_run(data):
    root, pairs, config = data
    result = run_retrieval_training(pairs, config, root / "local", progress=False, command="cvgl train-retrieval")
    return root / "local", result


def test_geo_local_run_trains_writes_its_files_and_exports_matching_encoders(local_run, data):
    out, result = local_run
    history = result["history"]
    assert len(history) == 1 and 1 <= history[0]["train"]["steps"] <= 3
    assert np.isfinite(history[0]["train"]["loss"]) and history[0]["train"]["weight_mean"] < 1.0   # w_geo in use
    assert history[0]["val"]["count"] == 6
    for name in ("config.json", "last.pt", "checkpoint_epoch001.pt", "history.json", "curves.png", "finished",
                 "descriptor.json", "descriptor_ground.onnx", "descriptor_satellite.onnx"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = read_descriptor_card(out)
    assert card["descriptor_dim"] == 8 * 4 and card["sectors"] == 8 and card["training"]["mode"] == "geo-local"
    for branch in ("ground", "satellite"):
        assert card[branch]["sha256"] == sha256_file(out / card[branch]["file"])
        assert card["parity"][branch]["ok"] and card["parity"][branch]["max_abs_diff"] < 1e-4


def test_onnx_runtime_matches_torch_on_a_new_batch_size(local_run):
    from cvgl_ros.models.descriptor import DescriptorConfig, DescriptorNet

    out, _ = local_run
    state = read_state(out / "last.pt")
    net = DescriptorNet(DescriptorConfig(**state["config"]["model"]))
    net.load_state_dict(state["model"])
    net.eval()
    x = torch.rand(5, 3, 32, 128, generator=torch.Generator().manual_seed(9))
    k = np.array([[64.0, 0, 64], [0, 64, 16], [0, 0, 1]])
    w = sector_weights(np.linspace(0, 6, 5), k, 128, 16, 8)
    session = ort.InferenceSession(str(out / "descriptor_ground.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"ground": x.numpy(), "sectors": w})[0]
    with torch.no_grad():
        assert np.abs(got - net.ground(x, torch.from_numpy(w)).numpy()).max() < 1e-4
    model = DescriptorModel(out, intra_op_threads=1)
    patches = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    d = model.encode_satellite(patches, mpp=0.8)                  # 64 px of 0.8 m: resampled to 32 px of 1.6 m
    assert d.shape == (3, 32) and np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    g = model.encode_ground(np.full((64, 256, 3), 128, np.uint8), k * [[2], [2], [1]], 0.3)
    assert g.shape == (32,) and abs(np.linalg.norm(g) - 1.0) < 1e-5
    with pytest.raises(InputError, match="yaw"):
        model.encode_ground(np.full((64, 256, 3), 128, np.uint8), k, float("nan"))


def test_resume_continues_from_last_and_refuses_a_second_fresh_run(local_run, data):
    out, _ = local_run
    _, pairs, config = data
    with pytest.raises(InputError, match="already holds a run"):
        run_retrieval_training(pairs, config, out, progress=False)
    result = run_retrieval_training(pairs, None, out, resume=True, epochs=2, progress=False)
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert read_state(out / "last.pt")["epoch"] == 2 and (out / "checkpoint_epoch002.pt").is_file()


def test_geo_global_baseline_uses_random_batches_and_weights_one(data):
    root, pairs, config = data
    result = run_retrieval_training(pairs, config, root / "global", local=False, progress=False)
    train = result["history"][0]["train"]
    assert train["steps"] == 14 // 4 and train["weight_mean"] == 1.0
    assert json.loads((root / "global" / "descriptor.json").read_text())["training"]["mode"] == "geo-global"


def test_bad_input_is_one_line_with_status_2(data, tmp_path):
    _, pairs, _ = data
    cvgl = str(Path(sys.executable).with_name("cvgl"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  radius_m: .nan\n")
    cases = [["--data", str(pairs), "--config", str(bad), "--out", str(tmp_path / "a")],
             ["--data", str(tmp_path), "--out", str(tmp_path / "b")]]
    for args in cases:
        done = subprocess.run([cvgl, "train-retrieval", *args, "--quiet"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    far = write_flat_pairs(tmp_path / "far", {"train": 4}, seed=1, max_offset_m=20.0, image_hw=(32, 128))
    with pytest.raises(InputError, match="max-shift-m"):
        run_retrieval_training(far, data[2], tmp_path / "c", progress=False)
