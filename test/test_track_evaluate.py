"""`cvgl evaluate-track` and `evaluate_track`: real bags (rosbags MCAP) written here, a fused
run of the particle filter on a simulated urban_canyon drive, exact errors on a known offset."""
import dataclasses
import json
import math
import subprocess

import numpy as np
import pytest

from cvgl_ros.datasets.bag import (NAVSAT_STATUS_NO_FIX, T, TOPIC_GNSS_FIX, TOPIC_GT_POSE,
                                   BagWriter, header, navsatfix_msg, pose_stamped_msg)
from cvgl_ros.errors import InputError
from cvgl_ros.evaluation.track import evaluate_track, load_gnss, load_truth
from cvgl_ros.filter.kalman_baseline import ConstantVelocityKalman
from cvgl_ros.filter.particle_filter import ParticleFilter, ParticleFilterConfig
from support.simulated_run import camera_frames, city_block_route, gnss_messages, run_filter
from cvgl_ros.geo.datum import Datum
from cvgl_ros.geo.yaw import yaw_to_quaternion
from cvgl_ros.sim.gnss import STATUS_NO_FIX, GnssModel
from cvgl_ros.sim.simulated_cross_view import SimulatedCrossView, SimulatedCrossViewConfig
from cvgl_ros.sim.trajectory import simulate_drive
from cvgl_ros.tiles import EnuRaster, MBTilesStore, add_enu_raster

DATUM = Datum(49.0, 8.4, 110.0)
DURATION_S = 90.0
POSE_COV = "geometry_msgs/msg/PoseWithCovarianceStamped"


def pose_with_covariance_msg(t_s, east, north, yaw, cov_xyyaw=np.diag([1.0, 1.0, 0.01])):
    """What the replay tool records on /cvgl/pose (a builder of our own for the test)."""
    qx, qy, qz, qw = (float(v) for v in yaw_to_quaternion(yaw))
    cov = np.zeros((6, 6))
    cov[:2, :2] = cov_xyyaw[:2, :2]
    cov[5, 5] = cov_xyyaw[2, 2]
    pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=float(east), y=float(north), z=0.0),
                                       orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
    return T[POSE_COV](header=header(int(round(t_s * 1e9)), "map"),
                       pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=cov.reshape(-1)))


def write_estimate_bag(path, t, east, north, yaw):
    with BagWriter(path) as bag:
        for ti, e, n, y in zip(t, east, north, yaw):
            bag.write("/cvgl/pose", POSE_COV, int(round(ti * 1e9)), pose_with_covariance_msg(ti, e, n, y))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A truth bag of an urban_canyon drive and the fused filter's poses on it."""
    root = tmp_path_factory.mktemp("track")
    route, stops = city_block_route()
    trajectory = simulate_drive(route, stops, seed=1, duration_s=DURATION_S, rate_hz=50.0)
    gnss = GnssModel.from_name("urban_canyon", seed=11).simulate(trajectory, 5.0)
    outage = (gnss.t_s >= 30.0) & (gnss.t_s < 34.0)  # 4 s of NO_FIX
    nan = np.where(outage, np.nan, 1.0)
    gnss = dataclasses.replace(gnss, east_m=gnss.east_m * nan, north_m=gnss.north_m * nan,
                               reported_sigma_m=gnss.reported_sigma_m * nan,
                               status=np.where(outage, STATUS_NO_FIX, gnss.status).astype(np.int8))
    truth_bag = root / "truth"
    truth = trajectory.sample(np.arange(0.0, DURATION_S + 1e-9, 0.1))
    with BagWriter(truth_bag) as bag:
        bag.set_datum(DATUM)
        for t, e, n, y in zip(truth.t_s, truth.east_m, truth.north_m, truth.yaw_enu_rad):
            bag.write(TOPIC_GT_POSE, "geometry_msgs/msg/PoseStamped", int(round(t * 1e9)),
                      pose_stamped_msg(e, n, 0.0, y, int(round(t * 1e9))))
        for i, t in enumerate(gnss.t_s):
            stamp = int(round(t * 1e9))
            if gnss.valid[i]:
                lat, lon, alt = DATUM.to_wgs84(gnss.east_m[i], gnss.north_m[i], 0.0)
                msg = navsatfix_msg(float(lat), float(lon), float(alt), stamp, sigma_m=float(gnss.reported_sigma_m[i]))
            else:
                msg = navsatfix_msg(math.nan, math.nan, math.nan, stamp, sigma_m=None, status=NAVSAT_STATUS_NO_FIX)
            bag.write(TOPIC_GNSS_FIX, "sensor_msgs/msg/NavSatFix", stamp, msg)
    cross_view = SimulatedCrossView(SimulatedCrossViewConfig(num_yaw_bins=36, size_cells=80, cell_m=0.6), seed=2)
    events = gnss_messages(gnss) + camera_frames(0.0, DURATION_S, 10.0, 0.2)
    run = run_filter(ParticleFilter(ParticleFilterConfig(), seed=3), trajectory, events, cross_view,
                     output_times_s=np.arange(1.0, DURATION_S, 0.1))
    estimate_bag = root / "fused"
    write_estimate_bag(estimate_bag, run.t_s, run.east_m, run.north_m, run.yaw_enu_rad)
    return {"root": root, "truth_bag": truth_bag, "estimate_bag": estimate_bag, "gnss": gnss, "truth": truth}


