"""The package builds with colcon like any ament_python package, and `make` is idempotent."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def test_colcon_build_installs_share_files(tmp_path, repo_root):
    src = tmp_path / "ws" / "src" / "cvgl_ros"
    # a copy of the tracked package files, as a clone would have them
    files = subprocess.run(["git", "ls-files"], cwd=repo_root, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith("models/") and (repo_root / rel).stat().st_size > 1_000_000:
            continue  # the build does not need the weights to be copied for this check
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / rel, dst)
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run(
        [str(VENV_BIN / "colcon"), "build", "--base-paths", "src"],
        cwd=tmp_path / "ws", capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    share = tmp_path / "ws" / "install" / "cvgl_ros" / "share" / "cvgl_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "localize.launch.py").is_file()
    assert (share / "config" / "cvgl.yaml").is_file()
    assert (share / "rviz" / "cvgl.rviz").is_file()
    lib = tmp_path / "ws" / "install" / "cvgl_ros" / "lib" / "cvgl_ros"
    for exe in ("cvgl", "cross_view_node", "particle_filter_node"):
        assert (lib / exe).is_file(), f"{exe} not installed where `ros2 run` looks"


def test_make_setup_is_up_to_date_after_install(repo_root):
    if shutil.which("make") is None:
        pytest.fail("make is required")
    # `make -q` exits 0 only when the target is up to date: nothing would be reinstalled.
    out = subprocess.run(["make", "-q", "setup"], cwd=repo_root, capture_output=True, text=True)
    assert out.returncode == 0, "make setup would reinstall although nothing changed"
