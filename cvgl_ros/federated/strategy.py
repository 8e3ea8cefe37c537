"""The server's strategy: FedAvg weighted by local data set size over what the vehicles share.

"Federated Learning for Cross-view Geo-localization" (seed 000, Eq. 6): the server averages
the vehicles' parameters, each weighted by the size of its local data set, and sends the
result back; T rounds. With strategy `encoders` the arrays that travel are only those of
the two encoders (`cvgl_ros.federated.sharing`), so the same averaging runs over the
encoders and the heads never leave their vehicles.

On top of Flower's `FedAvg` this strategy

* waits (up to `join_timeout_s`) for the whole fleet before round 1, then trains on every
  connected vehicle as long as at least `min_available` are connected: a vehicle that
  crashes or drops out mid-round is logged as a failure and the round aggregates the
  others (with `QuorumGrid`: once `min_available` have answered, stragglers get
  `straggler_timeout_s` more; a round never waits more than `round_timeout_s`);
* refuses any array it did not ask for (a head parameter under `encoders`): such a reply
  is dropped, never averaged;
* averages in float64 and casts back to each array's dtype (BatchNorm counters stay ints);
* records, per round, what it sent and what it received from each vehicle (array names,
  payload bytes, data set size), failures, wall time and metrics, one JSON line per round
  in `rounds.jsonl`: the evidence that nothing else reached the server.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from logging import ERROR, INFO, WARNING
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

WEIGHT_KEY = "num-examples"


class FleetUnavailable(RuntimeError):
    """Fewer vehicles than the configured minimum are connected."""


def arrays_digest(arrays: ArrayRecord | dict) -> str:
    """sha256 over names, dtypes, shapes and values of arrays (ArrayRecord or name -> ndarray)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        value = arrays[key]
        a = np.ascontiguousarray(value.numpy() if isinstance(value, Array) else np.asarray(value))
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def weighted_average(records: list[ArrayRecord], weights: list[float]) -> ArrayRecord:
    """Eq. 6 of seed 000: sum_j w_j theta_j / sum_j w_j, per array, in float64, cast back."""
    total = float(sum(weights))
    out = {}
    for key in records[0]:
        first = records[0][key].numpy()
        acc = np.zeros(first.shape, dtype=np.float64)
        for record, weight in zip(records, weights):
            acc += record[key].numpy().astype(np.float64) * (weight / total)
        if np.issubdtype(first.dtype, np.integer):
            acc = np.rint(acc)
        out[key] = Array(np.asarray(acc, dtype=first.dtype))
    return ArrayRecord(out)


