"""Shared test set-up.

Every test session gets its own ROS 2 domain and localhost-only discovery, so real rclpy
nodes of parallel runs (and of other sessions on this machine) never see each other.
"""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 200)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")


@pytest.fixture
def cvgl_bin() -> str:
    """Path of the installed `cvgl` executable of this venv."""
    return str(Path(sys.executable).with_name("cvgl"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
