"""The package builds with colcon like any ament_python package (a plain `colcon build`, not
--symlink-install), and the install works on its own: with only its prefix on
AMENT_PREFIX_PATH and PYTHONPATH, run from outside the source tree with no parameters, the
nodes in install/lib/cvgl_ros find the shipped model and the parameter file in
share/cvgl_ros and process a frame from a bag over DDS. `make` is idempotent."""
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_nodes_support import Probe, model_image_hw, shipped_model, write_drive, write_tiles

VENV_BIN = Path(sys.executable).parent
PACKAGE = "cvgl_ros"


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory, repo_root):
    """A colcon install prefix of a copy of the package's files (what a clone would have)."""
    ws = tmp_path_factory.mktemp("ws")
    src = ws / "src" / PACKAGE
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=repo_root,
                            capture_output=True, text=True, check=True).stdout.split()
    for rel in listed:
        if (repo_root / rel).is_file():
            dst = src / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo_root / rel, dst)
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run([str(VENV_BIN / "colcon"), "build", "--base-paths", "src"],
                         cwd=ws, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return ws / "install" / PACKAGE


def install_env(prefix: Path) -> dict:
    """The environment `source install/setup.bash` gives, with nothing of the source tree."""
    site = next((prefix / "lib").glob("python3*/site-packages"))
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH", "ROS_DISTRO")}
    return dict(env, AMENT_PREFIX_PATH=str(prefix), PYTHONPATH=str(site), PYTHONUNBUFFERED="1")


def test_colcon_build_installs_share_files_and_every_package(colcon_install):
    share = colcon_install / "share" / PACKAGE
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "localize.launch.py").is_file()
    assert (share / "config" / "cvgl.yaml").is_file()
    assert (share / "rviz" / "cvgl.rviz").is_file()
    assert (share / "models" / "cvgl_pose.onnx").is_file() and (share / "models" / "cvgl_pose.json").is_file()
    assert (colcon_install / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    lib = colcon_install / "lib" / PACKAGE
    for exe in ("cvgl", "cross_view_node", "particle_filter_node"):
        assert (lib / exe).is_file(), f"{exe} not installed where `ros2 run` looks"
    site = next((colcon_install / "lib").glob("python3*/site-packages"))
    for pkg in ("train", "nodes", "runtime", "tiles", "geo", "filter"):
        assert (site / PACKAGE / pkg / "__init__.py").is_file(), f"cvgl_ros.{pkg} missing from the install"


def test_installed_cvgl_uses_the_share_directory_the_ament_index_finds(colcon_install, tmp_path):
    env = install_env(colcon_install)
    share = colcon_install / "share" / PACKAGE
    lib = colcon_install / "lib" / PACKAGE
    where = subprocess.run([sys.executable, "-c", "import cvgl_ros; print(cvgl_ros.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip().startswith(str(colcon_install)), "the installed copy must be the one imported"
    out = subprocess.run([str(lib / "cvgl"), "launch", "--dry-run"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    commands = [line.split() for line in out.stdout.strip().splitlines()]
    assert [c[0] for c in commands] == [str(lib / "cross_view_node"), str(lib / "particle_filter_node")]
    for argv in commands:
        assert argv[argv.index("--params-file") + 1] == str(share / "config" / "cvgl.yaml")
    doctor = subprocess.run([str(lib / "cvgl"), "doctor"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert doctor.returncode == 0, doctor.stderr
    report = dict(line.split(None, 1) for line in doctor.stdout.splitlines() if len(line.split(None, 1)) == 2)
    assert report["share_dir"] == f"{share} (ament_index)"
    assert report["ament_index_share"] == str(share)
    assert report["model"] == str(share / "models" / "cvgl_pose.onnx")
    assert report["params_file"] == str(share / "config" / "cvgl.yaml")
    assert report["opencv"][0].isdigit() and report["numpy"][0].isdigit()
    # without the prefix on AMENT_PREFIX_PATH, an unsourced install still finds its own share
    unsourced = {k: v for k, v in env.items() if k != "AMENT_PREFIX_PATH"}
    found = subprocess.run([sys.executable, "-c", "from cvgl_ros.share import find_share; s = find_share(); "
                            "print(s.path, s.found_by, sep='|')"], cwd=tmp_path, env=unsourced,
                           capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == f"{share}|install prefix", found.stdout + found.stderr


@pytest.mark.ros
def test_installed_nodes_with_no_parameters_find_the_shipped_model(colcon_install, tmp_path):
    env = install_env(colcon_install)
    lib = colcon_install / "lib" / PACKAGE
    from diagnostic_msgs.msg import DiagnosticArray

    from cvgl_ros.nodes.diagnostics import diagnostic_values

    procs = {exe: subprocess.Popen([str(lib / exe)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
             for exe in ("cross_view_node", "particle_filter_node")}
    probe = Probe({"/diagnostics": DiagnosticArray})

    def latest(received, node):
        found = [v for m in received["/diagnostics"] if (v := diagnostic_values(m, node)) is not None]
        return found[-1] if found else None

    try:
        ok = probe.wait_for(lambda r: latest(r, "cross_view_node") and latest(r, "particle_filter_node"), 60)
        assert ok, "both installed nodes should publish /diagnostics"
        cv = latest(probe.received, "cross_view_node")
        assert cv["model"] == str(colcon_install / "share" / PACKAGE / "models" / "cvgl_pose.onnx")
        assert "no model" not in cv["message"] and "tile" in cv["message"]  # only the tiles are missing
    finally:
        probe.close()
        for p in procs.values():
            p.send_signal(signal.SIGINT)
        outs = {exe: p.communicate(timeout=30)[0] for exe, p in procs.items()}
    for exe, p in procs.items():
        assert p.returncode == 0, outs[exe]
        assert "Traceback" not in outs[exe]


@pytest.mark.ros
def test_installed_replay_processes_a_frame_with_the_shipped_model_and_config(colcon_install, tmp_path):
    from cvgl_ros.datasets.bag import bag_topics

    env = install_env(colcon_install)
    tiles = write_tiles(tmp_path / "tiles.mbtiles")
    bag = write_drive(tmp_path / "drive", duration_s=1.0, camera_hz=2.0, image_hw=model_image_hw(shipped_model()))
    out = subprocess.run([str(colcon_install / "lib" / PACKAGE / "cvgl"), "replay", "--bag", str(bag), "--tiles",
                          str(tiles), "--out", str(tmp_path / "out"), "--lockstep"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    processed = re.search(r"processed (\d+)", out.stdout + out.stderr)
    assert processed and int(processed.group(1)) >= 1, out.stdout + out.stderr
    topics = bag_topics(tmp_path / "out")
    assert topics["/cvgl/likelihood"][1] >= 1 and topics["/cvgl/pose"][1] >= 1


def test_make_setup_is_up_to_date_after_install(repo_root):
    if shutil.which("make") is None:
        pytest.fail("make is required")
    # `make -q` exits 0 only when the target is up to date: nothing would be reinstalled.
    out = subprocess.run(["make", "-q", "setup"], cwd=repo_root, capture_output=True, text=True)
    assert out.returncode == 0, "make setup would reinstall although nothing changed"


def test_colcon_test_selects_the_fast_subset_and_plain_pytest_everything(repo_root, tmp_path):
    files = ["test/test_geo_tile_indices.py", "test/test_ros_smoke.py", "test/test_nodes_conversions.py"]

    def collected(*extra):
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                              *extra, *files], cwd=repo_root, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        # node ids at -q, "FILE: N" at -qq (pytest.ini's addopts adds a -q)
        return {re.split(r"::|: \d+$", line)[0] for line in out.stdout.splitlines()
                if "::" in line or re.search(r"\.py: \d+$", line)}

    # what colcon passes (colcon_core.task.python.test.pytest): the junit prefix of the package
    colcon = ["--junit-prefix=cvgl_ros", f"--junit-xml={tmp_path / 'pytest.xml'}"]
    assert collected(*colcon) == {"test/test_geo_tile_indices.py", "test/test_ros_smoke.py"}
    assert collected() == set(files)
