"""The server's side: a Flower `ServerApp` that runs T rounds of `FleetFedAvg`.

It builds the initial pose network from the run's model config, keeps only the shared
part of it (the whole model under `fedavg`, the encoders under `encoders`) and runs the
rounds. Under `fedavg` the server holds the whole global model and evaluates it after
every round on the evaluation split; under `encoders` it never holds a head, so each
vehicle evaluates its own model (shared encoders + its head) and reports its recalls.

Writes into `<out>/server/`: `rounds.jsonl` (one line per round, see `strategy`),
`model.pt` (fedavg: the global model) or `encoders.pt` (encoders: the shared arrays only)
and `result.json` (status and summary), last.
"""
from __future__ import annotations

import time

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from cvgl_ros.atomic import write_json
from cvgl_ros.federated.settings import FederationSettings
from cvgl_ros.federated.sharing import check_complete, split_state
from cvgl_ros.federated.strategy import FleetFedAvg, QuorumGrid

app = ServerApp()

ROUNDS_FILE = "rounds.jsonl"
RESULT_FILE = "result.json"
MODEL_FILE = "model.pt"          # fedavg
ENCODERS_FILE = "encoders.pt"    # encoders


def serve_rounds(grid: Grid, settings: FederationSettings) -> dict:
    """The server's part of a federation: T rounds of FleetFedAvg from the initial shared model, then
    the aggregate saved (fedavg: the global model; encoders: the shared arrays); returns the summary."""
    import torch

    from cvgl_ros.federated.task import PoseTask

    task = PoseTask(settings)
    model = task.build_model()
    check_complete(model.state_dict().keys(), settings.strategy)
    shared, local = split_state(model.state_dict(), settings.strategy)
    strategy = FleetFedAvg(shared_keys=shared.keys(), vehicles=settings.vehicles,
                           min_available=settings.min_available, join_timeout_s=settings.join_timeout_s,
                           record_path=settings.server_dir / ROUNDS_FILE,
                           evaluate_on_vehicles=settings.strategy == "encoders",
                           evaluate_round=settings.evaluates_after)
    evaluate_fn = None
    if settings.strategy == "fedavg":
        eval_data = task.eval_data()

        def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            if server_round == 0:
                return None
            if not settings.evaluates_after(server_round):
                strategy.finish_round(server_round, None)
                return None
            model.load_state_dict(arrays.to_torch_state_dict(), strict=True)
            metrics = task.evaluate(model, eval_data)
            strategy.finish_round(server_round, metrics)
            return MetricRecord({k: float(v) for k, v in metrics.items()})

    started = time.time()
    quorum_grid = QuorumGrid(grid, quorum=settings.min_available, straggler_timeout_s=settings.straggler_timeout_s)
    result = strategy.start(grid=quorum_grid, initial_arrays=ArrayRecord.from_torch_state_dict(shared),
                            num_rounds=settings.rounds, timeout=settings.round_timeout_s,
                            train_config=ConfigRecord({"local-epochs": settings.local_epochs}),
                            evaluate_fn=evaluate_fn)
    if len(result.arrays) == 0:
        raise RuntimeError("no round produced an aggregate: every vehicle failed")
    final = result.arrays.to_torch_state_dict()
    if settings.strategy == "fedavg":
        model.load_state_dict(final, strict=True)
        task.save(model, settings.server_dir / MODEL_FILE, server_round=settings.rounds, strategy="fedavg")
    else:
        from cvgl_ros.atomic import atomic_path

        with atomic_path(settings.server_dir / ENCODERS_FILE) as tmp:
            torch.save(dict(final), tmp)
    return {
        "status": "completed",
        "strategy": settings.strategy,
        "vehicles": settings.vehicles,
        "rounds": settings.rounds,
        "shared_arrays": len(shared),
        "local_arrays": len(local),
        "wall_s": time.time() - started,
    }


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = FederationSettings.from_run_config(context.run_config)
    settings.server_dir.mkdir(parents=True, exist_ok=True)
    try:
        summary = serve_rounds(grid, settings)
    except Exception as exc:
        write_json(settings.server_dir / RESULT_FILE, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise
    write_json(settings.server_dir / RESULT_FILE, summary)
