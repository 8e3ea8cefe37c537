"""Export: ONNX opset >= 17 with a dynamic batch, a model card with the sha256 of the file,
and ONNX Runtime matching torch on the volume (<= 1e-3). A tiny untrained network keeps it fast."""
import json
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cvgl_ros.models import FullConfig, PoseNet, PoseNetConfig, TrainConfig
from cvgl_ros.models.pose_network import ExportedPoseNet
from cvgl_ros.runtime.card import read_card, sha256_file
from cvgl_ros.train.checkpoint import save_checkpoint
from cvgl_ros.train.export import example_inputs

TINY_MODEL = dict(image_hw=(32, 128), patch_px=64, patch_mpp=0.8, ground_channels=(8, 8, 16),
                  satellite_channels=(8, 8, 16), feature_dim=8, context_dim=8, bev_forward_m=12.8,
                  bev_half_width_m=6.4, volume_cells=12, yaw_bins=5, iterations=1, corr_levels=2, corr_window=3,
                  corr_radius=2, hidden_dim=8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, cvgl_bin_module):
    tmp = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    config = FullConfig(model=PoseNetConfig(**TINY_MODEL), train=TrainConfig(seed=3))
    model = PoseNet(config.model)
    with torch.no_grad():                      # non-trivial batch-norm statistics
        model.train()
        model(*example_inputs(config.model, batch=4))
    model.eval()
    ckpt = save_checkpoint(tmp / "tiny.pt", model=model, epoch=1, config=config, history=[],
                           provenance={"data": "flat test pairs", "command": "cvgl train --data X --out Y",
                                       "train_pairs": 0, "data_meta": {"camera": {"height_m": 1.65}}})
    out = tmp / "models" / "tiny.onnx"
    done = subprocess.run([cvgl_bin_module, "export", "--ckpt", str(ckpt), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return model, out, done.stderr


@pytest.fixture(scope="module")
def cvgl_bin_module():
    import sys
    from pathlib import Path

    return str(Path(sys.executable).with_name("cvgl"))


def test_onnx_file_opset_and_dynamic_batch(exported):
    model, path, _ = exported
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == list(ExportedPoseNet.INPUTS)
    assert not proto.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")   # symbolic batch
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = ExportedPoseNet(model).eval()
    for batch in (1, 5):
        inputs = example_inputs(model.config, batch=batch)
        out = session.run(None, {n: t.numpy() for n, t in zip(ExportedPoseNet.INPUTS, inputs)})
        with torch.no_grad():
            ref = wrapper(*inputs)
        assert out[0].shape == (batch, 5, 12, 12) and out[1].shape == (batch, 3)
        np.testing.assert_allclose(out[0], ref[0].numpy(), atol=1e-3)
        np.testing.assert_allclose(out[1], ref[1].numpy(), atol=1e-3)


def test_card_describes_the_file(exported):
    _, path, stderr = exported
    card = read_card(path)
    assert card["sha256"] == sha256_file(path) and card["size_bytes"] == path.stat().st_size
    assert card["image_hw"] == [32, 128] and card["patch_px"] == 64 and card["patch_mpp"] == 0.8
    assert card["volume"]["cells"] == 12 and card["volume"]["cell_m"] == pytest.approx(3.2)
    assert len(card["volume"]["yaw_offsets_rad"]) == 5
    assert card["camera_height_m"] == pytest.approx(1.65) and "flat ground" in card["camera"]["assumption"]
    assert card["training"]["command"] == "cvgl train --data X --out Y" and card["training"]["seed"] == 3
    assert card["parity"]["ok"] and card["parity"]["max_abs_diff_log_volume"] <= 1e-3
    assert card["onnx_opset"] >= 17 and "parity" in stderr
    json.dumps(card, allow_nan=False)


def test_export_refuses_bad_requests(tmp_path, cvgl_bin_module, exported):
    bad = tmp_path / "not_a_checkpoint.pt"
    bad.write_bytes(b"garbage")
    done = subprocess.run([cvgl_bin_module, "export", "--ckpt", str(bad), "--out", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "checkpoint" in done.stderr
    _, path, _ = exported
    ckpt = path.parent.parent / "tiny.pt"
    done = subprocess.run([cvgl_bin_module, "export", "--ckpt", str(ckpt), "--out", str(tmp_path / "m.txt")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and ".onnx" in done.stderr


def test_temperature_fit_lowers_the_held_out_nll(tmp_path):
    from cvgl_ros.datasets.pairs import PairDataset
    from cvgl_ros.train.export import fit_temperature
    from support.flat_pairs import write_flat_pairs

    data = write_flat_pairs(tmp_path / "flat", {"train": 2, "same_area": 12}, seed=9)
    torch.manual_seed(0)
    model = PoseNet(PoseNetConfig(**TINY_MODEL)).eval()
    with torch.no_grad():
        model.log_scale.fill_(4.0)                   # an over-confident volume
    fit = fit_temperature(model, PairDataset(data, "same_area"))
    assert fit["pairs"] == 12 and 0.2 <= fit["temperature"] <= 10.0
    assert fit["nll_after"] <= fit["nll_before"] + 1e-9
    assert fit["temperature"] > 1.0                  # flattening helps an over-confident volume


def test_finer_yaw_sampling_scores_the_same_rotations(tmp_path, exported):
    """--yaw-bins 9 on a model trained with 5 bins over the same window: the exported volume
    holds the 5 trained bins unchanged at every other bin, and the card says what was trained."""
    model, path, _ = exported
    ckpt = path.parent.parent / "tiny.pt"
    from cvgl_ros.train.export import export_checkpoint

    card = export_checkpoint(ckpt, tmp_path / "fine.onnx", yaw_bins=9, command="cvgl export --yaw-bins 9",
                             progress=False)
    assert card["volume"]["yaw_bins"] == 9 and card["volume"]["yaw_bins_trained"] == 5
    assert card["training"]["export_command"] == "cvgl export --yaw-bins 9"
    inputs = {n: t.numpy() for n, t in zip(ExportedPoseNet.INPUTS, example_inputs(model.config, batch=2))}
    coarse = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["volume_logits"], inputs)[0]
    fine = ort.InferenceSession(str(tmp_path / "fine.onnx"),
                                providers=["CPUExecutionProvider"]).run(["volume_logits"], inputs)[0]
    assert fine.shape == (2, 9, 12, 12)
    np.testing.assert_allclose(fine[:, ::2], coarse, atol=1e-4)
