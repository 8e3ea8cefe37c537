"""The settings of one federated run, as the Flower run config carries them.

The command line, the Flower app's `pyproject.toml` (`[tool.flwr.app.config]`, the
defaults) and both Flower apps share this one description. Keys use Flower's dashed
style in the run config and snake_case here. Defaults follow "Federated Learning for
Cross-view Geo-localization" (seed 000): T = 7 communication rounds of 1 local epoch. A test
checks that the app's pyproject.toml repeats these defaults.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from cvgl_ros.config import Settings, setting
from cvgl_ros.errors import InputError
from cvgl_ros.federated.sharing import STRATEGIES

DEFAULT_ROUNDS = 7           # seed 000 §IV-C: seven communication rounds
DEFAULT_LOCAL_EPOCHS = 1     # ... of one local epoch each
DEFAULT_VEHICLES = 4
# Run-config keys that are not the field's name in Flower's dashed style.
RUN_CONFIG_KEYS = {"config_file": "model-config"}


class FederationSettings(Settings):
    """One federated run; `runnable()` also asks for the data set and the output directory."""

    what: ClassVar[str] = "federated setting"

    strategy: str = setting("fedavg", "what the vehicles share", choices=STRATEGIES)
    vehicles: int = setting(DEFAULT_VEHICLES, "vehicles in the fleet", ge=2)
    rounds: int = setting(DEFAULT_ROUNDS, "communication rounds T", ge=1)
    local_epochs: int = setting(DEFAULT_LOCAL_EPOCHS, "local epochs per round", ge=1)
    data: str = setting("", "pair data set directory (absolute)")
    config_file: str = setting("", "YAML with model:/train: sections (\"\" = defaults); run config key model-config")
    out: str = setting("", "run directory (absolute): server/ and vehicles/vK/")
    min_available: int = setting(2, "vehicles that must be connected for a round to start", ge=1)
    join_timeout_s: float = setting(120.0, "how long round 1 waits for every vehicle to connect, s", gt=0.0)
    round_timeout_s: float = setting(3600.0, "how long a round waits for replies before going on without them, s",
                                     gt=0.0)
    straggler_timeout_s: float = setting(300.0, "once min_available vehicles replied, how long to wait for the "
                                         "rest, s", gt=0.0)
    max_train_pairs: int = setting(0, "per vehicle, spread over its drives (0 = all)", ge=0)
    max_eval_pairs: int = setting(0, "of the evaluation split (0 = all)", ge=0)
    eval_split: str = setting("cross_area", "the evaluation split (seed 000 tests on an area never seen in training)")
    evaluate_every: int = setting(1, "evaluate after every k-th round (and always after the last)", ge=1)
    seed: int = setting(0, "random seed")

    def check(self) -> None:
        if self.min_available > self.vehicles:
            raise InputError(f"min available vehicles must be in [1, {self.vehicles}] (got {self.min_available})")

    def runnable(self) -> "FederationSettings":
        """These settings, once they name a data set and an output directory (InputError otherwise)."""
        if not self.data:
            raise InputError("no data set given")
        if not self.out:
            raise InputError("no output directory given")
        return self

    # -- Flower run config <-> settings -----------------------------------------------------
    def to_run_config(self) -> dict:
        return {RUN_CONFIG_KEYS.get(k, k.replace("_", "-")): v for k, v in self.values().items()}

    @classmethod
    def from_run_config(cls, run_config) -> "FederationSettings":
        """The settings of a Flower run config (dashed keys); an unknown key is an error."""
        names = {v: k for k, v in RUN_CONFIG_KEYS.items()}
        return cls(**{names.get(key, key.replace("-", "_")): value for key, value in dict(run_config).items()}).runnable()

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
