"""Shared test set-up.

Every test session gets its own ROS 2 domain and localhost-only discovery, so real rclpy
nodes of parallel runs (and of other sessions on this machine) never see each other.

`colcon test` runs a fast subset, not the 15-minute suite: colcon calls pytest with
`--junit-prefix=cvgl_ros`, and then, unless `-m` is given or CVGL_TEST_ALL=1 is set, only
the tests marked `core` (the ROS-free core) or `colcon` (a DDS smoke test) run, about a
minute. `make test` and plain `pytest` run everything.
"""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 200)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")


COLCON_MARKEXPR = "core or colcon"


def pytest_configure(config):
    under_colcon = config.getoption("junitprefix", None) == "cvgl_ros"
    if under_colcon and not config.getoption("markexpr") and os.environ.get("CVGL_TEST_ALL") != "1":
        config.option.markexpr = COLCON_MARKEXPR


@pytest.fixture
def cvgl_bin() -> str:
    """Path of the installed `cvgl` executable of this venv."""
    return str(Path(sys.executable).with_name("cvgl"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
