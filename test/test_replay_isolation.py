"""Replays are isolated and supervised: each `cvgl replay` runs on a ROS domain of its own,
its nodes die with it (even by `kill -9`), and it refuses to play beside foreign nodes.

Two tiny drives (3 s) that would corrupt each other if they shared a domain: A drives east
at 5 m/s with a 2 Hz camera, B at 12 m/s with a 3 Hz camera (other frame stamps), both in
lockstep with the shipped model but no tiles (frames are skipped, the filter fuses GNSS), so
each run is reproducible and cheap. The module runs, in order: a replay of A killed with
SIGKILL while it plays, A and B alone, then A and B at the same time."""
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import psutil
import pytest

from cvgl_ros.datasets.bag import TOPIC_IMAGE, read_messages
from cvgl_ros.stamps import stamp_to_ns
from test_nodes_support import REPO, write_drive

pytestmark = pytest.mark.ros  # real rclpy nodes over DDS (`-m "not ros"` leaves them out)

STARTED = re.compile(r"replay: ROS domain (\d+) .*; cross_view_node pid (\d+), particle_filter_node pid (\d+)")


def _start(cvgl_bin, bag, run_dir, *extra):
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "stderr.txt", "w")
    proc = subprocess.Popen([cvgl_bin, "replay", "--bag", str(bag), "--out", str(run_dir / "out"), "--summary",
                             str(run_dir / "summary.json"), "--log-dir", str(run_dir / "logs"), *extra],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    return proc


def _finish(proc, run_dir) -> dict:
    assert proc.wait(timeout=300) == 0, (run_dir / "stderr.txt").read_text()[-3000:]
    return _result(run_dir)


def _result(run_dir) -> dict:
    out = run_dir / "out"
    poses = {stamp_to_ns(m.header.stamp): (m.pose.pose.position.x, m.pose.pose.position.y)
             for _, _, _, m in read_messages(out, ["/cvgl/pose"])}
    statuses = {stamp_to_ns(m.header.stamp) for _, _, _, m in read_messages(out, ["/cvgl/cross_view/frame_status"])}
    return {"summary": json.loads((run_dir / "summary.json").read_text()), "poses": poses, "statuses": statuses,
            "stderr": (run_dir / "stderr.txt").read_text()}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _fused_errors_m(bag, result) -> np.ndarray:
    from cvgl_ros.evaluation.track import Poses, load_truth, score

    stamps = sorted(result["poses"])
    xy = np.array([result["poses"][t] for t in stamps])
    est = Poses(np.array(stamps, dtype=np.int64) * 1e-9, xy[:, 0], xy[:, 1], np.zeros(len(stamps)))
    return score("fused", est, load_truth(bag)).error_m


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cvgl_bin_module):
    tmp = tmp_path_factory.mktemp("isolation")
    bags = {"A": write_drive(tmp / "drive_a", duration_s=3.0, camera_hz=2.0, speed_mps=5.0, seed=0),
            "B": write_drive(tmp / "drive_b", duration_s=3.0, camera_hz=3.0, speed_mps=12.0, seed=1)}
    lockstep = ["--lockstep", "-p", "prior_yaw_max_std_deg:=360.0"]

    # 1. kill -9 a replay of A as soon as it plays (rate 1: 3 s of playing ahead of it)
    killed_dir = tmp / "killed"
    proc = _start(cvgl_bin_module, bags["A"], killed_dir, "--rate", "1")
    pids = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and not pids:
            found = STARTED.search((killed_dir / "stderr.txt").read_text())
            pids = [int(found[2]), int(found[3])] if found else []
            time.sleep(0.1)
        assert pids and proc.poll() is None, (killed_dir / "stderr.txt").read_text()[-3000:]
        assert all(_alive(pid) for pid in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        survivors = [pid for pid in pids if _alive(pid)]
    finally:
        for pid in pids:  # never leave a node behind, whatever the test found
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()

    # 2. A and B alone (A right after the killed run), 3. both at once
    solo = {name: _finish(_start(cvgl_bin_module, bag, tmp / f"solo_{name}", *lockstep), tmp / f"solo_{name}")
            for name, bag in bags.items()}
    procs = {name: _start(cvgl_bin_module, bag, tmp / f"together_{name}", *lockstep) for name, bag in bags.items()}
    together = {name: _finish(p, tmp / f"together_{name}") for name, p in procs.items()}
    return {"bags": bags, "killed_pids": pids, "survivors": survivors, "killed_dir": killed_dir, "solo": solo,
            "together": together}


@pytest.fixture(scope="module")
def cvgl_bin_module():
    import sys
    from pathlib import Path

    return str(Path(sys.executable).with_name("cvgl"))


def test_kill_9_of_a_replay_leaves_no_node_running(runs):
    assert len(runs["killed_pids"]) == 2
    assert runs["survivors"] == [], f"node processes {runs['survivors']} outlived their killed replay"
    for exe in ("cross_view_node", "particle_filter_node"):  # they shut down (SIGTERM from the kernel), not crashed
        assert "shutting down" in (runs["killed_dir"] / "logs" / f"{exe}.log").read_text()


def test_the_replay_after_a_killed_one_gives_its_normal_result(runs):
    a = runs["solo"]["A"]
    frames = {stamp_to_ns(m.header.stamp) for _, _, _, m in read_messages(runs["bags"]["A"], [TOPIC_IMAGE])}
    s = a["summary"]
    assert s["frames"] == len(frames) == 6 and a["statuses"] == frames, "a status for every frame, no other"
    assert s["lockstep_timeouts"] == 0, s["lockstep_timeout_details"]
    assert len(a["poses"]) >= 14  # a fused pose per GNSS fix (15) but the first
    assert np.mean(_fused_errors_m(runs["bags"]["A"], a)) < 3.0  # GNSS sigma 2 m, fused
    assert f"ROS domain {s['domain_id']}" in s["isolation"] and f"on ROS domain {s['domain_id']}" in a["stderr"]


def test_two_replays_at_once_each_match_their_solo_run(runs):
    together, solo = runs["together"], runs["solo"]
    assert together["A"]["summary"]["domain_id"] != together["B"]["summary"]["domain_id"]
    for name in ("A", "B"):
        t, s = together[name], solo[name]
        assert t["statuses"] == s["statuses"], f"{name}: the other replay's camera frames reached its nodes"
        assert t["summary"]["frames"] == s["summary"]["frames"] and t["summary"]["lockstep_timeouts"] == 0
        assert set(t["poses"]) == set(s["poses"]), f"{name}: not the same fused poses as alone"
        gap = max(np.hypot(t["poses"][k][0] - s["poses"][k][0], t["poses"][k][1] - s["poses"][k][1]) for k in s["poses"])
        assert gap < 0.5, f"{name}: a fused pose {gap:.2f} m from its solo run"
        err_t, err_s = _fused_errors_m(runs["bags"][name], t), _fused_errors_m(runs["bags"][name], s)
        assert abs(err_t.mean() - err_s.mean()) < 0.2


def test_a_foreign_node_on_the_domain_is_refused_before_playing(cvgl_bin, tmp_path):
    import rclpy

    domain = int(os.environ["ROS_DOMAIN_ID"])  # this test session's own domain (conftest)
    bag = write_drive(tmp_path / "drive", duration_s=1.0, camera_hz=2.0)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("someone_else", context=context)
    try:
        out = subprocess.run([cvgl_bin, "replay", "--bag", str(bag), "--out", str(tmp_path / "o"), "--lockstep",
                              "--domain-id", str(domain), "--log-dir", str(tmp_path / "logs")],
                             capture_output=True, text=True, timeout=180, cwd=REPO)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"foreign ROS nodes on domain {domain}: /someone_else" in lines[0], out.stderr[-2000:]
    assert not (tmp_path / "o").exists()


def test_a_domain_held_by_another_replay_is_refused(cvgl_bin, tmp_path):
    from cvgl_ros.replay.domain import lease_domain

    bag = write_drive(tmp_path / "drive", duration_s=1.0, camera_hz=2.0)
    lease = lease_domain()  # as a running replay holds it
    try:
        out = subprocess.run([cvgl_bin, "replay", "--bag", str(bag), "--out", str(tmp_path / "o"),
                              "--domain-id", str(lease.domain_id)], capture_output=True, text=True, timeout=120,
                             cwd=REPO)
        again = lease_domain()
        assert again.domain_id != lease.domain_id  # the next free one
        again.release()
    finally:
        lease.release()
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert f"ROS domain {lease.domain_id} is in use by another cvgl replay" in out.stderr


def test_supervision_without_a_parent_death_signal_polls_the_parent(monkeypatch):
    """Where prctl is missing (not Linux), a watcher thread stops the node once it is re-parented;
    a node whose parent is already gone when it arms is told so (run_node then exits)."""
    import threading

    from cvgl_ros.nodes import supervision

    monkeypatch.setattr(supervision, "_pdeathsig", lambda signum: False)
    monkeypatch.setattr(supervision, "POLL_S", 0.01)
    monkeypatch.delenv(supervision.ENV_PARENT_PID, raising=False)
    assert supervision.die_with_parent(threading.Event()) is None  # not started by NodeProcesses: nothing armed
    parent = os.getppid()
    monkeypatch.setenv(supervision.ENV_PARENT_PID, str(parent))
    stop = threading.Event()
    assert supervision.die_with_parent(stop) == "parent poll" and not stop.is_set()
    monkeypatch.setattr(supervision.os, "getppid", lambda: 1)  # the parent died: re-parented to init
    assert stop.wait(timeout=30)
    assert supervision.die_with_parent(threading.Event()) == "parent gone"


def test_nodes_are_started_supervised_and_with_the_lock(tmp_path):
    """NodeProcesses tells each child its parent (CVGL_DIE_WITH_PARENT) and hands it the domain
    lock, so the domain stays taken while a node of the run lives."""
    import sys

    from cvgl_ros.errors import InputError
    from cvgl_ros.nodes.launcher import NodeProcesses
    from cvgl_ros.nodes.supervision import ENV_PARENT_PID
    from cvgl_ros.replay.domain import lease_domain

    lease = lease_domain()
    nodes = NodeProcesses(REPO / "config" / "cvgl.yaml", executables=(), pass_fds=(lease.fd,), log_dir=tmp_path)
    child = (f"import os, time; print(os.environ['{ENV_PARENT_PID}'] == str(os.getppid()), flush=True); "
             "time.sleep(120)")
    nodes.commands = {"probe": [sys.executable, "-c", child]}
    try:
        nodes.start()
        lease.release()  # this process lets go; the child still holds the lock
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (tmp_path / "probe.log").read_text().strip():
            time.sleep(0.05)
        assert (tmp_path / "probe.log").read_text().strip() == "True"
        with pytest.raises(InputError, match=f"ROS domain {lease.domain_id} is in use"):
            lease_domain(lease.domain_id)
    finally:
        nodes.procs["probe"].kill()
        nodes.stop()
