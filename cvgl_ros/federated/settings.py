"""The settings of one federated run, as the Flower run config carries them.

The command line, the Flower app's `pyproject.toml` (`[tool.flwr.app.config]`, the
defaults) and both Flower apps share this one description. Keys use Flower's dashed
style in the run config and snake_case here. Defaults follow "Federated Learning for
Cross-view Geo-localization" (seed 000): T = 7 communication rounds of 1 local epoch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cvgl_ros.errors import InputError
from cvgl_ros.federated.sharing import check_strategy

DEFAULT_ROUNDS = 7           # seed 000 §IV-C: seven communication rounds
DEFAULT_LOCAL_EPOCHS = 1     # ... of one local epoch each
DEFAULT_VEHICLES = 4


@dataclass
class FederationSettings:
    strategy: str = "fedavg"
    vehicles: int = DEFAULT_VEHICLES
    rounds: int = DEFAULT_ROUNDS
    local_epochs: int = DEFAULT_LOCAL_EPOCHS
    data: str = ""                      # pair data set directory (absolute)
    model_config: str = ""              # YAML with model:/train: sections ("" = defaults)
    out: str = ""                       # run directory (absolute): server/ and vehicles/vK/
    min_available: int = 2              # vehicles that must be connected for a round to start
    join_timeout_s: float = 120.0       # how long round 1 waits for every vehicle to connect
    round_timeout_s: float = 3600.0     # how long a round waits for replies before going on without them
    straggler_timeout_s: float = 300.0  # once min_available vehicles replied, how long to wait for the rest
    max_train_pairs: int = 0            # per vehicle, spread over its drives (0 = all)
    max_eval_pairs: int = 0             # of the evaluation split (0 = all)
    eval_split: str = "cross_area"      # seed 000 tests on an area never seen in training
    evaluate_every: int = 1             # evaluate after every k-th round (and always after the last)
    seed: int = 0

    def validate(self) -> "FederationSettings":
        check_strategy(self.strategy)
        if self.vehicles < 2:
            raise InputError(f"a federation needs at least 2 vehicles (got {self.vehicles})")
        if self.rounds < 1 or self.local_epochs < 1:
            raise InputError("rounds and local epochs must be >= 1")
        if not 1 <= self.min_available <= self.vehicles:
            raise InputError(f"min available vehicles must be in [1, {self.vehicles}] (got {self.min_available})")
        if min(self.round_timeout_s, self.join_timeout_s, self.straggler_timeout_s) <= 0:
            raise InputError("timeouts must be > 0 seconds")
        if self.evaluate_every < 1:
            raise InputError(f"evaluate every k rounds needs k >= 1 (got {self.evaluate_every})")
        if self.max_train_pairs < 0 or self.max_eval_pairs < 0:
            raise InputError("pair caps must be >= 0 (0 = no cap)")
        if not self.data:
            raise InputError("no data set given")
        if not self.out:
            raise InputError("no output directory given")
        return self

    # -- Flower run config <-> settings -----------------------------------------------------
    def to_run_config(self) -> dict:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_run_config(cls, run_config) -> "FederationSettings":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in dict(run_config).items():
            name = key.replace("-", "_")
            if name in fields:
                kwargs[name] = type(fields[name].default)(value)
        return cls(**kwargs).validate()

    def evaluates_after(self, server_round: int) -> bool:
        return server_round % self.evaluate_every == 0 or server_round == self.rounds

    # -- where things go ------------------------------------------------------------------
    @property
    def server_dir(self) -> Path:
        return Path(self.out) / "server"

    def vehicle_dir(self, vehicle: int) -> Path:
        return Path(self.out) / "vehicles" / f"v{vehicle}"


def write_run_config(path: str | Path, settings: FederationSettings) -> Path:
    """Write the settings as a TOML file for `flwr run --run-config FILE.toml`."""
    import tomli_w

    from cvgl_ros.atomic import write_text

    write_text(path, tomli_w.dumps(settings.to_run_config()))
    return Path(path)
