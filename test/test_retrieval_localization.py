"""Seed 001 Table III's plumbing (cvgl_ros/evaluation/retrieval_localization.py): which node
parameters each configuration sets, the table's statistics, and how a group's row is pooled.
The replays themselves are the nodes' (test_nodes_retrieval.py drives them over DDS)."""
from pathlib import Path

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.evaluation.retrieval_localization import CONFIGS, overrides, pool
from cvgl_ros.evaluation.track import position_error_stats as error_stats

GRIDS = {"local": Path("/g/local.npz"), "global": Path("/g/global.npz")}


def test_each_configuration_turns_on_exactly_its_measurements():
    assert overrides("gnss", GRIDS) == {"filter.use_cross_view": False}
    assert overrides("dense", GRIDS) == {}
    # the paper's retrieval rows: Eq. 5 on every frame, no dense likelihood, each with its own grid
    assert overrides("retrieval_global", GRIDS) == {"filter.use_cross_view": False,
                                                    "retrieval_index": "/g/global.npz", "retrieval_fusion": "always"}
    assert overrides("retrieval_local", GRIDS)["retrieval_index"] == "/g/local.npz"
    # the shipped setting: the coarse stage only when the filter needs it
    assert overrides("dense_local", GRIDS) == {"retrieval_index": "/g/local.npz", "retrieval_fusion": "auto"}
    assert len({str(sorted(overrides(c, GRIDS).items())) for c in CONFIGS}) == len(CONFIGS)
    with pytest.raises(InputError, match="not one of"):
        overrides("both", GRIDS)


def test_error_stats_are_the_mean_and_the_quantiles():
    e = np.arange(1, 101, dtype=float)
    s = error_stats(e)
    assert s["n"] == 100 and s["mean_m"] == pytest.approx(50.5) and s["max_m"] == 100.0
    assert s["p50_m"] == pytest.approx(50.5) and s["p99_m"] == pytest.approx(99.01)
    assert error_stats(np.array([])) == {"n": 0}


def test_a_groups_row_pools_its_poses_names_the_worst_drive_and_counts_recoveries():
    def run(errors, recovered):
        return {"stats": error_stats(np.array(errors)), "errors_m": errors, "recovered": recovered}

    runs = {"a": {"group": "biased", "dense": run([1.0, 1.0, 1.0], True)},
            "b": {"group": "biased", "dense": run([2.0, 40.0], False)},
            "c": {"group": "biased", "dense": {"failed": "RuntimeError: boom"}},
            "d": {"group": "urban_canyon", "dense": run([100.0], False)}}
    row = pool(runs, "biased", "dense")
    assert row["drives"] == 2 and row["failed"] == ["c"] and row["recovered"] == 1
    assert row["stats"]["n"] == 5 and row["stats"]["mean_m"] == pytest.approx(9.0)   # d is another group
    assert row["worst"]["drive"] == "b" and row["worst"]["max_m"] == 40.0
    assert "recovered" not in pool(runs, "urban_canyon", "dense")
    assert pool(runs, "biased", "gnss") == {"drives": 0, "failed": []}


def test_a_configuration_without_its_descriptor_card_is_one_clear_error(tmp_path):
    from cvgl_ros.evaluation.retrieval_localization import run_table

    with pytest.raises(InputError, match="retrieval_global needs the geo-global descriptor card"):
        run_table(tmp_path / "out", tmp_path / "cache", local_card="unused", configs=("dense", "retrieval_global"))
    assert not (tmp_path / "cache" / "drives").exists()   # refused before any drive is recorded


def test_another_first_seed_gives_another_fleet_of_trials_on_the_same_worlds():
    from cvgl_ros.evaluation.relocalization import trials

    acceptance, tuning = trials(10), trials(10, 301)
    assert [t.seed for t in acceptance] == list(range(201, 211)) and trials(10, 201) == acceptance
    assert [t.seed for t in tuning] == list(range(301, 311))
    assert [t.world for t in tuning] == [t.world for t in acceptance]
    assert not {t.name for t in tuning} & {t.name for t in acceptance}
    assert all(a.bearing_deg != b.bearing_deg for a, b in zip(acceptance, tuning))
