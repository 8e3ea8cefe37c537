"""The torch-free runtime on the shipped default model: no torch, sha256 check, input checks,
resizing, the volume in map coordinates, the no-yaw-prior mode and the covariance."""
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.runtime import PoseEstimator, Prior, read_card
from cvgl_ros.runtime.preprocess import resize_ground

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

SIM_K = np.array([[297.4, 0.0, 251.3], [0.0, 246.3, 59.0], [0.0, 0.0, 1.0]])   # the simulator's 512x128 camera


@pytest.fixture(scope="module")
def model_path(repo_root):
    models = sorted((repo_root / "models").glob("*.onnx"))
    assert models, "no shipped model in models/"
    return models[0]


@pytest.fixture(scope="module")
def estimator(model_path):
    return PoseEstimator(model_path, providers=("cpu",), intra_op_threads=1)


@pytest.fixture(scope="module")
def inputs(estimator):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (128, 512, 3), dtype=np.uint8)
    s = estimator.patch_px
    patch = np.kron(rng.integers(0, 256, (s // 8, s // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    return image, patch


def test_runtime_works_with_torch_blocked(model_path):
    code = f"""
import sys
sys.modules["torch"] = None          # any import of torch now fails
import numpy as np
from cvgl_ros.runtime import PoseEstimator, Prior
est = PoseEstimator({str(model_path)!r}, providers=("tensorrt", "cuda", "cpu"), intra_op_threads=1)
rng = np.random.default_rng(1)
s = est.patch_px
res = est.estimate(rng.integers(0, 256, (128, 512, 3), dtype=np.uint8), np.array({SIM_K.tolist()}),
                   rng.integers(0, 256, (s, s, 3), dtype=np.uint8), Prior(10.0, -3.0, 0.5))
assert np.all(np.isfinite(res.volume.log_likelihood)) and np.all(np.isfinite(res.covariance))
assert "CPUExecutionProvider" in est.providers
assert sys.modules["torch"] is None
print("ok", res.volume.shape)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_one_changed_byte_is_refused_naming_the_sha256(model_path, tmp_path):
    data = bytearray(model_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / model_path.name
    bad.write_bytes(bytes(data))
    shutil.copy(model_path.with_suffix(".json"), bad.with_suffix(".json"))
    with pytest.raises(InputError, match="sha256 mismatch"):
        PoseEstimator(bad, providers=("cpu",))
    (tmp_path / "nocard.onnx").write_bytes(model_path.read_bytes())
    with pytest.raises(InputError, match="no model card"):
        PoseEstimator(tmp_path / "nocard.onnx", providers=("cpu",))
    with pytest.raises(InputError, match="unknown execution provider"):
        PoseEstimator(model_path, providers=("quantum",))


def test_the_card_describes_the_model_file_it_sits_beside(model_path):
    """What the card says is measured on the .onnx itself: its bytes, its graph's inputs and
    outputs, and what a run of it returns."""
    import hashlib

    import onnxruntime as ort

    card = read_card(model_path)
    data = model_path.read_bytes()
    assert card["sha256"] == hashlib.sha256(data).hexdigest() and card["size_bytes"] == len(data) <= 25 * 2**20
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    onnx_dtype = {"float32": "tensor(float)"}
    graph_inputs = {i.name: (i.shape, i.type) for i in session.get_inputs()}
    assert graph_inputs == {name: (spec["shape"], onnx_dtype[spec["dtype"]]) for name, spec in card["inputs"].items()}
    graph_outputs = {o.name: o.shape for o in session.get_outputs()}
    assert graph_outputs == {name: spec["shape"] for name, spec in card["outputs"].items()}
    volume = card["volume"]
    assert graph_outputs["volume_logits"][1:] == [volume["yaw_bins"], volume["cells"], volume["cells"]]
    assert card["inputs"]["ground"]["shape"][2:] == card["image_hw"]
    assert card["inputs"]["satellite"]["shape"][2:] == [card["patch_px"], card["patch_px"]]
    assert card["patch_px"] * card["patch_mpp"] >= 40.0       # the patch holds the protocol's +-20 m offsets
    offsets = np.asarray(volume["yaw_offsets_rad"])
    assert len(offsets) == volume["yaw_bins"] and np.allclose(np.diff(offsets), offsets[1] - offsets[0])
    assert offsets.mean() == pytest.approx(0.0, abs=1e-12)   # a window centred on the yaw prior
    # a batch of two runs and gives the card's shapes, batch first
    feeds = {"ground": np.zeros((2, 3, *card["image_hw"]), np.float32),
             "satellite": np.zeros((2, 3, card["patch_px"], card["patch_px"]), np.float32),
             "intrinsics": np.tile(np.array([[100.0, 0, 128], [0, 100.0, 32], [0, 0, 1]], np.float32), (2, 1, 1)),
             "camera_height_m": np.full(2, card["camera"]["height_m_trained"], np.float32),
             "yaw_prior_rad": np.zeros(2, np.float32)}
    for name, value in zip(graph_outputs, session.run(list(graph_outputs), feeds)):
        assert list(value.shape) == [2, *card["outputs"][name]["shape"][1:]], name
    assert card["image_encoding"] == "rgb8" and card["image_mismatch"] in ("resize", "refuse")
    # recorded at export (the parity needs torch and the checkpoint, which a vehicle lacks)
    assert card["parity"]["ok"] and card["parity"]["max_abs_diff_log_volume"] <= card["parity"]["tolerance"] <= 1e-3
    assert card["training"]["command"].startswith("cvgl train")


def test_bad_inputs_raise_clear_errors(estimator, inputs):
    image, patch = inputs
    prior = Prior(0.0, 0.0, 0.0)
    k_nan = SIM_K.copy()
    k_nan[0, 2] = np.nan
    cases = [
        (dict(k=k_nan), "intrinsics K holds NaN"),
        (dict(prior=Prior(np.nan, 0.0, 0.0)), "prior position holds NaN"),
        (dict(prior=Prior(0.0, 0.0, np.inf)), "yaw prior holds NaN or Inf"),
        (dict(image=image.astype(np.float32)), "rgb8"),
        (dict(image=image[..., 0]), "rgb8"),
        (dict(image=image[:, :300]), "aspect"),
        (dict(patch=patch[:-1]), "satellite patch must be"),
        (dict(patch_valid=np.zeros(patch.shape[:2], bool)), "no valid pixel"),
        (dict(k=np.eye(2)), "3x3"),
    ]
    for change, message in cases:
        args = dict(image=image, k=SIM_K, patch=patch, prior=prior, patch_valid=None) | change
        with pytest.raises(InputError, match=message):
            estimator.estimate(args["image"], args["k"], args["patch"], args["prior"], patch_valid=args["patch_valid"])


def test_card_can_refuse_instead_of_resizing(model_path, tmp_path, inputs):
    card = json.loads(model_path.with_suffix(".json").read_text())
    card["image_mismatch"] = "refuse"
    copy = tmp_path / model_path.name
    shutil.copy(model_path, copy)
    copy.with_suffix(".json").write_text(json.dumps(card))
    est = PoseEstimator(copy, providers=("cpu",), intra_op_threads=1)
    image, patch = inputs
    h, w = est.image_hw
    if (h, w) != image.shape[:2]:
        with pytest.raises(InputError, match="requires"):
            est.estimate(image, SIM_K, patch, Prior(0.0, 0.0, 0.0))
    small, k_small = resize_ground(image, SIM_K, (h, w))
    assert np.isfinite(est.estimate(small, k_small, patch, Prior(0.0, 0.0, 0.0)).east_m)


def test_resizing_equals_feeding_the_card_size(estimator, inputs):
    image, patch = inputs
    small, k_small = resize_ground(image, SIM_K, estimator.image_hw)
    a = estimator.estimate(image, SIM_K, patch, Prior(5.0, 6.0, 1.0))
    b = estimator.estimate(small, k_small, patch, Prior(5.0, 6.0, 1.0))
    np.testing.assert_allclose(a.volume.log_likelihood, b.volume.log_likelihood, atol=1e-5)
    assert a.east_m == pytest.approx(b.east_m, abs=1e-4)


def test_volume_is_in_map_coordinates_normalized_with_a_sane_covariance(estimator, inputs):
    image, patch = inputs
    prior = Prior(120.0, -45.0, 2.0)
    res = estimator.estimate(image, SIM_K, patch, prior, stamp_ns=123)
    vol = res.volume
    assert (vol.center_e_m, vol.center_n_m, vol.stamp_ns) == (120.0, -45.0, 123)
    offsets = np.asarray(estimator.card["volume"]["yaw_offsets_rad"])
    np.testing.assert_allclose(np.sort(np.mod(vol.yaw_bins_rad - 2.0 + math.pi, 2 * math.pi) - math.pi),
                               offsets, atol=1e-6)
    assert vol.cell_m == estimator.card["volume"]["cell_m"]
    total = np.exp(vol.log_likelihood.astype(np.float64)).sum()
    assert total == pytest.approx(1.0, rel=1e-4)
    cov = res.covariance
    assert cov.shape == (3, 3) and np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    half = vol.cell_m * vol.shape[2] / 2
    assert abs(res.east_m - 120.0) < half + 10 and abs(res.north_m + 45.0) < half + 10
    assert -math.pi <= res.yaw_enu_rad < math.pi and res.latency_ms > 0


def test_without_a_yaw_prior_the_volume_covers_the_circle(estimator, inputs):
    image, patch = inputs
    res = estimator.estimate(image, SIM_K, patch, Prior(0.0, 0.0, None))
    assert res.volume.wraps_yaw
    assert np.exp(res.volume.log_likelihood.astype(np.float64)).sum() == pytest.approx(1.0, rel=1e-4)


def test_uncovered_patch_cells_become_uninformative(estimator, inputs):
    image, patch = inputs
    valid = np.ones(patch.shape[:2], bool)
    valid[:, : patch.shape[1] // 2] = False                           # the western half has no imagery
    res = estimator.estimate(image, SIM_K, patch, Prior(0.0, 0.0, 0.3), patch_valid=valid)
    ll = res.volume.log_likelihood
    west = ll[:, :, : ll.shape[2] // 2 - 1]
    assert np.ptp(west) < 1e-5                                        # one flat value there ...
    assert np.exp(ll.astype(np.float64)).sum() == pytest.approx(1.0, rel=1e-4)


def test_a_wider_yaw_search_is_adjacent_windows_merged_into_one_arc(estimator, inputs):
    """prior +- 30 deg with the +-12 deg window: 3 windows (one batch row each) on one uniform
    arc of +-36 deg whose bins hold each window's own network output; within one window's
    reach it is today's single window, and an arc reaching around is the full circle."""
    image, patch = inputs
    offsets = np.asarray(estimator.card["volume"]["yaw_offsets_rad"])
    step, span = offsets[1] - offsets[0], offsets[-1] - offsets[0]
    yaw = 3.0                                                          # the arc reaches past +pi
    single = estimator.estimate(image, SIM_K, patch, Prior(4.0, 2.0, yaw))
    narrow = estimator.estimate(image, SIM_K, patch, Prior(4.0, 2.0, yaw, math.radians(12.0)))
    assert single.yaw_windows == narrow.yaw_windows == 1
    np.testing.assert_array_equal(narrow.volume.log_likelihood, single.volume.log_likelihood)

    wide = estimator.estimate(image, SIM_K, patch, Prior(4.0, 2.0, yaw, math.radians(30.0)))
    bins = wide.volume.yaw_bins_rad
    assert wide.yaw_windows == 3 and len(bins) == 3 * (len(offsets) - 1) + 1
    np.testing.assert_allclose(np.diff(bins), step, atol=1e-9)
    assert bins[0] == pytest.approx(yaw - span - offsets[-1]) and bins[-1] == pytest.approx(yaw + span + offsets[-1])
    assert not wide.volume.wraps_yaw and bins[-1] > math.pi
    assert np.exp(wide.volume.log_likelihood.astype(np.float64)).sum() == pytest.approx(1.0, rel=1e-4)
    for j, centre in enumerate(yaw + span * np.array([-1, 0, 1])):
        alone = estimator.estimate(image, SIM_K, patch, Prior(4.0, 2.0, float(centre))).volume.log_likelihood
        first = j * (len(offsets) - 1)
        inner = slice(first + 1, first + len(offsets) - 1)             # the shared edge bins come from one side
        diff = wide.volume.log_likelihood[inner].astype(np.float64) - alone[1:-1]
        assert np.ptp(diff) < 1e-3, "each window's bins are its own output up to the normalization"
    # the filter reads the arc past +pi at the wrapped yaw: the same value as just below it
    e, n = 4.0, 2.0
    past = float(bins[-2])                                             # > pi, as the arc stores it
    assert past > math.pi
    assert wide.volume.interpolate(e, n, past - 2 * math.pi) == pytest.approx(wide.volume.interpolate(e, n, past))
    assert wide.volume.interpolate(e, n, past - 2 * math.pi) > wide.volume.floor_log_likelihood

    circle = estimator.estimate(image, SIM_K, patch, Prior(4.0, 2.0, yaw, math.radians(179.0)))
    assert circle.volume.wraps_yaw and circle.yaw_windows == int(math.ceil(2 * math.pi / span - 1e-9))
    with pytest.raises(InputError, match="half-width"):
        estimator.estimate(image, SIM_K, patch, Prior(4.0, 2.0, yaw, math.nan))


@pytest.mark.parametrize("per_run", [1, 3, 64])
def test_the_circle_in_chunks_of_windows_equals_one_batch(model_path, estimator, inputs, per_run):
    """The windows of a full-circle search run `max_windows_per_run` at a time (memory): the
    volume and the pose are those of the windows run one by one, whatever the chunk size."""
    image, patch = inputs
    chunked = PoseEstimator(model_path, providers=("cpu",), intra_op_threads=1, max_windows_per_run=per_run)
    ref = estimator.estimate(image, SIM_K, patch, Prior(3.0, -2.0, None))
    got = chunked.estimate(image, SIM_K, patch, Prior(3.0, -2.0, None))
    assert got.yaw_windows == ref.yaw_windows > 3
    np.testing.assert_allclose(got.volume.yaw_bins_rad, ref.volume.yaw_bins_rad)
    np.testing.assert_allclose(got.volume.log_likelihood, ref.volume.log_likelihood, atol=1e-3)
    assert (got.east_m, got.north_m) == pytest.approx((ref.east_m, ref.north_m), abs=1e-3)
    with pytest.raises(InputError, match="max_windows_per_run"):
        PoseEstimator(model_path, providers=("cpu",), max_windows_per_run=0)
