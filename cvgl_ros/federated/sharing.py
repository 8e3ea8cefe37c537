"""What a vehicle sends to the server under each federated strategy.

"Federated Learning for Cross-view Geo-localization" (seed 000, §III-B, Fig. 2) compares

* `fedavg` — full model sharing: every entry of the model's state dict travels and is
  averaged, weighted by the size of each vehicle's local data set (Eq. 6);
* `encoders` — partial encoder sharing: only the ground and satellite feature extractors
  travel and are averaged; every other layer (the head: BEV refinement, coarse head, flow
  update, pose scale...) stays on its vehicle and is never sent.

A state dict entry belongs to a submodule by the first component of its name
(`ground_encoder.backbone.stem.0.weight` -> `ground_encoder`). Buffers of a shared
submodule (BatchNorm statistics) are shared with it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from cvgl_ros.errors import InputError

STRATEGIES = ("fedavg", "encoders")
ENCODER_SUBMODULES = ("ground_encoder", "satellite_encoder")


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    return strategy


def is_shared(name: str, strategy: str) -> bool:
    """Whether the state-dict entry `name` is sent to the server under `strategy`."""
    check_strategy(strategy)
    return strategy == "fedavg" or name.split(".", 1)[0] in ENCODER_SUBMODULES


def split_state(state: Mapping, strategy: str) -> tuple[dict, dict]:
    """(shared, local) parts of a state dict; together they are the whole of it."""
    shared = {k: v for k, v in state.items() if is_shared(k, strategy)}
    local = {k: v for k, v in state.items() if not is_shared(k, strategy)}
    return shared, local


def check_complete(state_keys: Iterable[str], strategy: str) -> None:
    """The encoders strategy needs both encoders in the model: refuse a model without them."""
    keys = list(state_keys)
    if strategy == "encoders":
        missing = [m for m in ENCODER_SUBMODULES if not any(k.split(".", 1)[0] == m for k in keys)]
        if missing:
            raise InputError(f"strategy 'encoders' needs submodules {', '.join(ENCODER_SUBMODULES)}; "
                             f"the model has no {', '.join(missing)}")
