"""Acceptance of the particle filter (seed 001 §III-D) on a synthetic urban_canyon drive: GNSS at
5 Hz with the urban_canyon error model, cross-view likelihoods simulated from the truth at
10 Hz (Gaussian of 1 m and 2 deg, 10 % of frames with a false peak elsewhere) arriving
0.2 s late, on the network's 64 x 128 x 128 grid of 0.4 m. Fixed seeds, simulated time."""
import numpy as np
import pytest

from cvgl_ros.filter.particle_filter import ParticleFilter, ParticleFilterConfig
from support.simulated_run import camera_frames, city_block_route, gnss_messages, run_filter
from cvgl_ros.sim.gnss import GnssModel
from cvgl_ros.sim.simulated_cross_view import SimulatedCrossView, SimulatedCrossViewConfig
from cvgl_ros.sim.trajectory import simulate_drive

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

DURATION_S = 200.0


@pytest.fixture(scope="module")
def drive():
    route, stops = city_block_route()
    trajectory = simulate_drive(route, stops, seed=1, duration_s=DURATION_S, rate_hz=50.0)
    gnss = GnssModel.from_name("urban_canyon", seed=1).simulate(trajectory, 5.0)
    return trajectory, gnss


def stats(errors):
    return {"mean": float(np.mean(errors)), "p99": float(np.percentile(errors, 99))}


def test_fused_filter_beats_raw_gnss_as_in_table_iii(drive):
    trajectory, gnss = drive
    raw = gnss.error_stats()
    assert raw["p99_m"] > 15.0  # the drive has multipath bursts: the outlier rejection matters

    config = SimulatedCrossViewConfig(sigma_xy_m=1.0, sigma_yaw_deg=2.0, false_peak_fraction=0.1)
    cross_view = SimulatedCrossView(config, seed=4)
    events = gnss_messages(gnss) + camera_frames(0.0, DURATION_S, rate_hz=10.0, latency_s=0.2)
    fused = run_filter(ParticleFilter(ParticleFilterConfig(), seed=5), trajectory, events, cross_view)
    gnss_only = run_filter(ParticleFilter(ParticleFilterConfig(use_cross_view=False), seed=5), trajectory,
                           gnss_messages(gnss))

    for run in (fused, gnss_only):
        assert run.initialized.all()
        assert np.all(np.isfinite(run.east_m)) and np.all(np.isfinite(run.north_m)) and np.all(np.isfinite(run.yaw_enu_rad))
    assert 0.05 < cross_view.false_peaks / cross_view.frames < 0.15
    assert fused.diagnostics["cross_view_applied"] > 0.95 * cross_view.frames
    assert fused.diagnostics["late_applied"] > 0.5 * cross_view.frames  # 0.2 s late: applied at their stamps
    assert fused.diagnostics["gnss_rejected"] > 0

    f, g = stats(fused.error_m), stats(gnss_only.error_m)
    print(f"raw GNSS mean {raw['mean_m']:.2f} p99 {raw['p99_m']:.2f} | fused mean {f['mean']:.2f} p99 {f['p99']:.2f}"
          f" | GNSS-only PF mean {g['mean']:.2f} p99 {g['p99']:.2f} | fused yaw median"
          f" {np.median(fused.yaw_error_deg):.2f} deg")
    assert f["mean"] <= 0.5 * raw["mean_m"]
    assert f["p99"] <= 0.4 * raw["p99_m"]
    assert g["mean"] < raw["mean_m"]
    assert np.median(fused.yaw_error_deg) < 3.0
