"""The pieces of federated training that need no running fleet: partitioning by drive and
area, what each strategy shares, the weighted average, waiting for stragglers."""
import itertools
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.datasets.pairs import PairDataset
from cvgl_ros.errors import InputError
from support.federated_fixtures import write_tiny_model_config, write_tiny_pairs
from cvgl_ros.federated.partition import (PairSubset, cap_evenly, linear_partition, partition_dataset,
                                          read_drives)
from cvgl_ros.federated.settings import FederationSettings
from cvgl_ros.federated.sharing import check_complete, is_shared, split_state
from cvgl_ros.federated.strategy import QuorumGrid, arrays_digest, weighted_average
from cvgl_ros.models import ENCODER_MODULES, PoseNet, load_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return write_tiny_pairs(root / "ds", worlds=3, drives_per_world=3, pairs_per_drive=3), \
        write_tiny_model_config(root / "tiny.yaml")


def test_each_drive_goes_whole_to_one_vehicle_and_vehicles_get_their_own_areas(tiny):
    data, _ = tiny
    split = PairDataset(data, "train")
    parts = partition_dataset(split, 4)
    assert len(parts) == 4 and all(len(p) > 0 for p in parts)
    assert sorted(i for p in parts for i in p.indices) == list(range(len(split)))
    owners = {}
    for p in parts:
        for d in p.drives:
            assert (d.world, d.drive) not in owners
            owners[(d.world, d.drive)] = p.vehicle
            assert {split[i]["drive"] for i in d.indices} == {d.drive}
            assert {split[i]["world"] for i in d.indices} == {d.world}
    # non-IID: a world is spread over as few vehicles as the cut allows (contiguous runs)
    world_owners = {w: sorted({v for (ww, _), v in owners.items() if ww == w}) for w in split.world_ids if
                    any(ww == w for ww, _ in owners)}
    for vehicles in world_owners.values():
        assert vehicles == list(range(vehicles[0], vehicles[-1] + 1))
    assert max(len(p) for p in parts) == 9          # 27 pairs in drives of 3: the best cut is 9/6/6/6
    assert sum(len(v) == 1 for v in world_owners.values()) >= 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=8), st.integers(1, 8))
def test_linear_partition_minimizes_the_largest_share(sizes, parts):
    if parts > len(sizes):
        with pytest.raises(ValueError):
            linear_partition(sizes, parts)
        return
    bounds = linear_partition(sizes, parts)
    assert bounds[0] == 0 and bounds[-1] == len(sizes)
    assert all(a < b for a, b in zip(bounds, bounds[1:]))
    largest = max(sum(sizes[a:b]) for a, b in zip(bounds, bounds[1:]))
    best = min(max(sum(sizes[a:b]) for a, b in zip((0, *cuts), (*cuts, len(sizes))))
               for cuts in itertools.combinations(range(1, len(sizes)), parts - 1))
    assert largest == best


def test_too_few_drives_for_the_fleet_is_one_clear_error(tiny):
    data, _ = tiny
    with pytest.raises(InputError, match="too small for 10 vehicles: it has 9 drive"):
        partition_dataset(PairDataset(data, "train"), 10)


def test_a_vehicle_share_streams_like_a_split(tiny):
    data, _ = tiny
    split = PairDataset(data, "train")
    part = partition_dataset(split, 3)[1]
    subset = PairSubset(split, cap_evenly(part.indices, 5))
    assert len(subset) == 5 == sum(s["count"] for s in subset.shards)
    streamed = list(subset.iter_shards())
    assert [(s["world"], s["drive"], s["frame"]) for s in streamed] == \
        [(split[i]["world"], split[i]["drive"], split[i]["frame"]) for i in subset.indices]
    reordered = list(subset.iter_shards(order=list(reversed(range(len(subset.shards))))))
    assert sorted(s["frame"] + 100 * s["drive"] for s in reordered) == \
        sorted(s["frame"] + 100 * s["drive"] for s in streamed)
    assert subset.meta == split.meta and subset.split == "train"
    assert [d.drive for d in read_drives(subset.dataset)][:3] == [0, 1, 2]


