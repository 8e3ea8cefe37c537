"""`cvgl launch` and launch/localize.launch.py start the same executables with the same
parameter file; the YAML and the nodes' declared parameters agree; the node processes stop
cleanly on SIGINT and SIGTERM and refuse bad parameters with one line."""
import ast
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from cvgl_ros.nodes import cross_view_node, launcher, particle_filter_node
from test_nodes_support import REPO


def _launch_file_names():
    """{name: where it comes from} for the launch file's module-level names: the module it imports
    the name from, or "assigned" for a name it defines itself."""
    tree = ast.parse((REPO / "launch" / "localize.launch.py").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            out.update({a.asname or a.name: node.module for a in node.names})
        elif isinstance(node, ast.Assign):
            out.update({t.id: "assigned" for t in node.targets if isinstance(t, ast.Name)})
    return out


def test_launch_file_and_cvgl_launch_name_the_same_executables_and_parameter_file(cvgl_bin):
    # one list: the launch file takes them from cvgl_ros.nodes.launcher, which `cvgl launch` runs
    names = _launch_file_names()
    for name in ("NODE_EXECUTABLES", "PARAMS_FILE", "LOG_LEVELS"):
        assert names.get(name) == "cvgl_ros.nodes.launcher", (name, names.get(name))
    out = subprocess.run([cvgl_bin, "launch", "--dry-run"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(launcher.NODE_EXECUTABLES) == 2
    for line, exe in zip(lines, launcher.NODE_EXECUTABLES):
        argv = line.split()
        assert os.path.basename(argv[0]) == exe or argv[:3] == [sys.executable, "-m", f"cvgl_ros.nodes.{exe}"]
        assert argv[argv.index("--params-file") + 1] == str(REPO / launcher.PARAMS_FILE)
    # the executables are console scripts of the package (setup.py), pointing at main()
    setup = (REPO / "setup.py").read_text()
    for exe in launcher.NODE_EXECUTABLES:
        assert f'"{exe} = cvgl_ros.nodes.{exe}:main"' in setup


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_yaml_holds_every_declared_parameter_with_its_default():
    doc = yaml.safe_load((REPO / "config" / "cvgl.yaml").read_text())
    params = _flatten(doc["/**"]["ros__parameters"])
    declared = {p.name: p for p in cross_view_node.PARAMS + particle_filter_node.PARAMS}
    own = {n for n in declared if not n.startswith("filter.")} - {"datum"}  # datum: unset by default
    assert own <= set(params) <= set(declared) | {"use_sim_time"}
    for name, value in params.items():
        if name != "use_sim_time":  # the file shows the defaults
            assert declared[name].check(value) == declared[name].default, name
    for p in declared.values():
        assert p.description, p.name


@pytest.mark.ros
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cvgl_launch_starts_both_nodes_and_stops_them_cleanly(cvgl_bin, tmp_path, sig):
    proc = subprocess.Popen([cvgl_bin, "launch", "-p", "diagnostics_period_s:=0.2"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    from test_nodes_support import Probe
    from diagnostic_msgs.msg import DiagnosticArray

    probe = Probe({"/diagnostics": DiagnosticArray})
    try:
        names = lambda r: {s.name for m in r["/diagnostics"] for s in m.status}  # noqa: E731
        ok = probe.wait_for(lambda r: {"cvgl_ros: cross_view_node", "cvgl_ros: particle_filter_node"} <= names(r), 60)
        assert ok, "both nodes should publish /diagnostics"
        # without tiles or a model the cross-view node runs but says it cannot work
        cv = [s for m in probe.received["/diagnostics"] for s in m.status if s.name == "cvgl_ros: cross_view_node"][-1]
        assert cv.level == b"\x02" and ("tile" in cv.message or "model" in cv.message)
    finally:
        probe.close()
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, out
    assert out.count("shutting down") == 2, out


@pytest.mark.ros
@pytest.mark.parametrize("exe", launcher.NODE_EXECUTABLES)
def test_node_executable_exits_2_with_one_line_on_a_bad_parameter(exe):
    cmd = launcher.node_command(exe) + launcher.ros_args(REPO / "config" / "cvgl.yaml",
                                                         {"diagnostics_period_s": -1.0})
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "diagnostics_period_s" in out.stderr


@pytest.mark.ros
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_node_process_shuts_down_cleanly_on_signal(sig):
    cmd = launcher.node_command("particle_filter_node") + launcher.ros_args(REPO / "config" / "cvgl.yaml")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "spinning" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert "spinning" in line
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:  # a failed wait must not leave the node running (it would talk on the next test's domain)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, out
    assert "shutting down" in out and "Traceback" not in out
