"""When the coarse stage runs (`CoarseStage`, every branch), the filter node's side
(`FilterCoarseStage`) and the cross-view node's (`CoarseSearch`: circle, cap, datum)."""
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.filter.measurements import GridScores
from cvgl_ros.filter.particle_filter import ParticleFilter, ParticleFilterConfig
from cvgl_ros.geo import Datum
from cvgl_ros.likelihood import LikelihoodVolume
from cvgl_ros.localization.coarse_stage import (CoarseInputs, CoarseSearch, CoarseStage, FilterCoarseStage,
                                                position_sigma_m)
from cvgl_ros.retrieval.index import DescriptorIndex

pytestmark = pytest.mark.core

E = 20.8  # the shipped model's dense patch: 26 cells x 1.6 m / 2


@pytest.mark.parametrize("inputs, run, words", [
    (CoarseInputs(False), True, "no estimate"),
    (CoarseInputs(True, 1.0, integrity_alarm="re-lock"), True, "lost: re-lock"),
    (CoarseInputs(True, 1.0, disagreement_m=30.0), True, "disagrees"),
    (CoarseInputs(True, 1.0, disagreement_m=10.0), False, "covers"),
    (CoarseInputs(True, math.nan), True, "unknown"),
    (CoarseInputs(True, 8.0), True, "24.0 m > dense patch"),
    (CoarseInputs(True, 6.0), False, "covers 3 sigma = 18.0 m"),
])
def test_every_branch_of_the_decision(inputs, run, words):
    decision = CoarseStage(E).decide(inputs)
    assert decision.run is run and words in decision.reason


def test_without_a_dense_patch_it_runs_and_it_releases_with_hysteresis():
    stage = CoarseStage(None)
    assert stage.decide(CoarseInputs(True, 1.0)).reason.startswith("no dense patch")
    stage.set_half_extent(E)
    assert stage.decide(CoarseInputs(True, 8.0)).run                      # 24 m > 20.8
    held = stage.decide(CoarseInputs(True, 6.0))                         # 18 m > 0.8 x 20.8 = 16.6: held
    assert held.run and held.reason.startswith("still searching")
    found = stage.decide(CoarseInputs(True, 5.0))                        # 15 m: found, the dense stage takes over
    assert not found.run and found.reason.startswith("found: ")
    assert not stage.decide(CoarseInputs(True, 6.0)).run                 # off: 18 m < 20.8 does not restart it
    with pytest.raises(InputError):
        CoarseStage(0.0)
    with pytest.raises(InputError):
        CoarseStage(E, release_fraction=0.0)


def test_position_sigma_is_the_major_axis():
    assert position_sigma_m(np.diag([4.0, 9.0])) == pytest.approx(3.0)
    assert math.isnan(position_sigma_m(np.full((2, 2), np.nan))) and math.isnan(position_sigma_m(np.eye(3)))


def _grid():
    axis = np.arange(-50.0, 51.0, 5.0)
    ee, nn = np.meshgrid(axis, axis)
    pos = np.column_stack([ee.ravel(), nn.ravel()])
    return GridScores(pos, np.exp(-np.minimum(4.0, np.linalg.norm(pos, axis=1) / 5.0)))


def test_the_filter_side_fuses_only_while_the_stage_runs():
    pf = ParticleFilter(ParticleFilterConfig(num_particles=500, init_speed_max_mps=0.0), seed=0)
    fcs = FilterCoarseStage("auto")
    applied, decision = fcs.offer(pf, 1.0, _grid())
    assert not applied and decision.run and decision.reason == "no estimate yet"
    pf.add_gnss(1.0, 0.0, 0.0, 2.0)                                     # unverified: +25 m in the covariance
    fcs.note_volume(LikelihoodVolume(np.zeros((3, 26, 26), np.float32), 0.0, 0.0, 1.6, np.zeros(3) + [0, .1, .2]))
    assert fcs.stage.half_extent_m == pytest.approx(E)
    applied, decision = fcs.offer(pf, 1.1, _grid())
    assert applied and decision.run and "> dense patch" in decision.reason
    verified = ParticleFilter(ParticleFilterConfig(num_particles=500, unverified_sigma_m=0.0), seed=0)
    verified.add_gnss(1.0, 0.0, 0.0, 2.0)
    applied, decision = fcs.offer(verified, 1.1, _grid())                # 3 x ~3 m inside 20.8 m (after hysteresis)
    assert not applied and not decision.run
    assert FilterCoarseStage("always").offer(verified, 1.2, _grid())[0]
    applied, decision = FilterCoarseStage("off").offer(pf, 1.3, _grid())
    assert not applied and not decision.run and "off" in decision.reason
    with pytest.raises(InputError):
        FilterCoarseStage("sometimes")


