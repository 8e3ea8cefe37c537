"""Run one federation end to end: check the inputs, start the fleet, run the app, summarize.

    summary = run_federation(FederationSettings(strategy="encoders", data=DS, out=RUN), engine="deployment")

`engine="deployment"` starts a SuperLink and one SuperNode per vehicle as separate
processes on 127.0.0.1; `engine="simulation"` runs the same app on Flower's simulation
engine (Ray). Output (RUN = `settings.out`):

    RUN/server/rounds.jsonl      per round: what the server sent and received, wall time, metrics
    RUN/server/model.pt          fedavg: the global model
    RUN/server/encoders.pt       encoders: the shared encoders (no head)
    RUN/vehicles/vK/model.pt     encoders: vehicle K's own model (shared encoders + its head)
    RUN/vehicles/vK/rounds.jsonl vehicle K's log (digests of its shared and local parameters)
    RUN/vehicles/vK/sent.pt      the arrays vehicle K sent in its latest round (all that left it)
    RUN/summary.json             settings, per-round table, bytes, wall time
    RUN/logs/                    the processes' logs

A rerun into the same RUN first removes what the earlier run wrote in server/ and vehicles/
(`remove_earlier_run`), and nothing else. The settings given are never changed.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import signal
import threading
from pathlib import Path

from cvgl_ros.atomic import write_json
from cvgl_ros.errors import InputError
from cvgl_ros.federated.settings import FederationSettings

ENGINES = ("deployment", "simulation")


def preflight(settings: FederationSettings) -> dict:
    """Refuse, with one line, what would fail later inside the fleet; returns the vehicles' share sizes."""
    from cvgl_ros.datasets.pairs import PairDataset
    from cvgl_ros.federated.partition import cap_evenly, partition_dataset

    settings.runnable()
    if not Path(settings.data).is_dir():
        raise InputError(f"no such data set directory: {settings.data}")
    if settings.config_file and not Path(settings.config_file).is_file():
        raise InputError(f"no such config file: {settings.config_file}")
    parts = partition_dataset(PairDataset(settings.data, "train"), settings.vehicles)
    evaluation = PairDataset(settings.data, settings.eval_split)
    if len(evaluation) == 0:
        raise InputError(f"split {settings.eval_split} of {settings.data} holds no pairs to evaluate on")
    from cvgl_ros.federated.task import PoseTask    # torch: only once the cheap checks passed

    batch = PoseTask(settings).config.train.batch_size
    shares = [len(cap_evenly(p.indices, settings.max_train_pairs)) for p in parts]
    for k, n in enumerate(shares):
        if n < batch:
            raise InputError(f"data set {settings.data} is too small for {settings.vehicles} vehicles: vehicle {k} "
                             f"gets {n} training pair(s), fewer than one batch of {batch}")
    return {"pairs_per_vehicle": shares, "worlds_per_vehicle": [p.worlds for p in parts],
            "drives_per_vehicle": [len(p.drives) for p in parts]}


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if engine == "simulation" and importlib.util.find_spec("ray") is None:
        raise InputError("the simulation engine needs Ray (pip install ray, as pinned in requirements/training.txt)")


