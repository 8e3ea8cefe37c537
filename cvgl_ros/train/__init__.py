"""Training, evaluation and export of the cross-view pose network (torch; offline tools only,
never imported by the nodes or the runtime). This file makes `train` a package, so that
`find_packages()` ships it in a wheel and a colcon install.

- `trainer`: `cvgl train` (epochs, checkpoints, resume); `loop`: one epoch / one evaluation pass.
- `batches`: pair sets to network batches.
- `checkpoint`: save / load; `export`: ONNX + model card + parity; `evaluation_run`: `cvgl evaluate`.
- `plots`: training curves.
- `retrieval` (`cvgl train-retrieval`), `local_batches`, `retrieval_export`: the geo-local descriptors of seed 001.

Modules are imported on use; this package imports nothing (no torch here).
"""