def test_the_training_loop_runs_on_a_vehicle_share(tiny):
    from cvgl_ros.federated.task import PoseTask

    data, config = tiny
    task = PoseTask(FederationSettings(vehicles=3, data=str(data), config_file=str(config), out="unused",
                                       rounds=2).runnable())
    model = task.build_model()
    share = task.vehicle_data(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = task.train(model, share, epochs=1, round_index=1, rounds=2)
    assert np.isfinite(stats["loss"]) and stats["pairs"] <= len(share)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    metrics = task.evaluate(model, task.eval_data())
    assert 0 <= metrics["lateral_recall_5m"] <= 100 and metrics["count"] == 4


def test_encoders_strategy_shares_exactly_the_two_encoders(tiny):
    _, config = tiny
    state = PoseNet(load_config(config).model).state_dict()
    shared, local = split_state(state, "encoders")
    assert set(shared) | set(local) == set(state) and not set(shared) & set(local)
    assert {k.split(".")[0] for k in shared} == set(ENCODER_MODULES)
    assert local and not any(k.split(".")[0] in ENCODER_MODULES for k in local)
    # BatchNorm statistics of an encoder travel with it
    assert any(k.endswith("running_mean") for k in shared)
    everything, nothing = split_state(state, "fedavg")
    assert set(everything) == set(state) and not nothing
    with pytest.raises(InputError, match="unknown strategy"):
        is_shared("ground_encoder.x", "fedprox")


def test_a_model_without_encoders_cannot_share_them():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ground_encoder = torch.nn.Linear(2, 2)
            self.head = torch.nn.Linear(2, 1)

    keys = Tiny().state_dict().keys()
    with pytest.raises(InputError, match="satellite_encoder"):
        check_complete(keys, "encoders")
    check_complete(keys, "fedavg")
    shared, local = split_state(Tiny().state_dict(), "encoders")
    assert set(shared) == {"ground_encoder.weight", "ground_encoder.bias"}
    assert set(local) == {"head.weight", "head.bias"}


def test_weighted_average_is_weighted_by_local_data_size_and_keeps_dtypes():
    a = ArrayRecord({"w": Array(np.array([0.0, 4.0], np.float32)), "n": Array(np.array(10, np.int64))})
    b = ArrayRecord({"w": Array(np.array([3.0, 0.0], np.float32)), "n": Array(np.array(20, np.int64))})
    avg = weighted_average([a, b], [1.0, 3.0])
    assert avg["w"].numpy().dtype == np.float32
    assert np.allclose(avg["w"].numpy(), [2.25, 1.0])
    assert avg["n"].numpy().dtype == np.int64 and int(avg["n"].numpy()) == 18
    assert arrays_digest(avg) == arrays_digest({"w": np.array([2.25, 1.0], np.float32), "n": np.array(18)})
    assert arrays_digest(a) != arrays_digest(b)


class _Grid:
    """Replies arrive at given times after the push; None never arrives (a dead vehicle)."""

    def __init__(self, delays):
        self.delays = delays

    def push_messages(self, messages):
        self.t0 = time.monotonic()
        return [str(i) for i in range(len(messages))]

    def pull_messages(self, ids):
        now = time.monotonic() - self.t0
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=i), has_error=lambda: False)
                for i in ids if self.delays[int(i)] is not None and self.delays[int(i)] <= now]

    def get_node_ids(self):
        return [1, 2, 3]


def test_a_round_stops_waiting_for_a_dead_vehicle_once_a_quorum_answered():
    grid = QuorumGrid(_Grid([0.1, 0.3, None]), quorum=2, straggler_timeout_s=0.5, poll_s=0.05)
    started = time.monotonic()
    replies = grid.send_and_receive([object()] * 3, timeout=60)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["0", "1"]
    assert time.monotonic() - started < 5
    assert grid.get_node_ids() == [1, 2, 3]
    # a slow but live vehicle inside the grace period is waited for
    replies = QuorumGrid(_Grid([0.1, 0.2, 0.4]), quorum=2, straggler_timeout_s=2.0, poll_s=0.05) \
        .send_and_receive([object()] * 3, timeout=60)
    assert len(replies) == 3
