"""rviz/cvgl.rviz: valid YAML with the tools a user pans, zooms and measures with, and displays
only of topics the nodes publish (the fused odometry among them), in the `map` frame."""
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

REPO = Path(__file__).resolve().parents[1]


def _config():
    return yaml.safe_load((REPO / "rviz" / "cvgl.rviz").read_text())["Visualization Manager"]


def test_rviz_has_the_navigation_tools():
    tools = [t["Class"] for t in _config()["Tools"]]
    for name in ("Interact", "MoveCamera", "Select", "FocusCamera", "Measure", "SetInitialPose"):
        assert f"rviz_default_plugins/{name}" in tools


def test_rviz_displays_the_fused_odometry_and_only_published_topics():
    config = _config()
    assert config["Global Options"]["Fixed Frame"] == "map"
    displays = config["Displays"]
    odometry = [d for d in displays if d["Class"] == "rviz_default_plugins/Odometry"]
    assert [d["Topic"]["Value"] for d in odometry] == ["/cvgl/odometry"]
    sources = "".join(p.read_text() for p in (REPO / "cvgl_ros" / "nodes").glob("*.py"))
    for d in displays:
        if "Topic" in d:
            topic = d["Topic"]["Value"]
            published = f'"{topic}"' in sources or f'"{topic.lstrip("/")}"' in sources  # the nodes' names are relative
            assert published or topic.startswith("/camera/"), f"{d['Name']}: nothing publishes {topic}"