class FakeModel:
    """A ground encoder that returns the descriptor of one cell (as a perfect network would)."""

    def __init__(self, descriptor):
        self.descriptor = descriptor

    def sha256(self, branch):
        return "a" * 64

    def encode_ground(self, rgb, k, yaw_enu_rad):
        return self.descriptor


K = np.array([[4.0, 0, 4], [0, 4, 4], [0, 0, 1]])


def _index(datum=Datum(49.0, 8.4, 110.0)):
    rng = np.random.default_rng(0)
    axis = np.arange(-100.0, 101.0, 5.0)
    ee, nn = np.meshgrid(axis, axis)
    desc = rng.normal(size=(ee.size, 16)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    return DescriptorIndex(np.column_stack([ee.ravel(), nn.ravel()]), desc, datum, 5.0,
                           {"model": {"ground_sha256": "a" * 64}})


def test_the_cross_view_side_searches_the_circle_capped_and_scores_the_true_cell_best():
    index = _index()
    k = int(np.flatnonzero((index.positions_en_m == [20.0, -10.0]).all(axis=1))[0])
    search = CoarseSearch(index, FakeModel(index.descriptors[k]), max_cells=80, stage=CoarseStage(E))
    search.note_gnss_sigma(10.0)
    assert search.radius_m() == 30.0
    search.note_filter_pose(np.diag([100.0, 400.0]))                    # sigma 20 m: radius 60 m
    assert search.radius_m() == 60.0
    rgb = np.zeros((8, 8, 3), np.uint8)
    timings = {}
    scores = search.search(rgb, K, 0.3, 0.0, 0.0, index.datum, 7, timings)
    assert len(scores) == 80 and scores.stamp_ns == 7 and timings["retrieval_ms"] >= 0
    assert np.linalg.norm(scores.positions_en_m, axis=1).max() <= np.sort(np.linalg.norm(
        index.positions_en_m, axis=1))[79] + 1e-9                        # the 80 nearest the prior
    assert scores.positions_en_m[scores.scores.argmax()].tolist() == [20.0, -10.0]
    assert scores.scores.max() == pytest.approx(1.0)
    with pytest.raises(InputError, match="datum"):
        search.search(rgb, K, 0.3, 0.0, 0.0, Datum(49.001, 8.4, 110.0), 8)
    with pytest.raises(InputError, match="no grid cell"):
        search.search(rgb, K, 0.3, 5000.0, 0.0, index.datum, 9)
    with pytest.raises(InputError, match="yaw is unknown"):                 # no prior yaw, no filter yaw yet
        search.search(rgb, K, None, 0.0, 0.0, index.datum, 10)
    search.note_filter_pose(np.diag([100.0, 400.0]), 0.4, math.radians(21))   # too uncertain for the sectors
    with pytest.raises(InputError, match="yaw 1-sigma 21 deg > 20"):
        search.search(rgb, K, None, 0.0, 0.0, index.datum, 11)
    search.note_filter_pose(np.diag([100.0, 400.0]), 0.4)                   # a sigma not known: not used
    with pytest.raises(InputError, match="yaw is unknown"):
        search.search(rgb, K, None, 0.0, 0.0, index.datum, 11)
    search.note_filter_pose(np.diag([100.0, 400.0]), 0.4, math.radians(19))   # the filter's yaw serves instead
    assert len(search.search(rgb, K, None, 0.0, 0.0, index.datum, 11)) == 80
    with pytest.raises(InputError, match="ground encoder"):
        CoarseSearch(_index(), type("M", (FakeModel,), {"sha256": lambda self, b: "b" * 64})(None), 50, CoarseStage(E))
    with pytest.raises(InputError, match="max_cells"):
        CoarseSearch(index, FakeModel(None), 1, CoarseStage(E))


def test_the_cross_view_side_decides_from_the_prior_source():
    search = CoarseSearch(_index(), FakeModel(None), 50, CoarseStage(E))
    assert search.decide("gnss (yaw unknown)").reason == "no estimate yet"
    assert "prior from GNSS" in search.decide("gnss (filter 80 m away; yaw unknown)").reason
    assert search.decide("filter").reason == "position uncertainty unknown"      # no /cvgl/pose covariance yet
    search.note_filter_pose(np.diag([1.0, 1.0]))
    search.stage.active = False
    assert not search.decide("filter").run
