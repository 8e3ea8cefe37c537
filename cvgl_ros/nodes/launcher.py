"""Start the node executables as processes: what `ros2 launch cvgl_ros localize.launch.py` does,
for machines without the `launch` package (`cvgl launch`, and `cvgl replay` under the hood).

The executables, the parameter file and the log levels here are the ones
`launch/localize.launch.py` starts them with: it imports them from this module. Each node gets `--ros-args --params-file FILE` plus
`-p name:=value` overrides (values written as YAML, the form rcl parses), and inherits the
environment (ROS_DOMAIN_ID, RMW, ...) or the one given. `stop()` sends SIGINT, then SIGTERM,
then SIGKILL to processes that outlive their grace period. The children die with this
process even when it is killed outright (`CVGL_DIE_WITH_PARENT`, `cvgl_ros.nodes.supervision`).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cvgl_ros.errors import InputError
from cvgl_ros.share import PARAMS_FILE

NODE_EXECUTABLES = ("cross_view_node", "particle_filter_node")  # both start with PARAMS_FILE
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")         # the ROS log levels a user may pick


def default_params_file() -> Path:
    """config/cvgl.yaml of the package's share directory (`cvgl_ros.share`)."""
    from cvgl_ros.share import default_config_path, share_candidates

    found = default_config_path()
    if found is None:
        looked = ", ".join(str(c.path) for c in share_candidates())
        raise InputError(f"no {PARAMS_FILE} found (looked in {looked}); pass --params")
    return found


def node_command(executable: str) -> list[str]:
    """The executable in `<prefix>/lib/cvgl_ros` when the share directory is an installed one
    (`<prefix>/share/cvgl_ros`: where `ros2 run` looks), else the console script beside this
    Python (a venv), else `python -m cvgl_ros.nodes.<executable>`."""
    from cvgl_ros.share import PACKAGE, share_dir

    if executable not in NODE_EXECUTABLES:
        raise InputError(f"unknown node executable {executable!r}; known: {', '.join(NODE_EXECUTABLES)}")
    candidates = []
    share = share_dir()
    if share is not None and share.parent.name == "share":
        candidates.append(share.parent.parent / "lib" / PACKAGE / executable)
    candidates.append(Path(sys.executable).with_name(executable))
    for script in candidates:
        if script.is_file() and os.access(script, os.X_OK):
            return [str(script)]
    return [sys.executable, "-m", f"cvgl_ros.nodes.{executable}"]


def ros_args(params_file: str | Path, overrides: dict | None = None, extra: list[str] | None = None) -> list[str]:
    """`--ros-args --params-file FILE -p name:=value ...` plus `extra` ROS arguments (e.g. an enclave)."""
    args = ["--ros-args", "--params-file", str(params_file)]
    for name, value in (overrides or {}).items():
        args += ["-p", f"{name}:={json.dumps(value, separators=(',', ':'))}"]
    return args + list(extra or [])


def parse_override(text: str) -> tuple[str, object]:
    """'name:=value' (value in YAML) -> (name, value)."""
    import yaml

    if ":=" not in text:
        raise InputError(f"parameter override {text!r} is not NAME:=VALUE")
    name, value = text.split(":=", 1)
    if not name:
        raise InputError(f"parameter override {text!r} has no name")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError:
        raise InputError(f"parameter override {text!r}: value is not valid YAML") from None


class NodeProcesses:
    """The node executables running as child processes.

    `extra_ros_args` go after the parameters (`cvgl replay` passes its enclave); `pass_fds`
    are file descriptors the children inherit (`cvgl replay`'s domain lock, so that the
    domain stays taken while any node of the run lives)."""

    def __init__(self, params_file: str | Path, overrides: dict | None = None,
                 executables=NODE_EXECUTABLES, log_dir: str | Path | None = None, env: dict | None = None,
                 extra_ros_args: list[str] | None = None, pass_fds: tuple[int, ...] = ()):
        params_file = Path(params_file)
        if not params_file.is_file():
            raise InputError(f"no such parameter file: {params_file}")
        self.commands = {exe: node_command(exe) + ros_args(params_file, overrides, extra_ros_args)
                         for exe in executables}
        self.log_dir = Path(log_dir) if log_dir else None
        self.env = env
        self.pass_fds = tuple(pass_fds)
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs = []

    def start(self) -> "NodeProcesses":
        from cvgl_ros.nodes.supervision import ENV_PARENT_PID

        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env[ENV_PARENT_PID] = str(os.getpid())  # the children die with this process
        for exe, cmd in self.commands.items():
            out = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{exe}.log", "wb")
                self._logs.append(out)
            self.procs[exe] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                               pass_fds=self.pass_fds)
        return self

    def pids(self) -> dict[str, int]:
        """{executable: process id} of the started nodes."""
        return {exe: p.pid for exe, p in self.procs.items()}

    def exited(self) -> dict[str, int]:
        """{executable: exit code} of the nodes that have stopped."""
        return {exe: p.returncode for exe, p in self.procs.items() if p.poll() is not None}

    def stop(self, grace_s: float = 10.0) -> dict[str, int]:
        """SIGINT every node, escalate to SIGTERM/SIGKILL after grace_s; {executable: exit code}."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            for p in alive:
                p.send_signal(sig)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and any(p.poll() is None for p in alive):
                time.sleep(0.05)
        for f in self._logs:
            f.close()
        return {exe: p.wait() for exe, p in self.procs.items()}

    def log_tail(self, executable: str, lines: int = 20) -> str:
        if self.log_dir is None:
            return ""
        path = self.log_dir / f"{executable}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
