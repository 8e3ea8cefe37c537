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


def _export_branch(encoder: torch.nn.Module, name: str, example: torch.Tensor, path: Path) -> None:
    with atomic_path(path, suffix=".onnx") as tmp:
        try:
            torch.onnx.export(encoder, (example,), str(tmp), dynamo=False, opset_version=OPSET, input_names=[name],
                              output_names=["descriptor"],
                              dynamic_axes={name: {0: "batch"}, "descriptor": {0: "batch"}})
        except Exception as exc:  # noqa: BLE001 - report the exporter's reason in one line
            raise InputError(f"ONNX export of the {name} encoder failed: {str(exc).splitlines()[0][:300]}") from None


def branch_parity(path: Path, encoder: torch.nn.Module, name: str, inputs: list[torch.Tensor]) -> dict:
    """max |ONNX Runtime - torch| over the descriptors of each input batch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            expected = encoder(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return {"max_abs_diff": worst, "batches": [int(x.shape[0]) for x in inputs], "tolerance": PARITY_TOLERANCE,
            "ok": worst <= PARITY_TOLERANCE}


def _inputs(hw: tuple[int, int], real: np.ndarray | None) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(1, 3, *hw, generator=g), torch.rand(4, 3, *hw, generator=g)]
    if real is not None and len(real):
        batches.append(torch.from_numpy(np.ascontiguousarray(real.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0))
    return batches


def export_descriptor(model, config, out_dir: str | Path, *, history: list, provenance: dict,
                      parity_images: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Write both graphs and the card into `out_dir`; returns the card. `parity_images`: real
    (ground (n, h, w, 3), satellite (n, S, S, 3)) uint8 at the model's sizes, checked as well."""
    out_dir = Path(out_dir)
    m = config.model
    model = model.eval()
    hws = {"ground": tuple(m.image_hw), "satellite": (m.patch_px, m.patch_px)}
    card = {"format": CARD_FORMAT, "name": out_dir.name,
            "architecture": "SAFA-like descriptor network after 'Cross-View Matching for Vehicle Localization by "
                            "Learning Geographically Local Representations' (seed 001), scaled down for 2 CPU cores",
            "onnx_opset": OPSET, "image_hw": list(m.image_hw), "image_encoding": "rgb8", "patch_px": m.patch_px,
            "patch_mpp": m.patch_mpp, "descriptor_dim": m.descriptor_dim,
            "distance": "d = ||f(S) - g(G)||^2 of unit descriptors (= 2 - 2 f.g); matching score exp(-d) (Eq. 5)",
            "satellite_orientation": "north-up patch centred on the grid cell"}
    parity = {}
    for k, name in enumerate(("ground", "satellite")):
        encoder = getattr(model, name)
        path = out_dir / ONNX_NAMES[name]
        _export_branch(encoder, name, torch.rand(2, 3, *hws[name], generator=torch.Generator().manual_seed(1)), path)
        real = parity_images[k] if parity_images else None
        parity[name] = branch_parity(path, encoder, name, _inputs(hws[name], real))
        if not parity[name]["ok"]:
            raise InputError(f"parity check failed: the {name} encoder's ONNX Runtime and torch descriptors differ "
                             f"by {parity[name]['max_abs_diff']:.2e} > {PARITY_TOLERANCE}")
        card[name] = {"file": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
                      "input": {"name": name, "shape": ["batch", 3, *hws[name]], "dtype": "float32",
                                "meaning": "RGB, NCHW, values in [0, 1]"},
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
