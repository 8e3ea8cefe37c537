"""Metric definitions of seed 002 Table 1 and seed 000 Tables I-II, and the error-CDF plot."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.errors import InputError
from cvgl_ros.evaluation.pose_metrics import pose_errors, pose_metrics, table1_row
from cvgl_ros.evaluation.pose_plots import plot_error_cdf


def test_lateral_longitudinal_follow_the_true_heading():
    # Vehicle heading north (yaw 90 deg): an estimate 2 m east is 2 m to its right (lateral),
    # one 3 m north is 3 m ahead (longitudinal).
    truth = np.array([[0.0, 0.0, math.pi / 2], [0.0, 0.0, math.pi / 2]])
    est = np.array([[2.0, 0.0, math.pi / 2 + math.radians(0.5)], [0.0, 3.0, math.pi / 2 - math.radians(4)]])
    err = pose_errors(est, truth)
    np.testing.assert_allclose(err["lateral_m"], [2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(err["longitudinal_m"], [0.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(err["azimuth_deg"], [0.5, 4.0], atol=1e-9)
    m = pose_metrics(est, truth)
    assert m["lateral_recall_1m"] == 50.0 and m["lateral_recall_3m"] == 100.0
    assert m["longitudinal_recall_1m"] == 50.0 and m["longitudinal_recall_5m"] == 100.0
    assert m["azimuth_recall_1deg"] == 50.0 and m["azimuth_recall_5deg"] == 100.0
    assert m["lateral_1m_and_azimuth_1deg_recall"] == 0.0          # the first fails lateral, the second azimuth
    assert m["lateral_5m_and_azimuth_5deg_recall"] == 100.0
    assert m["position_median_m"] == pytest.approx(2.5) and m["azimuth_mean_deg"] == pytest.approx(2.25)
    assert list(table1_row(m)) == ["position_mean_m", "position_median_m", "lateral_recall_1m", "lateral_recall_5m",
                                   "longitudinal_recall_1m", "longitudinal_recall_5m", "azimuth_recall_1deg",
                                   "azimuth_recall_5deg", "azimuth_mean_deg", "azimuth_median_deg"]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 1000), n=st.integers(1, 40))
def test_errors_preserve_norm_and_wrap_yaw(seed, n):
    rng = np.random.default_rng(seed)
    truth = np.column_stack((rng.uniform(-20, 20, (n, 2)), rng.uniform(-math.pi, math.pi, n)))
    est = truth + np.column_stack((rng.normal(0, 3, (n, 2)), rng.uniform(-3 * math.pi, 3 * math.pi, n)))
    err = pose_errors(est, truth)
    np.testing.assert_allclose(np.hypot(err["lateral_m"], err["longitudinal_m"]), err["position_m"], rtol=1e-9)
    assert np.all(err["azimuth_deg"] <= 180.0) and np.all(err["azimuth_deg"] >= 0.0)
    m = pose_metrics(est, truth)
    for d in (1, 3, 5):
        assert m[f"lateral_{d}m_and_azimuth_{d}deg_recall"] <= min(m[f"lateral_recall_{d}m"], m[f"azimuth_recall_{d}deg"])


def test_non_finite_estimates_count_as_failures_and_bad_shapes_are_refused(tmp_path):
    truth = np.zeros((3, 3))
    est = np.array([[0.1, 0.0, 0.0], [np.nan, 0.0, 0.0], [0.0, 0.0, 0.0]])
    m = pose_metrics(est, truth)
    assert m["lateral_recall_1m"] == pytest.approx(200 / 3) and m["position_mean_m"] == math.inf
    with pytest.raises(InputError):
        pose_metrics(np.zeros((2, 2)), np.zeros((2, 2)))
    png = plot_error_cdf(pose_errors(est, truth), tmp_path / "cdf.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
