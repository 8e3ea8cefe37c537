"""The confidence-weighted Procrustes pose (seed 002 Eq. 3, 8-12) against numpy's SVD."""
import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.models.pose_solver import weighted_procrustes


def svd_procrustes(src, dst, w):
    """Reference: R from the SVD of H = sum w q_src q_dst^T with det(R) = +1, t = g_dst - R g_src."""
    g_s = (w[:, None] * src).sum(0) / w.sum()
    g_d = (w[:, None] * dst).sum(0) / w.sum()
    h = ((src - g_s) * w[:, None]).T @ (dst - g_d)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, d]) @ u.T
    return math.atan2(r[1, 0], r[0, 0]), g_d - r @ g_s


@settings(max_examples=60, deadline=None)
@given(yaw=st.floats(-math.pi + 1e-3, math.pi - 1e-3), tx=st.floats(-30, 30), ty=st.floats(-30, 30),
       seed=st.integers(0, 10_000), noise=st.floats(0, 2))
def test_matches_svd_solution_and_recovers_pose(yaw, tx, ty, seed, noise):
    rng = np.random.default_rng(seed)
    src = rng.uniform(-20, 20, (50, 2))
    r = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    dst = src @ r.T + np.array([tx, ty]) + rng.normal(0, noise, src.shape)
    w = rng.uniform(0.05, 1.0, 50)
    yaw_t, t_t = weighted_procrustes(torch.tensor(src[None]), torch.tensor(dst[None]), torch.tensor(w[None]))
    yaw_ref, t_ref = svd_procrustes(src, dst, w)
    assert abs(math.remainder(float(yaw_t[0]) - yaw_ref, 2 * math.pi)) < 1e-6
    np.testing.assert_allclose(t_t[0].numpy(), t_ref, atol=1e-5)
    if noise == 0:
        assert abs(math.remainder(float(yaw_t[0]) - yaw, 2 * math.pi)) < 1e-6
        np.testing.assert_allclose(t_t[0].numpy(), [tx, ty], atol=1e-5)


def test_zero_weight_outliers_are_ignored_and_gradients_are_finite():
    rng = np.random.default_rng(1)
    src = torch.tensor(rng.uniform(-10, 10, (1, 40, 2)))
    yaw = 0.4
    c, s = math.cos(yaw), math.sin(yaw)
    dst = torch.stack((c * src[..., 0] - s * src[..., 1] + 3, s * src[..., 0] + c * src[..., 1] - 2), -1)
    dst[0, :10] += torch.tensor(rng.uniform(-50, 50, (10, 2)))          # gross outliers ...
    w = torch.ones(1, 40, dtype=torch.float64)
    w[0, :10] = 0.0                                                     # ... with zero confidence
    w.requires_grad_(True)
    yaw_t, t_t = weighted_procrustes(src, dst, w)
    assert abs(float(yaw_t.detach()) - yaw) < 1e-9
    np.testing.assert_allclose(t_t[0].detach().numpy(), [3, -2], atol=1e-9)
    (yaw_t.sum() + t_t.sum()).backward()
    assert torch.all(torch.isfinite(w.grad))


def test_all_zero_weights_give_finite_pose():
    src = torch.zeros(2, 5, 2)
    yaw, t = weighted_procrustes(src, src + 1, torch.zeros(2, 5))
    assert torch.all(torch.isfinite(yaw)) and torch.all(torch.isfinite(t))
