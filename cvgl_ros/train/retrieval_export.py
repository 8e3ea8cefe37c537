"""Export of the descriptor encoders: two ONNX graphs (opset 18, dynamic batch), their card, parity.

The ground encoder g and the satellite encoder f of `cvgl_ros.models.descriptor` are exported
separately (the vehicle runs g per frame; f runs once per grid cell, `cvgl retrieval index`),
as `descriptor_ground.onnx` and `descriptor_satellite.onnx`, beside the card
`descriptor.json` (`cvgl_ros.retrieval.encoders`: the format, what it holds). ONNX Runtime's
descriptors are compared with torch's on random inputs and on real pairs; the export is
refused when any component differs by more than `PARITY_TOLERANCE` (descriptors are unit
vectors, so this bounds the error of d = || f - g ||^2 by about 4 * sqrt(D) * tolerance).
"""
from __future__ import annotations

import datetime
import platform
from pathlib import Path

import numpy as np
import torch

from cvgl_ros.atomic import atomic_path, write_json
from cvgl_ros.errors import InputError
from cvgl_ros.retrieval.encoders import CARD_FORMAT, CARD_NAME, ONNX_NAMES
from cvgl_ros.runtime.card import sha256_file

OPSET = 18
PARITY_TOLERANCE = 1e-4
PAPER_VALUES = {"feature_extractor": "VGG16 pre-trained on ImageNet", "aggregation": "8 SAFA modules per branch",
                "descriptor_dim": 4096, "batch_size": "64 (RobotCar), 16 (CVACT)",
                "optimizer": "Adam lr 5e-5 (RobotCar), 1e-5 (CVACT)"}


def _export_branch(encoder: torch.nn.Module, names: tuple[str, ...], example: tuple, path: Path) -> None:
    with atomic_path(path, suffix=".onnx") as tmp:
        try:
            torch.onnx.export(encoder, example, str(tmp), dynamo=False, opset_version=OPSET, input_names=list(names),
                              output_names=["descriptor"],
                              dynamic_axes={**{n: {0: "batch"} for n in names}, "descriptor": {0: "batch"}})
        except Exception as exc:  # noqa: BLE001 - report the exporter's reason in one line
            raise InputError(f"ONNX export of the {names[0]} encoder failed: {str(exc).splitlines()[0][:300]}") from None


def branch_parity(path: Path, encoder: torch.nn.Module, names: tuple[str, ...], inputs: list[tuple]) -> dict:
    """max |ONNX Runtime - torch| over the descriptors of each input batch (a tuple per batch)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            expected = encoder(*x).numpy()
        got = session.run(None, {n: t.numpy() for n, t in zip(names, x)})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return {"max_abs_diff": worst, "batches": [int(x[0].shape[0]) for x in inputs], "tolerance": PARITY_TOLERANCE,
            "ok": worst <= PARITY_TOLERANCE}


def _random_inputs(m, branch: str, batch: int, generator: torch.Generator) -> tuple:
    """Random images, and for the ground branch the sector weights of random yaws."""
    from cvgl_ros.retrieval.sectors import sector_weights

    if branch == "satellite":
        return (torch.rand(batch, 3, *m.polar_hw, generator=generator),)
    yaw = (torch.rand(batch, generator=generator).numpy() * 2 * np.pi)
    k = np.array([[m.image_hw[1] / 2, 0, m.image_hw[1] / 2], [0, m.image_hw[1] / 2, m.image_hw[0] / 2], [0, 0, 1]])
    return (torch.rand(batch, 3, *m.image_hw, generator=generator),
            torch.from_numpy(sector_weights(yaw, k, m.image_hw[1], m.stride, m.sectors)))


INPUTS = {"ground": ("ground", "sectors"), "satellite": ("satellite",)}


def export_descriptor(model, config, out_dir: str | Path, *, history: list, provenance: dict,
                      parity_batch: tuple | None = None) -> dict:
    """Write both graphs and the card into `out_dir`; returns the card. `parity_batch`: real
    (ground, sector weights, polar satellite) tensors (`batch_tensors`), checked as well."""
    out_dir = Path(out_dir)
    m = config.model
    model = model.eval()
    card = {"format": CARD_FORMAT, "name": out_dir.name,
            "architecture": "SAFA-like descriptor network of azimuth sectors after 'Cross-View Matching for Vehicle "
                            "Localization by Learning Geographically Local Representations' (seed 001), scaled down "
                            "for 2 CPU cores (cvgl_ros.models.descriptor)",
            "onnx_opset": OPSET, "image_hw": list(m.image_hw), "image_encoding": "rgb8", "patch_px": m.patch_px,
            "patch_mpp": m.patch_mpp, "polar_hw": list(m.polar_hw), "sectors": m.sectors, "stride": m.stride,
            "descriptor_dim": m.descriptor_dim,
            "distance": "d = ||f(S) - g(G)||^2 of unit descriptors (= 2 - 2 f.g); matching score exp(-d) (Eq. 5)",
            "satellite_orientation": "north-up patch centred on the grid cell, resampled to polar "
                                     "(cvgl_ros.retrieval.sectors)"}
    parity = {}
    for name in ("ground", "satellite"):
        encoder, names = getattr(model, name), INPUTS[name]
        path = out_dir / ONNX_NAMES[name]
        _export_branch(encoder, names, _random_inputs(m, name, 2, torch.Generator().manual_seed(1)), path)
        g = torch.Generator().manual_seed(0)
        inputs = [_random_inputs(m, name, 1, g), _random_inputs(m, name, 4, g)]
        if parity_batch is not None:
            inputs.append(parity_batch[:2] if name == "ground" else parity_batch[2:])
        parity[name] = branch_parity(path, encoder, names, inputs)
        if not parity[name]["ok"]:
            raise InputError(f"parity check failed: the {name} encoder's ONNX Runtime and torch descriptors differ "
                             f"by {parity[name]['max_abs_diff']:.2e} > {PARITY_TOLERANCE}")
        shapes = {"ground": ["batch", 3, *m.image_hw], "sectors": ["batch", m.ground_columns, m.sectors],
                  "satellite": ["batch", 3, *m.polar_hw]}
        meanings = {"ground": "RGB, NCHW, values in [0, 1]", "satellite": "polar RGB image, NCHW, values in [0, 1]",
                    "sectors": "sector weights of the feature columns (cvgl_ros.retrieval.sectors)"}
        card[name] = {"file": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
                      "inputs": [{"name": n, "shape": shapes[n], "dtype": "float32", "meaning": meanings[n]}
                                 for n in names],
                      "output": {"name": "descriptor", "shape": ["batch", m.descriptor_dim], "dtype": "float32"}}
    card |= {"parity": parity, "model_config": m.to_dict(), "scaled_down_from_paper": PAPER_VALUES,
             "training": {"config": config.train.to_dict(), "data": provenance.get("data"),
                          "pairs": provenance.get("train_pairs"), "command": provenance.get("command"),
                          "epochs": len(history), "mode": "geo-local" if config.train.local else "geo-global",
                          "history_last": {k: v for k, v in (history[-1] if history else {}).items() if k != "train"}
                          | ({"train_loss": history[-1]["train"]["loss"]} if history else {})},
             "exported_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "exported_with": {"torch": torch.__version__, "python": platform.python_version()}}
    write_json(out_dir / CARD_NAME, card)
    return card