def test_bags_read_back_in_the_map_frame(recording):
    truth = load_truth(recording["truth_bag"])
    np.testing.assert_allclose(truth.east_m, recording["truth"].east_m, atol=1e-9)
    gnss = load_gnss(recording["truth_bag"], DATUM)
    ref = recording["gnss"]
    np.testing.assert_array_equal(gnss.valid, ref.valid)
    np.testing.assert_allclose(gnss.east_m[gnss.valid], ref.east_m[ref.valid], atol=1e-6)
    np.testing.assert_allclose(gnss.sigma_m[gnss.valid], ref.reported_sigma_m[ref.valid], rtol=1e-9)


def test_of_two_poses_at_one_stamp_the_one_recorded_last_counts(tmp_path):
    from cvgl_ros.evaluation.track import load_estimate

    with BagWriter(tmp_path / "est") as bag:  # (stamp, recorded at, east): 1.0 s corrected at 1.3 s
        for t, logged, east in ((1.0, 1.0, 5.0), (2.0, 2.0, 7.0), (1.0, 1.3, 4.0), (3.0, 3.0, 9.0)):
            bag.write("/cvgl/pose", POSE_COV, int(logged * 1e9), pose_with_covariance_msg(t, east, 0.0, 0.0))
    est = load_estimate(tmp_path / "est")
    np.testing.assert_allclose(est.t_s, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(est.east_m, [4.0, 7.0, 9.0])


def test_evaluate_track_scores_the_fused_run_and_the_baselines(recording, tmp_path):
    out = tmp_path / "eval"
    metrics = evaluate_track(recording["estimate_bag"], recording["truth_bag"], out, num_particles=1000)
    m = metrics["methods"]
    raw = recording["gnss"].error_stats()
    assert m["gnss_raw"]["n"] == raw["n_fixes"]
    assert m["gnss_raw"]["mean_m"] == pytest.approx(raw["mean_m"], rel=1e-6)
    assert m["gnss_raw"]["p99_m"] == pytest.approx(raw["p99_m"], rel=1e-6)
    assert "yaw_mean_deg" not in m["gnss_raw"]
    assert m["fused"]["n"] > 850 and m["fused"]["mean_m"] < 0.5 * raw["mean_m"] and m["fused"]["yaw_p50_deg"] < 3.0
    assert m["gnss_particle_filter"]["n"] == len(recording["gnss"].t_s)  # every epoch, NO_FIX included
    assert m["kalman_cv"]["n"] == len(recording["gnss"].t_s)
    for name in ("fused", "gnss_particle_filter", "kalman_cv", "gnss_raw"):
        s = m[name]
        assert s["p50_m"] <= s["p90_m"] <= s["p95_m"] <= s["p99_m"] <= s["max_m"]
        assert s["lateral_mean_m"] <= s["mean_m"] + 1e-9 and s["longitudinal_mean_m"] <= s["mean_m"] + 1e-9
    assert json.loads((out / "metrics.json").read_text())["methods"]["fused"]["mean_m"] == m["fused"]["mean_m"]
    table = (out / "table.md").read_text()
    assert sum(line.startswith("| ") for line in table.splitlines()) == 5
    gnss = recording["gnss"]
    no_fix = 1.0 - float(np.mean(gnss.valid))                    # of the epochs the recording wrote
    assert 0.0 < no_fix < 1.0 and metrics["gnss"]["no_fix_fraction"] == pytest.approx(no_fix)
    assert f"{len(gnss.t_s)} GNSS epochs, {100 * no_fix:.1f} % NO_FIX" in table
    for name in ("fused", "gnss_particle_filter", "kalman_cv", "gnss_raw"):   # each row shows its numbers
        assert f"| {m[name]['label']} | {m[name]['mean_m']:.2f} | {m[name]['p50_m']:.2f} |" in table
    assert "raw GNSS" in table and "Kalman" in table
    for png in metrics["pngs"]:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_a_known_offset_gives_exact_errors(recording, tmp_path):
    truth = recording["truth"]
    estimate = tmp_path / "offset"
    # 3 m east and 4 m north of the truth, yaw 10 degrees off: 5 m everywhere.
    write_estimate_bag(estimate, truth.t_s, truth.east_m + 3.0, truth.north_m + 4.0, truth.yaw_enu_rad + math.radians(10))
    m = evaluate_track(estimate, recording["truth_bag"], tmp_path / "eval", num_particles=200)["methods"]["fused"]
    for key in ("mean_m", "p50_m", "p99_m", "max_m"):
        assert m[key] == pytest.approx(5.0, abs=1e-6)
    assert m["yaw_mean_deg"] == pytest.approx(10.0, abs=1e-6)
    lateral, longitudinal = m["lateral_mean_m"], m["longitudinal_mean_m"]
    assert lateral <= 5.0 + 1e-9 and longitudinal <= 5.0 + 1e-9 and lateral + longitudinal >= 5.0 - 1e-9


def test_constant_velocity_kalman_follows_a_straight_drive():
    kf = ConstantVelocityKalman(accel_noise_mps2=0.5)
    rng = np.random.default_rng(0)
    for t in np.arange(0, 30, 0.2):
        kf.add_gnss(float(t), 8.0 * t + rng.normal(0, 2.0), rng.normal(0, 2.0), 2.0)
    assert not kf.add_gnss(31.0, math.nan, 0.0, 2.0) and not kf.add_gnss(31.0, 0.0, 0.0, 2.0, status_ok=False)
    e, n, yaw, speed = kf.state_at(30.0)
    assert abs(e - 240.0) < 2.0 and abs(n) < 2.0 and abs(yaw) < 0.05 and abs(speed - 8.0) < 0.5


def test_missing_topics_are_one_line_errors(recording, tmp_path):
    with pytest.raises(InputError, match="/cvgl/pose"):
        evaluate_track(recording["truth_bag"], recording["truth_bag"], tmp_path / "x")
    with pytest.raises(InputError, match="datum"):
        bare = tmp_path / "bare"
        with BagWriter(bare) as bag:
            bag.write(TOPIC_GT_POSE, "geometry_msgs/msg/PoseStamped", 0, pose_stamped_msg(0, 0, 0, 0, 0))
        evaluate_track(recording["estimate_bag"], bare, tmp_path / "y")


def test_cli_writes_the_report_over_the_satellite_map(recording, tmp_path, cvgl_bin):
    # A small tile cache of the drive's area: a checkerboard with a diagonal ramp.
    size, mpp = 700, 1.0
    rr, cc = np.mgrid[0:size, 0:size]
    rgb = np.stack([((rr // 40 + cc // 40) % 2) * 120 + 60, (cc * 255 // size), (rr * 255 // size)], -1).astype(np.uint8)
    tiles = tmp_path / "area.mbtiles"
    store = MBTilesStore.create(tiles, "test area")
    add_enu_raster(store, EnuRaster(rgb, DATUM, 240.0, 150.0, mpp), zoom=17)
    store.close()

    out = tmp_path / "report"
    ok = subprocess.run([cvgl_bin, "evaluate-track", "--estimate", str(recording["estimate_bag"]), "--truth",
                         str(recording["truth_bag"]), "--out", str(out), "--tiles", str(tiles), "--particles", "500"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "raw GNSS" in ok.stdout and (out / "trajectories.png").stat().st_size > 50_000
    bad = subprocess.run([cvgl_bin, "evaluate-track", "--estimate", str(recording["truth_bag"]), "--truth",
                          str(recording["truth_bag"]), "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "/cvgl/pose" in bad.stderr


# -- estimate and truth must belong together ------------------------------------------------

def _tiny_truth(path, datum_text=None, t0_s=0.0):
    """A 10 s truth bag: poses along east, GNSS at the truth; its datum as `datum_text` if given."""
    from cvgl_ros.datasets.bag import DATUM_KEY

    with BagWriter(path) as bag:
        if datum_text is None:
            bag.set_datum(DATUM)
        else:
            bag.set_custom_data(DATUM_KEY, datum_text)
        for i in range(51):
            t = t0_s + 0.2 * i
            stamp = int(round(t * 1e9))
            lat, lon, alt = DATUM.to_wgs84(2.0 * i * 0.2, 0.0, 0.0)
            bag.write(TOPIC_GT_POSE, "geometry_msgs/msg/PoseStamped", stamp, pose_stamped_msg(0.4 * i, 0, 0, 0, stamp))
            bag.write(TOPIC_GNSS_FIX, "sensor_msgs/msg/NavSatFix", stamp,
                      navsatfix_msg(float(lat), float(lon), float(alt), stamp, sigma_m=1.0))
    return path


def _tiny_estimate(path, datum=None, t_shift_s=0.0, custom=None):
    t = np.arange(1.0, 9.0, 0.5)
    with BagWriter(path) as bag:
        if datum is not None:
            bag.set_datum(datum)
        for key, value in (custom or {}).items():
            bag.set_custom_data(key, value)
        for ti in t:
            bag.write("/cvgl/pose", POSE_COV, int(round((ti + t_shift_s) * 1e9)),
                      pose_with_covariance_msg(ti + t_shift_s, 2.0 * ti + 0.5, 0.0, 0.0))
    return path


def test_an_estimate_of_the_same_drive_and_frame_is_scored_and_the_checks_are_reported(tmp_path):
    from cvgl_ros.datasets.bag_identity import SOURCE_FINGERPRINT_KEY, bag_fingerprint

    truth = _tiny_truth(tmp_path / "truth")
    est = _tiny_estimate(tmp_path / "est", datum=DATUM, custom={SOURCE_FINGERPRINT_KEY: bag_fingerprint(truth)})
    metrics = evaluate_track(est, truth, tmp_path / "eval", num_particles=100)
    assert metrics["checks"] == {"datum": "same", "source": "same recording", "poses_within_truth_span": 1.0}
    assert metrics["methods"]["fused"]["mean_m"] == pytest.approx(0.5, abs=1e-6)
    from cvgl_ros.evaluation.track import check_belong_together, load_estimate

    bare = _tiny_estimate(tmp_path / "bare", t_shift_s=5.0)  # no datum, no source; 7 of its 16 poses after the truth
    checks = check_belong_together(bare, truth, DATUM, load_estimate(bare), load_truth(truth))
    assert checks == {"datum": "not recorded in the estimate", "source": "not recorded in the estimate",
                      "poses_within_truth_span": 9 / 16}  # 6.0 to 10.0 s of 6.0 to 13.5 s


@pytest.mark.parametrize("case", ["other datum", "other time", "other recording"])
def test_an_estimate_that_does_not_belong_to_the_truth_is_refused(tmp_path, case):
    from cvgl_ros.datasets.bag_identity import SOURCE_BAG_KEY, SOURCE_FINGERPRINT_KEY

    truth = _tiny_truth(tmp_path / "truth")
    est = {
        "other datum": lambda: _tiny_estimate(tmp_path / "est", datum=Datum(49.0, 8.401, 110.0)),  # 73 m east
        "other time": lambda: _tiny_estimate(tmp_path / "est", datum=DATUM, t_shift_s=3600.0),
        "other recording": lambda: _tiny_estimate(tmp_path / "est", datum=DATUM, custom={
            SOURCE_BAG_KEY: "/data/another_drive", SOURCE_FINGERPRINT_KEY: "0123456789abcdef"}),
    }[case]()
    message = {"other datum": "anchored 73", "other time": "do not overlap",
               "other recording": "replayed from another recording"}[case]
    with pytest.raises(InputError, match=message):
        evaluate_track(est, truth, tmp_path / "eval", num_particles=100)
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("datum_text", ["nan,nan,0", "95,8.4,0", "garbage"])
def test_an_invalid_datum_is_refused(tmp_path, datum_text):
    from cvgl_ros.datasets.bag import DATUM_KEY

    with pytest.raises(InputError, match="datum"):
        evaluate_track(_tiny_estimate(tmp_path / "est"), _tiny_truth(tmp_path / "truth", datum_text=datum_text),
                       tmp_path / "eval", num_particles=100)
    with pytest.raises(InputError, match="datum"):  # the estimate's too
        evaluate_track(_tiny_estimate(tmp_path / "est2", custom={DATUM_KEY: datum_text}),
                       _tiny_truth(tmp_path / "truth2"), tmp_path / "eval", num_particles=100)
    with pytest.raises(InputError, match="seed"):
        evaluate_track(_tiny_estimate(tmp_path / "est3"), _tiny_truth(tmp_path / "truth3"), tmp_path / "eval", seed=-5)


@pytest.mark.parametrize("case", ["other datum", "garbage datum", "seed -5"])
def test_cli_refusals_are_one_line_exit_2(tmp_path, case, cvgl_bin):
    truth = _tiny_truth(tmp_path / "truth", datum_text="garbage" if case == "garbage datum" else None)
    est = _tiny_estimate(tmp_path / "est", datum=Datum(49.0, 8.401, 110.0) if case == "other datum" else None)
    out = subprocess.run([cvgl_bin, "evaluate-track", "--estimate", str(est), "--truth", str(truth), "--out",
                          str(tmp_path / "cli"), *(["--seed", "-5"] if case == "seed -5" else [])],
                         capture_output=True, text=True, timeout=120)
    expected = {"other datum": "anchored 73", "garbage datum": "'garbage' is invalid", "seed -5": "seed -5"}[case]
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr
    assert not (tmp_path / "cli" / "metrics.json").exists()
