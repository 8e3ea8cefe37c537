"""Run the Flower app on a real SuperLink with SuperNodes, as separate processes on 127.0.0.1.

This is the deployment a fleet would use — one SuperLink at the server, one SuperNode per
vehicle (here all on loopback, each with its own ports and Flower home) — and
`flwr run` submitting the app. With `simulation=True` the same SuperLink runs Flower's
simulation engine instead (Ray; virtual SuperNodes in one process tree): the same app,
for a quick local run.

Every process is started in its own session, and stopped by its process id (its process
group: a SuperNode's ClientApp subprocesses go with it) when the fleet is closed, also
after an error. Ports are chosen free at run time, so several fleets can run side by side.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cvgl_ros.errors import InputError
from cvgl_ros.federated.settings import FederationSettings, write_run_config

APP_DIR = Path(__file__).resolve().parent / "app"
CONNECTION = "cvgl-fleet"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flower_executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise InputError(f"{name} not found: install the training requirements (flwr)")
    return found


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class LoopbackFleet:
    """SuperLink + `vehicles` SuperNodes on 127.0.0.1 (or a simulation SuperLink); a context manager."""

    workdir: Path
    vehicles: int
    vehicle_dirs: list[Path] | None = None
    simulation: bool = False
    startup_timeout_s: float = 90.0
    logs_dir: Path | None = None
    processes: list[Process] = field(default_factory=list)
    superlink_port: int | None = None

    def __post_init__(self):
        self.workdir = Path(self.workdir)
        self.logs_dir = Path(self.logs_dir) if self.logs_dir is not None else self.workdir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)

    # -- environment ---------------------------------------------------------------------------
    def env(self, home: str) -> dict:
        env = dict(os.environ)
        env.update(FLWR_HOME=str(self.workdir / "flwr-home" / home), FLWR_TELEMETRY_ENABLED="0",
                   FLWR_DISABLE_UPDATE_CHECK="1", PYTHONUNBUFFERED="1")
        # Flower starts its helpers (flower-superexec, flwr-serverapp, flwr-clientapp) by name.
        env["PATH"] = os.pathsep.join([str(Path(flower_executable("flwr")).parent), env.get("PATH", "")])
        if self.simulation:
            env.setdefault("RAY_DEDUP_LOGS", "0")
        Path(env["FLWR_HOME"]).mkdir(parents=True, exist_ok=True)
        return env

    def _start(self, name: str, cmd: list[str], home: str, port: int | None) -> Process:
        log = self.logs_dir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env(home), cwd=self.workdir, start_new_session=True)
        proc = Process(name, popen, log, port)
        self.processes.append(proc)
        return proc

    def _wait_listening(self, proc: Process) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while not _port_open(proc.port):
            if not proc.alive():
                tail = proc.log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise RuntimeError(f"{proc.name} exited with status {proc.popen.returncode}: {tail[0]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not listen on 127.0.0.1:{proc.port} "
                                   f"within {self.startup_timeout_s:.0f} s")
            time.sleep(0.2)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> "LoopbackFleet":
        self.superlink_port = free_port()
        cmd = [flower_executable("flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
               "--host", "127.0.0.1", "--port", str(self.superlink_port)]
        if self.simulation:
            cmd.append("--simulation")
        superlink = self._start("superlink", cmd, "superlink", self.superlink_port)
        # SuperNodes retry until the SuperLink answers: start everything at once.
        vehicles = [] if self.simulation else [self.start_vehicle(k, wait=False) for k in range(self.vehicles)]
        for proc in [superlink, *vehicles]:
            self._wait_listening(proc)
        self._write_connection()
        return self

    def start_vehicle(self, k: int, wait: bool = True) -> Process:
        port = free_port()
        node_config = f"partition-id={k} num-partitions={self.vehicles}"
        if self.vehicle_dirs is not None:
            node_config += f' vehicle-dir="{self.vehicle_dirs[k]}"'
        cmd = [flower_executable("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.superlink_port}",
               "--host", "127.0.0.1", "--port", str(port), "--node-config", node_config]
        proc = self._start(f"vehicle{k}", cmd, f"vehicle{k}", port)
        if wait:
            self._wait_listening(proc)
        return proc

    def _write_connection(self) -> None:
        import tomli_w

        connection = {"address": f"127.0.0.1:{self.superlink_port}", "insecure": True}
        config = {"superlink": {"default": CONNECTION, CONNECTION: connection}}
        home = Path(self.env("cli")["FLWR_HOME"])
        (home / "config.toml").write_text(tomli_w.dumps(config))

    def vehicle(self, k: int) -> Process:
        return next(p for p in self.processes if p.name == f"vehicle{k}")

    def kill_vehicle(self, k: int) -> None:
        """Crash vehicle k: SIGKILL its SuperNode and everything it started."""
        proc = self.vehicle(k)
        _kill_tree(proc.pid, _descendants(proc.pid), signal.SIGKILL)
        proc.popen.wait(timeout=10)

    def stop(self) -> None:
        """Stop every process this fleet started, and their descendants, by process id."""
        trees = {proc.pid: _descendants(proc.pid) for proc in self.processes}
        for proc in reversed(self.processes):
            if proc.alive():
                _kill_tree(proc.pid, trees[proc.pid], signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in reversed(self.processes):
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # whatever is left (a SuperExec, a ClientApp or ServerApp subprocess)
            _kill_tree(proc.pid, trees[proc.pid] + _descendants(proc.pid), signal.SIGKILL)
            if proc.alive():
                proc.popen.wait(timeout=10)

    def __enter__(self) -> "LoopbackFleet":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- running the app --------------------------------------------------------------------------
    def submit(self, settings: FederationSettings) -> subprocess.Popen:
        """Start `flwr run` of the app with these settings; returns the running `flwr` process."""
        out = Path(settings.out)
        out.mkdir(parents=True, exist_ok=True)
        run_config = write_run_config(out / "run_config.toml", settings)
        cmd = [flower_executable("flwr"), "run", str(APP_DIR), CONNECTION, "--run-config", str(run_config), "--stream"]
        if self.simulation:   # virtual SuperNodes, one CPU each (Ray runs as many at once as there are cores)
            cmd += ["--federation-config", f"num-supernodes={self.vehicles} client-resources-num-cpus=1 "
                                           f"client-resources-num-gpus=0.0 init-args-num-cpus={os.cpu_count() or 1}"]
        log = open(self.logs_dir / "flwr-run.log", "ab")
        try:
            popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env("cli"), cwd=self.workdir, start_new_session=True)
        finally:
            log.close()
        self.processes.append(Process("flwr-run", popen, self.logs_dir / "flwr-run.log"))
        return popen

    def run(self, settings: FederationSettings, timeout_s: float | None = None, on_wait=None) -> dict:
        """Run the app to the end; return the server's result.json (raises if it did not complete)."""
        import json

        result_file = settings.server_dir / "result.json"
        result_file.unlink(missing_ok=True)
        popen = self.submit(settings)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not result_file.is_file():
            if on_wait is not None:
                on_wait()
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError(f"the federation did not finish within {timeout_s:.0f} s "
                                   f"(logs in {self.logs_dir})")
            if popen.poll() is not None and not result_file.is_file():
                time.sleep(2.0)   # the ServerApp may still be writing its result
                if not result_file.is_file():
                    raise RuntimeError(f"flwr run ended (status {popen.returncode}) without a result; "
                                       f"see {self.logs_dir / 'flwr-run.log'}")
            time.sleep(0.2)
        result = json.loads(result_file.read_text())
        try:
            popen.wait(timeout=10)        # `flwr run --stream` ends once the SuperLink closes the run
        except subprocess.TimeoutExpired:
            _kill_tree(popen.pid, _descendants(popen.pid), signal.SIGTERM)
            popen.wait(timeout=10)
        if result.get("status") != "completed":
            raise RuntimeError(f"the federation failed: {result.get('error', 'unknown error')}")
        return result


def _descendants(pid: int) -> list:
    """The live descendants of a process (psutil handles, which remember their start time)."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_tree(pid: int, descendants: list, sig: int) -> None:
    """Signal a process's group, then each of its recorded descendants that is still the same process."""
    import psutil

    _signal_group(pid, sig)
    for child in descendants:
        try:
            child.send_signal(sig)    # psutil checks the pid was not reused
        except psutil.Error:
            pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
