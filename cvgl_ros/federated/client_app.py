"""The vehicle's side: a Flower `ClientApp` that trains the pose network on its own drives.

Each vehicle (a SuperNode; `partition-id` in its node config says which share of the fleet's
pairs it owns) receives the shared arrays, merges them into its model, trains
`local-epochs` epochs on its own pairs and answers with the shared arrays only
(`cvgl_ros.federated.sharing`): all of them under `fedavg`, the two encoders under
`encoders`. What is not shared (the head) is kept in the vehicle's directory
(`local_state.pt`) from round to round and never put into a message.

Every step is logged to the vehicle's `rounds.jsonl` (round, phase, digests of the shared
and the local parameters, metrics), and after each evaluation the vehicle's whole model is
saved as `model.pt` — under `encoders` that is the vehicle's own model: shared encoders +
its own head.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from cvgl_ros.errors import InputError
from cvgl_ros.federated.settings import FederationSettings
from cvgl_ros.federated.sharing import split_state
from cvgl_ros.federated.strategy import WEIGHT_KEY, arrays_digest

app = ClientApp()

LOCAL_STATE_FILE = "local_state.pt"
MODEL_FILE = "model.pt"
LOG_FILE = "rounds.jsonl"
SENT_FILE = "sent.pt"   # the arrays the vehicle sent in its latest round: all that left it


class Vehicle:
    """One vehicle of the run: its index, its directory, its settings and its task."""

    def __init__(self, context: Context):
        self.settings = FederationSettings.from_run_config(context.run_config)
        node_config = context.node_config
        if "partition-id" not in node_config:
            raise InputError("this SuperNode has no partition-id in its node config")
        self.index = int(node_config["partition-id"])
        fleet = int(node_config.get("num-partitions", self.settings.vehicles))
        if fleet != self.settings.vehicles or not 0 <= self.index < fleet:
            raise InputError(f"SuperNode partition {self.index} of {fleet} does not fit a fleet of "
                             f"{self.settings.vehicles} vehicles")
        self.dir = Path(str(node_config.get("vehicle-dir") or self.settings.vehicle_dir(self.index)))
        self.dir.mkdir(parents=True, exist_ok=True)
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.settings.vehicles))
        from cvgl_ros.federated.task import PoseTask

        self.task = PoseTask(self.settings)

    def log(self, **row) -> None:
        row = {"vehicle": self.index, "unix": time.time(), **row}
        with open(self.dir / LOG_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")

    def model_with(self, received: ArrayRecord):
        """The vehicle's model: initial weights <- its own kept local part <- the received shared part."""
        import torch

        model = self.task.build_model()
        state = model.state_dict()
        local_file = self.dir / LOCAL_STATE_FILE
        if local_file.is_file():
            local = torch.load(local_file, map_location="cpu", weights_only=True)
            unknown = sorted(set(local) - set(state))
            if unknown:
                raise InputError(f"{local_file} does not fit the model (e.g. {unknown[0]})")
            state.update(local)
        shared_expected, _ = split_state(state, self.settings.strategy)
        incoming = received.to_torch_state_dict()
        foreign = sorted(set(incoming) - set(shared_expected))
        if foreign:
            raise InputError(f"the server sent arrays this strategy does not share (e.g. {foreign[0]})")
        state.update(incoming)
        model.load_state_dict(state, strict=True)
        return model

    def keep_local(self, model) -> dict:
        """Store the part that never leaves the vehicle, and a copy of the part that is sent
        (`sent.pt`, replaced every round); return the part that is sent."""
        import torch

        from cvgl_ros.atomic import atomic_path

        shared, local = split_state(model.state_dict(), self.settings.strategy)
        with atomic_path(self.dir / LOCAL_STATE_FILE) as tmp:
            torch.save(local, tmp)
        with atomic_path(self.dir / SENT_FILE) as tmp:
            torch.save(shared, tmp)
        return shared


def _digest(state: dict) -> str:
    return arrays_digest({k: v.detach().cpu().numpy() for k, v in state.items()})


def _received(msg: Message) -> ArrayRecord:
    records = list(msg.content.array_records.values())
    if len(records) != 1:
        raise InputError(f"expected one ArrayRecord from the server, got {len(records)}")
    return records[0]


@app.train()
def train(msg: Message, context: Context) -> Message:
    vehicle = Vehicle(context)
    server_round = int(msg.content["config"]["server-round"])
    vehicle.log(round=server_round, phase="train-received")
    model = vehicle.model_with(_received(msg))
    data = vehicle.task.vehicle_data(vehicle.index)
    shared_in, local_in = split_state(model.state_dict(), vehicle.settings.strategy)
    vehicle.log(round=server_round, phase="train-start", pairs=len(data), shared_digest=_digest(shared_in),
                local_digest=_digest(local_in))
    stats = vehicle.task.train(model, data, vehicle.settings.local_epochs, server_round, vehicle.settings.rounds)
    shared = vehicle.keep_local(model)
    reply = ArrayRecord.from_torch_state_dict(shared)
    vehicle.log(round=server_round, phase="train-end", loss=stats["loss"], sent_arrays=len(reply),
                sent_bytes=reply.count_bytes())
    metrics = MetricRecord({WEIGHT_KEY: len(data), "train-loss": float(stats["loss"]), "vehicle": vehicle.index})
    return Message(content=RecordDict({"arrays": reply, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    vehicle = Vehicle(context)
    server_round = int(msg.content["config"]["server-round"])
    vehicle.log(round=server_round, phase="evaluate-received")
    model = vehicle.model_with(_received(msg))
    data = vehicle.task.eval_data()
    metrics = vehicle.task.evaluate(model, data)
    shared, local = split_state(model.state_dict(), vehicle.settings.strategy)
    vehicle.task.save(model, vehicle.dir / MODEL_FILE, dataset=vehicle.task.vehicle_data(vehicle.index),
                      server_round=server_round, strategy=vehicle.settings.strategy, vehicle=vehicle.index)
    vehicle.log(round=server_round, phase="evaluate", shared_digest=_digest(shared), local_digest=_digest(local),
                metrics=metrics)
    record = MetricRecord({**{k: float(v) for k, v in metrics.items()}, WEIGHT_KEY: len(data),
                           "vehicle": vehicle.index})
    return Message(content=RecordDict({"metrics": record}), reply_to=msg)
