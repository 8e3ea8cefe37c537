"""One configuration mechanism (cvgl_ros.config) and what it promises for every settings class
that a vehicle or a fleet uses without torch: the particle filter's, the federated run's and
the helper itself. The model's and training's are tested beside the network
(test_model_network.py), the nodes' descriptors in test_nodes_parameters.py."""
import math
import tomllib
from pathlib import Path
from typing import ClassVar

import pytest

from cvgl_ros.config import Settings, check_field, read_yaml, setting, specs
from cvgl_ros.errors import InputError
from cvgl_ros.federated.settings import FederationSettings
from cvgl_ros.filter.particle_filter import ParticleFilterConfig

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12 with pydantic 1.10 (make test-core312)

REPO = Path(__file__).resolve().parents[1]


class Example(Settings):
    what: ClassVar[str] = "example setting"

    count: int = setting(3, "a count", ge=1, le=10)
    ratio: float = setting(0.5, "a fraction", gt=0.0, lt=1.0)
    scale: float = setting(1.0, "any number, infinity included", finite=False)
    flag: bool = setting(False, "a switch")
    mode: str = setting("raw", "one of two", choices=("raw", "compressed"))
    size: tuple[int, int] = setting((64, 256), "rows, cols")


def refused(make, *words):
    """`make()` raises one InputError line holding every word."""
    with pytest.raises(InputError) as info:
        make()
    text = str(info.value)
    assert "\n" not in text and all(w in text for w in words), text
    return text


def test_the_helper_types_ranges_and_choices_on_this_pydantic():
    assert Example(count=2.0).count == 2 and type(Example(count=2.0).count) is int
    assert type(Example(ratio=1 - 1e-9, size=[4, 8]).size) is tuple
    assert Example(scale=math.inf).scale == math.inf  # the field allows it
    refused(lambda: Example(count=2.5), "count", "2.5", "integer")
    refused(lambda: Example(count="2"), "count", "integer")
    refused(lambda: Example(count=True), "count")
    refused(lambda: Example(count=11), "count", "11")
    refused(lambda: Example(ratio=0.0), "ratio")  # gt: 0 itself is outside
    refused(lambda: Example(ratio=math.nan), "ratio", "finite")
    refused(lambda: Example(flag=1), "flag", "true or false")
    refused(lambda: Example(mode="rgb"), "mode", "raw, compressed")
    refused(lambda: Example(size=[64, 256.5]), "size")
    refused(lambda: Example(size=[64]), "size")
    refused(lambda: Example(cont=3), "unknown example setting", "cont", "did you mean count")


def test_instances_are_frozen_and_replace_checks_again():
    e = Example()
    with pytest.raises((TypeError, ValueError)):
        e.count = 4
    assert e.replace(count=4).count == 4 and e.count == 3
    refused(lambda: e.replace(count=0), "count")
    assert Example(**Example().to_dict()) == Example()


def test_specs_are_the_declared_bounds_and_descriptions():
    by_name = {s.name: s for s in specs(Example)}
    assert by_name["count"].bounds == {"ge": 1, "le": 10} and by_name["count"].range_text() == "[1, 10]"
    assert by_name["ratio"].range_text() == "(0.0, 1.0)" and by_name["mode"].choices == ("raw", "compressed")
    assert by_name["scale"].finite is False and by_name["count"].description == "a count"


def test_one_field_alone_is_checked_by_its_own_rules():
    assert check_field(Example, "count", 4.0, "parameter count") == 4
    refused(lambda: check_field(Example, "count", 0, "parameter count"), "parameter count", "0")
    refused(lambda: check_field(Example, "count", 2.5, "parameter count"), "parameter count", "integer")


def test_yaml_numbers_are_read_as_yaml_1_2_reads_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nepochs: 5\nname: '1e-3'\n")
    assert read_yaml(path) == {"lr": 0.001, "epochs": 5, "name": "1e-3"}
    path.write_text("[1, 2]\n")
    refused(lambda: read_yaml(path), "mapping")
    refused(lambda: read_yaml(tmp_path / "none.yaml"), "no such config file")


def test_every_class_accepts_its_own_defaults():
    for cls in (Example, ParticleFilterConfig, FederationSettings):
        assert cls(**cls().values()) == cls()


# -- the particle filter's configuration ------------------------------------------------------

def test_filter_config_refuses_unknown_fractional_out_of_range_and_nan_values():
    assert ParticleFilterConfig(num_particles=500.0).num_particles == 500
    refused(lambda: ParticleFilterConfig(num_partcles=500), "num_partcles", "did you mean num_particles")
    refused(lambda: ParticleFilterConfig(num_particles=500.5), "num_particles", "integer")
    refused(lambda: ParticleFilterConfig(num_particles=0), "num_particles", "greater than or equal to 10")
    refused(lambda: ParticleFilterConfig(accel_noise_mps2=math.nan), "accel_noise_mps2", "finite")
    refused(lambda: ParticleFilterConfig(cross_view_outlier_prob=1.0), "cross_view_outlier_prob")
    refused(lambda: ParticleFilterConfig(min_gnss_sigma_m=0.0), "min_gnss_sigma_m")
    refused(lambda: ParticleFilterConfig(history_s=2.0, backwards_reset_s=1.0), "backwards_reset_s")
    refused(lambda: ParticleFilterConfig(use_cross_view="yes"), "use_cross_view")


def test_filter_config_keeps_its_defaults():
    """The filter under measurement: these are the values the fleet benchmark ran with."""
    c = ParticleFilterConfig()
    assert (c.num_particles, c.gate_sigmas, c.unverified_sigma_m, c.covariance_scale, c.history_s) == \
        (2000, 3.0, 25.0, 1.5, 1.0)
    assert all(s.description and (s.low is not None) for s in specs(ParticleFilterConfig) if s.annotation is not bool)


# -- the federated run's settings ---------------------------------------------------------------

def test_federated_settings_refuse_unknown_fractional_out_of_range_and_nan_values():
    run_config = FederationSettings(data="d", out="o").to_run_config()
    assert FederationSettings.from_run_config(run_config) == FederationSettings(data="d", out="o")
    refused(lambda: FederationSettings.from_run_config({**run_config, "round": 3}), "round")
    refused(lambda: FederationSettings.from_run_config({**run_config, "local-epochs": 2.5}), "local_epochs", "2.5")
    refused(lambda: FederationSettings(vehicles=1), "vehicles")
    refused(lambda: FederationSettings(join_timeout_s=math.nan), "join_timeout_s", "finite")
    refused(lambda: FederationSettings(strategy="fedprox"), "strategy", "fedavg")
    refused(lambda: FederationSettings(vehicles=3, min_available=4), "min available")
    refused(lambda: FederationSettings(data="d").runnable(), "output directory")


def test_the_flower_apps_pyproject_repeats_the_settings_defaults():
    """`[tool.flwr.app.config]` is Flower's copy of the defaults: the same keys and values."""
    app = tomllib.loads((REPO / "cvgl_ros" / "federated" / "app" / "pyproject.toml").read_text())
    declared = app["tool"]["flwr"]["app"]["config"]
    expected = FederationSettings().to_run_config()
    assert declared == expected
    assert {k: type(v) for k, v in declared.items()} == {k: type(v) for k, v in expected.items()}

