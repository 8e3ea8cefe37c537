"""The geo-local loss of seed 001 (Eq. 1-3) and its local mini-batches (Eq. 4): weights that are 1
far away and decay near, a loss that falls as a true pair aligns, both directions, the global
baseline equal to the plain soft-margin triplet loss, and batches drawn from one neighbourhood."""
import math

import numpy as np
import pytest
import torch

from cvgl_ros.errors import InputError
from cvgl_ros.models.descriptor import DescriptorConfig, DescriptorNet, descriptor_distances
from cvgl_ros.models.geo_local_loss import (geo_local_loss, geo_weights, pairwise_geo_distances,
                                            soft_margin_triplet_loss, weight_scale)
from cvgl_ros.train.local_batches import LocalBatchSampler, RandomBatchSampler, neighbour_counts, neighbourhoods


def test_step_weights_are_one_at_r_zero_beyond_and_decay_near():
    delta = np.array([0.0, 1.0, 5.0, 10.0, 30.0, 50.0, 50.001, np.inf])
    w = geo_weights(delta, r_m=50.0, sigma_geo_m=10.0, decay="step")
    assert w[0] == 0.0 and w[1] < 0.01                           # nearly the same place: not a negative
    assert np.all(np.diff(w[:6]) > 0)                            # rising with distance up to r
    assert w[5] == pytest.approx(1.0)                            # the maximum, at r, is scaled to 1
    assert w[6] == 0.0 and w[7] == 0.0                           # beyond the prior's radius, other worlds
    assert w[3] == pytest.approx((1 - math.exp(-0.5)) / (1 - math.exp(-12.5)))


def test_gaussian_weights_peak_at_one_and_vanish_near_r():
    delta = np.linspace(0.0, 80.0, 8001)
    w = geo_weights(delta, r_m=50.0, sigma_geo_m=10.0, decay="gaussian")
    assert w.max() == pytest.approx(1.0, abs=1e-6)
    assert 10.0 < delta[w.argmax()] < 25.0                      # the product peaks between sigma_geo and r/2
    at_r = weight_scale(50.0, 10.0, "gaussian") * math.exp(-4.5) * (1 - math.exp(-12.5))   # 3 std devs out
    assert w[delta >= 50.0].max() == pytest.approx(at_r) and at_r < 0.03                     # "nearly zero at r"
    assert geo_weights(np.array([np.inf]), 50.0, 10.0, "gaussian")[0] == 0.0


def test_without_down_weighting_the_step_weight_is_the_plain_prior():
    w = geo_weights(np.array([0.0, 0.5, 49.0, 51.0]), r_m=50.0, sigma_geo_m=0.0, decay="step")
    assert w.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert weight_scale(50.0, 0.0, "gaussian") == 1.0


def test_bad_weight_arguments_are_one_line_errors():
    for kwargs in ({"r_m": 0.0}, {"r_m": float("nan")}, {"r_m": 50.0, "sigma_geo_m": -1.0},
                   {"r_m": 50.0, "decay": "cosine"}):
        with pytest.raises(InputError):
            geo_weights(np.array([1.0]), **kwargs)
    with pytest.raises(InputError, match="NaN"):
        geo_weights(np.array([np.nan]), 50.0)
    with pytest.raises(InputError):
        pairwise_geo_distances(np.array([[0.0, np.nan]]))


def plain_soft_margin(d: np.ndarray, gamma: float = 10.0) -> float:
    """The SAFA baseline loss written out term by term."""
    n = len(d)
    s2g = [math.log1p(math.exp(gamma * (d[i, i] - d[i, j]))) for i in range(n) for j in range(n) if i != j]
    g2s = [math.log1p(math.exp(gamma * (d[i, i] - d[j, i]))) for i in range(n) for j in range(n) if i != j]
    return 0.5 * (np.mean(s2g) + np.mean(g2s))


def test_global_baseline_is_the_plain_soft_margin_triplet_loss():
    rng = np.random.default_rng(0)
    d = torch.tensor(rng.uniform(0, 2, (6, 6)))
    out = soft_margin_triplet_loss(d)
    assert float(out["loss"]) == pytest.approx(plain_soft_margin(d.numpy()), rel=1e-9)
    assert float(out["weight_mean"]) == 1.0


def test_the_two_directions_swap_when_the_views_swap():
    rng = np.random.default_rng(1)
    d = torch.tensor(rng.uniform(0, 2, (5, 5)))
    a, b = soft_margin_triplet_loss(d), soft_margin_triplet_loss(d.T.contiguous())
    assert float(a["sat_to_ground"]) == pytest.approx(float(b["ground_to_sat"]))
    assert float(a["ground_to_sat"]) == pytest.approx(float(b["sat_to_ground"]))
    assert float(a["sat_to_ground"]) != pytest.approx(float(a["ground_to_sat"]))   # the test can tell them apart