@contextlib.contextmanager
def stop_on_sigterm():
    """Turn SIGTERM into KeyboardInterrupt while the fleet runs, so that it is always shut down."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def read_rounds(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def remove_earlier_run(settings: FederationSettings) -> None:
    """Delete what an earlier run into `settings.out` left in server/ and vehicles/vK/ (the vehicles
    append to their logs and take up their local state, so a rerun must start without them): the
    files the apps write there, then those directories if that left them empty. Nothing else is
    deleted; a file of anyone else's stays, and so does its directory."""
    from cvgl_ros.federated.client_app import LOCAL_STATE_FILE, LOG_FILE, MODEL_FILE, SENT_FILE
    from cvgl_ros.federated.server_app import ENCODERS_FILE, MODEL_FILE as SERVER_MODEL_FILE, RESULT_FILE, ROUNDS_FILE

    vehicles_dir = Path(settings.out) / "vehicles"
    vehicle_dirs = sorted(d for d in vehicles_dir.glob("v*") if d.name[1:].isdigit()) if vehicles_dir.is_dir() else []
    written = [settings.server_dir / name for name in (ROUNDS_FILE, RESULT_FILE, SERVER_MODEL_FILE, ENCODERS_FILE)]
    written += [d / name for d in vehicle_dirs for name in (LOG_FILE, LOCAL_STATE_FILE, MODEL_FILE, SENT_FILE)]
    for path in written:
        if path.is_file() or path.is_symlink():   # a link goes, never what it points to
            path.unlink()
    for directory in [*vehicle_dirs, vehicles_dir, settings.server_dir]:
        with contextlib.suppress(OSError):    # not there, not a directory, or not empty: left as it is
            directory.rmdir()


def run_federation(settings: FederationSettings, engine: str = "deployment", progress: bool = True,
                   timeout_s: float | None = None, fleet_hook=None) -> dict:
    """Run the federation described by `settings`; returns (and writes) its summary.

    `fleet_hook(fleet)` is called while waiting (tests use it to crash a vehicle).
    """
    from tqdm import tqdm

    check_engine(engine)
    shares = preflight(settings)

    from cvgl_ros.federated.deployment import LoopbackFleet
    from cvgl_ros.federated.server_app import ROUNDS_FILE

    out = Path(settings.out).resolve()
    # The fleet's processes get absolute paths; the caller's settings stay as they were given.
    settings = settings.replace(out=str(out), data=str(Path(settings.data).resolve()),
                                config_file=str(Path(settings.config_file).resolve()) if settings.config_file else "")
    remove_earlier_run(settings)
    workdir = out / "flower"
    rounds_file = settings.server_dir / ROUNDS_FILE
    bar = tqdm(total=settings.rounds, desc=f"{settings.strategy} rounds", unit="round", disable=not progress)
    fleet = LoopbackFleet(workdir, settings.vehicles, simulation=engine == "simulation", logs_dir=out / "logs",
                          vehicle_dirs=[settings.vehicle_dir(k) for k in range(settings.vehicles)])

    def on_wait():
        done = len(read_rounds(rounds_file))
        if done > bar.n:
            bar.update(done - bar.n)
        if fleet_hook is not None:
            fleet_hook(fleet)

    try:
        with stop_on_sigterm(), fleet:
            result = fleet.run(settings, timeout_s=timeout_s, on_wait=on_wait)
        on_wait()
    finally:
        bar.close()
        shutil.rmtree(workdir / "flwr-home", ignore_errors=True)
    rows = read_rounds(rounds_file)
    summary = {"engine": engine, "settings": settings.to_run_config(), "result": result, **shares,
               "rounds": [summarize_round(r) for r in rows]}
    write_json(out / "summary.json", summary)
    return summary


def summarize_round(row: dict) -> dict:
    """The numbers of one round that a comparison needs (bytes per vehicle, wall time, metrics)."""
    received = [r for r in row.get("received", []) if "rejected" not in r]
    sent = row.get("sent_to_each_vehicle", {})
    return {
        "round": row["round"],
        "vehicles_answered": len(received),
        "vehicles_failed": len(row.get("failures", [])) + len(row.get("no_reply", [])),
        "uplink_bytes_per_vehicle": max((r["bytes"] for r in received), default=0),
        "downlink_bytes_per_vehicle": sent.get("train_bytes", 0),
        "evaluation_downlink_bytes_per_vehicle": sent.get("evaluate_bytes", 0),
        "arrays_per_message": sent.get("train_arrays", 0),
        "wall_s": row.get("wall_s"),
        "train_wall_s": row.get("train_wall_s"),
        "metrics": row.get("metrics") or {},
    }
