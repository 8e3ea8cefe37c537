"""cvgl_ros.share finds the share directory the way a ROS install lays it out: the ament index
marker share/ament_index/resource_index/packages/cvgl_ros of a prefix on AMENT_PREFIX_PATH,
then share/cvgl_ros of that prefix; without it, the source checkout. (The colcon-built
install is checked end to end in test_package_build.py.)"""
import subprocess
import sys
from pathlib import Path

import pytest

from cvgl_ros import share

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

REPO = Path(__file__).resolve().parents[1]


def make_prefix(root: Path, models=("a_other.onnx", "cvgl_pose.onnx")) -> Path:
    """An install prefix as colcon/apt leave it: the index marker and share/cvgl_ros."""
    (root / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (root / "share" / "ament_index" / "resource_index" / "packages" / "cvgl_ros").write_text("")
    pkg = root / "share" / "cvgl_ros"
    (pkg / "config").mkdir(parents=True)
    (pkg / "models").mkdir()
    (pkg / "package.xml").write_text("<package format='3'><name>cvgl_ros</name></package>")
    (pkg / "config" / "cvgl.yaml").write_text("/**:\n  ros__parameters: {}\n")
    for name in models:
        (pkg / "models" / name).write_bytes(b"onnx")
    return root


def test_the_ament_index_prefix_wins_and_its_shipped_model_is_the_default(tmp_path, monkeypatch):
    pytest.importorskip("ament_index_python")
    other = tmp_path / "other_prefix"  # a prefix without cvgl_ros comes first, as /opt/ros/jazzy would
    (other / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    prefix = make_prefix(tmp_path / "install")
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{other}:{prefix}")
    found = share.find_share()
    assert found == share.ShareDir(prefix / "share" / "cvgl_ros", "ament_index")
    assert share.default_config_path() == prefix / "share" / "cvgl_ros" / "config" / "cvgl.yaml"
    assert share.default_model_path() == prefix / "share" / "cvgl_ros" / "models" / "cvgl_pose.onnx"


def test_without_the_named_model_the_first_onnx_by_name_and_none_without_any(tmp_path, monkeypatch):
    pytest.importorskip("ament_index_python")
    prefix = make_prefix(tmp_path / "install", models=("b.onnx", "a.onnx"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert share.default_model_path() == prefix / "share" / "cvgl_ros" / "models" / "a.onnx"
    empty = make_prefix(tmp_path / "empty", models=())
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(empty))
    assert share.default_model_path() is None


def test_a_marker_without_the_share_directory_falls_back_to_the_checkout(tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    (broken / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (broken / "share" / "ament_index" / "resource_index" / "packages" / "cvgl_ros").write_text("")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(broken))
    assert share.find_share() == share.ShareDir(REPO, "source checkout")
    monkeypatch.delenv("AMENT_PREFIX_PATH")
    assert share.find_share() == share.ShareDir(REPO, "source checkout")
    assert share.default_config_path() == REPO / "config" / "cvgl.yaml"
    assert share.default_model_path() == REPO / "models" / "cvgl_pose.onnx"


def test_without_ament_index_python_the_lookup_still_works(tmp_path):
    prefix = make_prefix(tmp_path / "install")
    code = ("import sys; sys.modules['ament_index_python'] = None\n"
            "from cvgl_ros import share; s = share.find_share(); print(s.found_by, s.path)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"AMENT_PREFIX_PATH": str(prefix), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"source checkout {REPO}"