def test_loss_falls_as_a_true_pair_aligns():
    """Satellite descriptors e_0..e_3, ground descriptors e_4..e_7 (every pair 2 apart); G_0 turns
    towards S_0 in the plane of e_0 and e_4, which leaves all its other distances at 2."""
    eye = torch.eye(8, dtype=torch.float64)
    f, g_far = eye[:4], eye[4:]
    losses = []
    for t in (0.0, 0.3, 0.6, 0.9, 1.0):
        g = g_far.clone()
        g[0] = torch.nn.functional.normalize((1 - t) * g_far[0] + t * f[0], dim=0)
        losses.append(float(soft_margin_triplet_loss(descriptor_distances(f, g))["loss"]))
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[0] == pytest.approx(math.log(2.0))            # all distances equal: log(1 + e^0)


def test_geo_local_loss_ignores_far_and_identical_places():
    d = torch.tensor(np.random.default_rng(3).uniform(0, 2, (3, 3)))
    positions = np.array([[0.0, 0.0], [30.0, 0.0], [500.0, 0.0]])
    out = geo_local_loss(d, positions, None, r_m=50.0)
    w = geo_weights(pairwise_geo_distances(positions), 50.0)
    assert w[0, 2] == 0.0 and w[0, 1] > 0.9
    full = soft_margin_triplet_loss(d, torch.tensor(w))
    assert float(out["loss"]) == pytest.approx(float(full["loss"]))
    only_far = geo_local_loss(d, np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]), np.array([0, 1, 2]), 50.0)
    assert float(only_far["loss"]) == 0.0                        # three worlds: no triplet counts


def test_descriptors_are_unit_vectors_of_the_documented_size():
    from cvgl_ros.retrieval.sectors import sector_weights

    config = DescriptorConfig(image_hw=(32, 128), patch_px=32, polar_hw=(32, 128), channels=(8, 8, 16, 16),
                              attention_maps=3, sector_dim=5)
    net = DescriptorNet(config).eval()
    weights = sector_weights([0.0, 2.0], [[64.0, 0, 64], [0, 64, 16], [0, 0, 1]], 128, config.stride, 8)
    g, f = net(torch.rand(2, 3, 32, 128), torch.from_numpy(weights), torch.rand(2, 3, 32, 128))
    assert config.sectors == 8 and g.shape == f.shape == (2, 8 * 5)
    assert torch.allclose(g.norm(dim=1), torch.ones(2)) and torch.allclose(f.norm(dim=1), torch.ones(2))
    unseen = weights.sum(axis=1) <= 0.25                           # a 90 deg camera sees 2-4 of the 8 sectors
    assert 4 <= unseen[0].sum() <= 6 and torch.all(g.view(2, 8, 5)[torch.from_numpy(unseen)] == 0)
    with pytest.raises(InputError, match="multiples"):
        DescriptorConfig(image_hw=(30, 128))
    with pytest.raises(InputError, match="multiple of 4"):
        DescriptorConfig(polar_hw=(64, 96))


def test_neighbourhoods_follow_eq4():
    positions = np.array([[0.0, 0.0], [10.0, 0.0], [60.0, 0.0], [0.0, 0.0], [5.0, 0.0]])
    worlds = np.array([0, 0, 0, 0, 1])
    found = neighbourhoods(positions, 50.0, worlds)
    assert [n.tolist() for n in found] == [[1, 3], [0, 2, 3], [1], [0, 1], []]
    assert neighbour_counts(positions, 50.0, worlds).tolist() == [2, 3, 1, 2, 0]


def test_local_batches_come_from_one_neighbourhood_and_never_repeat_a_pair():
    rng = np.random.default_rng(4)
    positions = np.concatenate([rng.uniform(0, 80, (60, 2)), rng.uniform(5000, 5080, (60, 2))])
    sampler = LocalBatchSampler(positions, batch_size=8, radius_m=50.0)
    batches = list(sampler.epoch(np.random.default_rng(5)))
    used = np.concatenate(batches)
    assert len(batches) >= 10 and len(used) == len(set(used.tolist()))
    for b in batches:
        assert len(b) == 8
        assert np.linalg.norm(positions[b[1:]] - positions[b[0]], axis=1).max() <= 50.0   # N_r of the anchor
        assert np.ptp(positions[b], axis=0).max() <= 100.0                                # within 2 r
    again = list(sampler.epoch(np.random.default_rng(5)))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))                      # seeded


def test_isolated_pairs_are_not_used_and_random_batches_cover_everything():
    positions = np.array([[0.0, 0.0], [1000.0, 0.0], [2000.0, 0.0]])
    assert list(LocalBatchSampler(positions, 2, 50.0).epoch(np.random.default_rng(0))) == []
    batches = list(RandomBatchSampler(10, 3).epoch(np.random.default_rng(0)))
    assert len(batches) == 3 and len(set(np.concatenate(batches).tolist())) == 9
    with pytest.raises(InputError):
        LocalBatchSampler(positions, 1)
    with pytest.raises(InputError):
        LocalBatchSampler(positions, 4, radius_m=-1.0)
