"""launch/localize.launch.py declares the arguments a ROS user expects (read from its source:
the `launch` package is not installed here; README says how it was run with the real one)."""
import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

REPO = Path(__file__).resolve().parents[1]


def _declared_arguments() -> dict[str, dict]:
    tree = ast.parse((REPO / "launch" / "localize.launch.py").read_text())
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument":
            out[ast.literal_eval(node.args[0])] = {k.arg: k.value for k in node.keywords}
    return out


def test_launch_declares_namespace_rviz_log_level_params_file_and_the_sensor_topics():
    args = _declared_arguments()
    for name in ("params_file", "use_sim_time", "namespace", "log_level", "rviz",
                 "image_topic", "compressed_image_topic", "camera_info_topic", "gnss_topic"):
        assert name in args, name
        assert "default_value" in args[name], name
    assert ast.literal_eval(args["namespace"]["default_value"]) == ""
    assert ast.literal_eval(args["rviz"]["default_value"]) == "false"
    assert ast.literal_eval(args["log_level"]["default_value"]) == "info"


def test_the_rviz_config_the_launch_file_names_is_installed():
    tree = ast.parse((REPO / "launch" / "localize.launch.py").read_text())
    consts = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)
              and isinstance(n.targets[0], ast.Name)}
    rviz = ast.literal_eval(consts["RVIZ_CONFIG"])
    assert (REPO / rviz).is_file()
    assert 'share("rviz", "*.rviz")' in (REPO / "setup.py").read_text()  # installed into share/cvgl_ros/rviz


def test_cvgl_launch_offers_the_launch_files_log_levels():
    from cvgl_ros.cli.launch import LOG_LEVELS
    from cvgl_ros.nodes import launcher

    tree = ast.parse((REPO / "launch" / "localize.launch.py").read_text())
    imported = {a.name: n.module for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert imported["LOG_LEVELS"] == "cvgl_ros.nodes.launcher"   # the launch file's log_level choices
    assert LOG_LEVELS is launcher.LOG_LEVELS and "info" in LOG_LEVELS