class QuorumGrid:
    """A Grid whose rounds stop waiting for stragglers once a quorum of vehicles has replied.

    Flower's `send_and_receive` waits for every reply (or the round timeout). A vehicle that
    crashed is only declared unavailable by the SuperLink after missing its heartbeats
    (about a minute). Here, once `quorum` successful replies are in, the others get
    `straggler_timeout_s` more; a reply that comes later is not waited for. Everything
    else is the wrapped grid's.
    """

    def __init__(self, grid: Grid, quorum: int, straggler_timeout_s: float, poll_s: float = 1.0):
        self._grid = grid
        self.quorum = quorum
        self.straggler_timeout_s = straggler_timeout_s
        self.poll_s = poll_s

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        if not messages:
            return []
        pending = set(self._grid.push_messages(messages))
        replies: list[Message] = []
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        quorum_at = None
        while pending:
            got = list(self._grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            now = time.monotonic()
            if quorum_at is None and sum(not m.has_error() for m in replies) >= self.quorum:
                quorum_at = now
            if not pending:
                break
            if deadline is not None and now > deadline:
                log(WARNING, "round timeout: going on without %d vehicle(s)", len(pending))
                break
            if quorum_at is not None and now - quorum_at > self.straggler_timeout_s:
                log(WARNING, "quorum reached %.0f s ago: going on without %d straggling vehicle(s)",
                    now - quorum_at, len(pending))
                break
            time.sleep(self.poll_s)
        return replies


class FleetFedAvg(FedAvg):
    def __init__(self, *, shared_keys: Iterable[str], vehicles: int, min_available: int, join_timeout_s: float,
                 record_path: str | Path, evaluate_on_vehicles: bool, evaluate_round=lambda server_round: True):
        super().__init__(fraction_train=1.0, fraction_evaluate=1.0 if evaluate_on_vehicles else 0.0,
                         min_train_nodes=min_available, min_evaluate_nodes=min_available,
                         min_available_nodes=min_available, weighted_by_key=WEIGHT_KEY)
        self.shared_keys = frozenset(shared_keys)
        self.vehicles = vehicles
        self.min_available = min_available
        self.join_timeout_s = join_timeout_s
        self.record_path = Path(record_path)
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        self.record_path.write_text("")
        self.evaluate_round = evaluate_round
        self._round: dict = {}
        self._fleet_joined = False

    # -- who takes part -------------------------------------------------------------------
    def _connected(self, grid: Grid, server_round: int, purpose: str) -> list[int]:
        """All connected vehicles; round 1 first waits for the whole fleet (up to the join timeout)."""
        want = self.min_available if self._fleet_joined else self.vehicles
        deadline = time.monotonic() + self.join_timeout_s
        while True:
            nodes = sorted(grid.get_node_ids())
            if len(nodes) >= want:
                break
            if time.monotonic() > deadline:
                if len(nodes) >= self.min_available:
                    break
                raise FleetUnavailable(f"round {server_round} ({purpose}): {len(nodes)} vehicle(s) connected, "
                                       f"at least {self.min_available} needed")
            time.sleep(0.5)
        self._fleet_joined = True
        log(INFO, "%s round %d: %d vehicle(s) connected", purpose, server_round, len(nodes))
        return nodes

    def _messages(self, record: RecordDict, nodes: list[int], message_type: str) -> list[Message]:
        return [Message(content=record, message_type=message_type, dst_node_id=n) for n in nodes]

    # -- training -------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        nodes = self._connected(grid, server_round, "train")
        foreign = sorted(set(arrays) - self.shared_keys)
        if foreign:
            raise RuntimeError(f"the server holds arrays outside the shared set: {foreign[:3]}")
        config["server-round"] = server_round
        self._round = {
            "round": server_round,
            "started_unix": time.time(),
            "vehicles_sampled": len(nodes),
            "nodes_sampled": nodes,
            "sent_to_each_vehicle": {"train_bytes": arrays.count_bytes(), "train_arrays": len(arrays)},
        }
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._messages(record, nodes, MessageType.TRAIN)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        received, failures, accepted = [], [], []
        for msg in replies:
            node = int(msg.metadata.src_node_id)
            if msg.has_error():
                failures.append({"node": node, "reason": msg.error.reason})
                log(WARNING, "round %d: vehicle node %d failed: %s", server_round, node, msg.error.reason)
                continue
            content = msg.content
            arrays_list = list(content.array_records.values())
            metrics_list = list(content.metric_records.values())
            if len(arrays_list) != 1 or len(metrics_list) != 1 or WEIGHT_KEY not in metrics_list[0]:
                failures.append({"node": node, "reason": "malformed reply (need one ArrayRecord and num-examples)"})
                continue
            arrays, metrics = arrays_list[0], metrics_list[0]
            keys = sorted(arrays)
            entry = {
                "node": node,
                "vehicle": int(metrics.get("vehicle", -1)),
                "keys": keys,
                "bytes": arrays.count_bytes(),
                "num_examples": int(metrics[WEIGHT_KEY]),
                "train_loss": float(metrics["train-loss"]) if "train-loss" in metrics else None,
            }
            received.append(entry)
            foreign = sorted(set(keys) - self.shared_keys)
            missing = sorted(self.shared_keys - set(keys))
            if foreign or missing:
                entry["rejected"] = f"{len(foreign)} unexpected and {len(missing)} missing array(s)"
                log(ERROR, "round %d: reply of vehicle %s rejected: %s", server_round, entry["vehicle"],
                    entry["rejected"])
                continue
            accepted.append((arrays, metrics))
        answered = {r["node"] for r in received} | {f["node"] for f in failures}
        self._round.update(received=received, failures=failures,
                           no_reply=[n for n in self._round.get("nodes_sampled", []) if n not in answered],
                           train_wall_s=time.time() - self._round.get("started_unix", time.time()))
        if not accepted:
            log(ERROR, "round %d: no usable reply; the global arrays stay as they were", server_round)
            return None, None
        weights = [float(m[WEIGHT_KEY]) for _, m in accepted]
        aggregated = weighted_average([a for a, _ in accepted], weights)
        self._round["aggregated_digest"] = arrays_digest(aggregated)
        self._round["aggregated_from"] = [int(m.get("vehicle", -1)) for _, m in accepted]
        loss = sum(w * float(m.get("train-loss", 0.0)) for (_, m), w in zip(accepted, weights)) / sum(weights)
        train_metrics = MetricRecord({"train-loss": loss, WEIGHT_KEY: int(sum(weights))})
        return aggregated, train_metrics

    # -- evaluation on the vehicles (strategy `encoders`: only they hold a whole model) -------
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        if self.fraction_evaluate == 0.0 or not self.evaluate_round(server_round):
            return []
        nodes = self._connected(grid, server_round, "evaluate")
        config["server-round"] = server_round
        self._round["sent_to_each_vehicle"]["evaluate_bytes"] = arrays.count_bytes()
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._messages(record, nodes, MessageType.EVALUATE)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        if self.fraction_evaluate == 0.0:
            return None          # the server evaluates (evaluate_fn) and finishes the round
        per_vehicle, failures = [], []
        for msg in replies:
            if msg.has_error():
                failures.append({"node": int(msg.metadata.src_node_id), "reason": msg.error.reason})
                continue
            for metrics in msg.content.metric_records.values():
                per_vehicle.append({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        if not per_vehicle:
            self.finish_round(server_round, None, failures=failures)
            return None
        names = [k for k in per_vehicle[0] if k not in (WEIGHT_KEY, "vehicle")]
        mean = {k: float(np.mean([p[k] for p in per_vehicle if k in p])) for k in names}
        self.finish_round(server_round, mean, per_vehicle=per_vehicle, failures=failures)
        return MetricRecord(mean)

    # -- the record -------------------------------------------------------------------------
    def finish_round(self, server_round: int, metrics: dict | None, **extra) -> None:
        """Append this round's line to rounds.jsonl (called once the round's evaluation is done)."""
        row = dict(self._round, round=server_round)
        row["wall_s"] = time.time() - row.pop("started_unix", time.time())
        row["metrics"] = metrics
        if extra.get("per_vehicle") is not None:
            row["metrics_per_vehicle"] = extra["per_vehicle"]
        if extra.get("failures"):
            row["evaluate_failures"] = extra["failures"]
        with open(self.record_path, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")
        self._round = {}
