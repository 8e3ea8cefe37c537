"""The GNSS gate, its integrity monitor and the motion sensors: every GNSS
decision made to happen, a NO_FIX gap over a 90 degree turn, a wrong estimate against good
GNSS (re-locked by the sequence test), a multipath episode against a confirmed estimate
(kept rejected), IMU and wheel-speed prediction, and the protection level."""
import dataclasses
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.filter.gnss_gate import GnssDecision, fit_track, Epoch
from cvgl_ros.filter.particle_filter import ParticleFilter, ParticleFilterConfig
from support.simulated_run import GnssMessage, camera_frames, motion_samples, run_filter
from cvgl_ros.likelihood import LikelihoodVolume
from cvgl_ros.localization.prior import PriorPolicy
from cvgl_ros.sim.simulated_cross_view import SimulatedCrossView, SimulatedCrossViewConfig
from cvgl_ros.sim.trajectory import simulate_drive

YAWS = -math.pi + np.arange(36) * (2 * math.pi / 36)
# The node's narrow yaw search (+-12 deg): outside it the simulated network confirms the prior.
NARROW = SimulatedCrossViewConfig(num_yaw_bins=9, size_cells=80, cell_m=0.6, yaw_window_deg=4.0,
                                  false_peak_fraction=0.0)


def volume_at(peak_e, peak_n, peak_yaw, center_e, center_n, sigma_m=1.0, size=60, cell_m=0.6):
    cols = (np.arange(size) - (size - 1) / 2) * cell_m
    east, north = center_e + cols, center_n - cols
    d_yaw = (YAWS - peak_yaw + math.pi) % (2 * math.pi) - math.pi
    ll = (-0.5 * (d_yaw / 0.1) ** 2)[:, None, None] \
        + (-0.5 * ((north[:, None] - peak_n) ** 2 + (east[None, :] - peak_e) ** 2) / sigma_m ** 2)[None]
    return LikelihoodVolume(ll.astype(np.float32), center_e, center_n, cell_m, YAWS)


def straight_run(pf, t0, t1, speed=10.0, offset=(0.0, 0.0), course=0.0, sigma=2.0, cross_view=True,
                 gnss=True, est_yaw=None, rng=None):
    """A car at `speed` along `course` (rad); cross-view at 10 Hz confirms the truth, or the
    point the particles believe (`est_yaw`: a cross-view that confirms a wrong heading);
    GNSS at 5 Hz offset by `offset`. Returns the GNSS decisions."""
    rng = rng or np.random.default_rng(1)
    decisions = []
    for k, t in enumerate(np.arange(t0, t1 + 1e-9, 0.1)):
        t = float(round(t, 6))
        e, n = speed * t * math.cos(course), speed * t * math.sin(course)
        if cross_view:
            if est_yaw is None:
                pf.add_cross_view(t, volume_at(e, n, course, e, n))
            else:
                est = pf.estimate(t)
                pf.add_cross_view(t, volume_at(est.east_m, est.north_m, est_yaw, est.east_m, est.north_m))
        if gnss and k % 2 == 0:
            decisions.append((t, pf.add_gnss(t, e + offset[0] + rng.normal(0, 0.5 * sigma),
                                             n + offset[1] + rng.normal(0, 0.5 * sigma), sigma, True)))
    return decisions


def settled_filter(**overrides):
    pf = ParticleFilter(ParticleFilterConfig(num_particles=1000, **overrides), seed=3)
    straight_run(pf, 0.0, 8.0)
    return pf


# -- every decision ----------------------------------------------------------------------

def test_accepted_on_a_consistent_track():
    pf = settled_filter()
    decisions = [d for _, d in straight_run(pf, 8.1, 12.0)]
    assert decisions.count(GnssDecision.ACCEPTED) == len(decisions)


def test_rejected_as_a_jump_and_back():
    pf = settled_filter()
    decisions = dict(straight_run(pf, 8.1, 9.0, offset=(0.0, 80.0)))
    assert set(decisions.values()) == {GnssDecision.REJECTED_OUTLIER}
    after = [d for _, d in straight_run(pf, 9.1, 10.0)]
    assert after[-1] is GnssDecision.ACCEPTED
    assert pf.diagnostics["gnss_rejected"] == len(decisions)


def test_rejected_by_the_gate_while_cross_view_holds():
    """Smooth GNSS 15 m off a cross-view-confirmed estimate: a multipath-like error."""
    pf = settled_filter()
    decisions = []
    for k, t in enumerate(np.arange(8.1, 12.0, 0.1)):
        t = float(round(t, 6))
        e = 10.0 * t
        pf.add_cross_view(t, volume_at(e, 0.0, 0.0, e, 0.0))
        if k % 2 == 0:
            ramp = min(20.0, 2.0 * (t - 8.0) * 5)  # 10 m/s ramp: 2 m per fix, no jump
            decisions.append(pf.add_gnss(t, e, ramp, 2.0, True))
    assert GnssDecision.REJECTED_GATE in decisions
    assert GnssDecision.RELOCKED_INTEGRITY not in decisions  # yaw agrees, cross-view confirms
    assert GnssDecision.RELOCKED not in decisions  # confirmed: held for relock_after_confirmed_s
    assert pf.estimate().north_m < 3.0


def test_reseeded_when_no_particle_weight_remains_without_cross_view():
    pf = ParticleFilter(ParticleFilterConfig(num_particles=1000, use_cross_view=False), seed=3)
    straight_run(pf, 0.0, 8.0, cross_view=False)
    # a smooth 40 m lateral move of GNSS in GNSS-only mode: used, the circle is empty -> re-seed
    decisions = [d for _, d in straight_run(pf, 8.1, 9.0, offset=(0.0, 40.0), cross_view=False)]
    assert GnssDecision.RESEEDED in decisions or GnssDecision.REJECTED_OUTLIER in decisions
    pf2 = ParticleFilter(ParticleFilterConfig(num_particles=1000, use_cross_view=False, outlier_warmup_s=100.0), seed=3)
    straight_run(pf2, 0.0, 8.0, cross_view=False)
    decisions = [d for _, d in straight_run(pf2, 8.1, 9.0, offset=(0.0, 40.0), cross_view=False)]
    assert decisions[0] is GnssDecision.RESEEDED
    assert pf2.diagnostics["reseeds"] >= 1


def test_relocked_after_relock_after_s_when_nothing_else_decides():
    """GNSS offset 30 m along the road (yaw agrees): rejected, then re-locked at relock_after_s."""
    pf = settled_filter(relock_after_s=4.0, relock_after_confirmed_s=4.0)
    decisions = straight_run(pf, 8.1, 16.0, offset=(30.0, 0.0))
    kinds = [d for _, d in decisions]
    assert kinds[0] is GnssDecision.REJECTED_OUTLIER
    relocks = [t for t, d in decisions if d is GnssDecision.RELOCKED]
    assert relocks and 4.0 <= relocks[0] - 8.1 <= 4.5
    assert GnssDecision.RELOCKED_INTEGRITY not in kinds


@pytest.mark.parametrize("wheels", [False, True])
def test_relocked_by_the_integrity_monitor_when_the_yaw_is_wrong(wheels):
    """The estimate runs east while consistent GNSS goes north (a missed turn): re-locked after
    integrity_window_s with wheel odometry, two windows without, long before relock_after_s."""
    cfg = dict(integrity_window_s=2.0, relock_after_s=10.0)
    pf = settled_filter(**cfg)
    # from t=8 the truth turns north at 10 m/s; cross-view keeps confirming the east heading
    decisions = []
    rng = np.random.default_rng(4)
    for k, t in enumerate(np.arange(8.1, 16.0, 0.1)):
        t = float(round(t, 6))
        if wheels:
            pf.add_wheel_speed(t, 10.0, 0.01)
        est = pf.estimate(t)
        # a self-confirming network: it finds what it is told to look for
        pf.add_cross_view(t, volume_at(est.east_m, est.north_m, est.yaw_enu_rad, est.east_m, est.north_m))
        if k % 2 == 0:
            decisions.append((t, pf.add_gnss(t, 80.0 + rng.normal(0, 1), 10.0 * (t - 8.0) + rng.normal(0, 1),
                                             2.0, True)))
    relocks = [t for t, d in decisions if d is GnssDecision.RELOCKED_INTEGRITY]
    assert relocks, [d.value for _, d in decisions]
    # no wheel odometry: the disagreement must hold for two windows (a multipath ramp lasts one)
    assert relocks[0] - 8.1 <= (1 if wheels else 2) * cfg["integrity_window_s"] + 1.0
    assert "course over ground" in pf.diagnostics["last_integrity_alarm"], pf.diagnostics["last_integrity_alarm"]
    est = pf.estimate()
    assert abs(math.degrees(math.remainder(est.yaw_enu_rad - math.pi / 2, 2 * math.pi))) < 25
    # back on the GNSS track (the self-confirming network keeps whatever yaw the re-lock drew)
    assert math.hypot(est.east_m - 80.0, est.north_m - 10.0 * (est.stamp_s - 8.0)) < 12.0


def opposite_heading_volume(est) -> LikelihoodVolume:
    """A network that sees the road only at the estimate's heading + 180 deg: spatially flat
    (no pull on the position), so the particles' own heading scores below the volume's mean."""
    ll = np.zeros((len(YAWS), 60, 60), np.float32)
    ll[int(np.argmin(np.abs(np.remainder(YAWS - est.yaw_enu_rad, 2 * math.pi) - math.pi)))] = 10.0
    return LikelihoodVolume(ll, est.east_m, est.north_m, 0.6, YAWS)


@pytest.mark.parametrize("contradict_evidence", [0.0, -100.0])
def test_relocked_at_once_when_cross_view_contradicts_the_estimate_after_a_gnss_fault(contradict_evidence):
    """The truth turns north at t=8 while the estimate carries on east; GNSS's first fixes after
    the turn jump 25 m (a GNSS fault: the streak is GNSS's suspect, the timed re-lock waits
    relock_after_confirmed_s), then track the truth. Cross-view contradicts the estimate: the
    sequence test re-locks one window after the jump has left it. Without the contradiction
    test (-100) nothing re-locks before relock_after_confirmed_s. The direction test is off."""
    pf = settled_filter(integrity_yaw_tolerance_deg=180.0, relock_after_s=10.0, relock_after_confirmed_s=30.0,
                        integrity_contradict_evidence=contradict_evidence)
    decisions = []
    rng = np.random.default_rng(4)
    for k, t in enumerate(np.arange(8.1, 16.0, 0.1)):
        t = float(round(t, 6))
        pf.add_cross_view(t, opposite_heading_volume(pf.estimate(t)))
        if k % 2 == 0:
            jump = 25.0 if t < 8.6 else 0.0
            decisions.append((t, pf.add_gnss(t, 80.0 + jump + rng.normal(0, 1), 10.0 * (t - 8.0) + rng.normal(0, 1),
                                             2.0, True)))
    assert decisions[0][1] is GnssDecision.REJECTED_OUTLIER
    relocks = [t for t, d in decisions if d is GnssDecision.RELOCKED_INTEGRITY]
    if contradict_evidence < -99:
        assert not relocks and GnssDecision.RELOCKED not in {d for _, d in decisions}
        return
    assert relocks, [d.value for _, d in decisions]
    assert relocks[0] - 8.6 <= pf.config.integrity_window_s + 1.0
    assert "contradicts" in pf.diagnostics["last_integrity_alarm"], pf.diagnostics["last_integrity_alarm"]
    est = pf.estimate()
    assert math.hypot(est.east_m - 80.0, est.north_m - 10.0 * (est.stamp_s - 8.0)) < 12.0


def test_fit_track_gives_the_course_and_speed():
    epochs = [Epoch(t, 3.0 * t, 4.0 * t, 1.0, True) for t in np.arange(0, 3, 0.2)]
    fit = fit_track(epochs)
    assert abs(fit.speed_mps - 5.0) < 1e-6 and abs(fit.course_rad - math.atan2(4, 3)) < 1e-6 and fit.rms_m < 1e-6
    assert fit_track(epochs[:2]) is None


# -- a NO_FIX gap over a 90 degree turn ----------------------------------------------------

@pytest.fixture(scope="module")
def turn_after_gap():
    """East 250 m, a 90 degree left turn, north 250 m, at up to 10 m/s; GNSS (clean, 5 Hz)
    is NO_FIX from 3 s before the turn to 3 s after it; the cross-view node searches only
    +-12 deg around the filter's yaw."""
    trajectory = simulate_drive(np.array([(0.0, 0.0), (250.0, 0.0), (250.0, 250.0)]), (), seed=1,
                                duration_s=45.0, rate_hz=50.0)
    corner = int(np.argmin(np.hypot(trajectory.east_m - 250.0, trajectory.north_m)))
    t_turn = float(trajectory.t_s[corner])
    rng = np.random.default_rng(2)
    events = []
    for t in np.arange(0.0, float(trajectory.t_s[-1]), 0.2):
        truth = trajectory.sample([t])
        gap = t_turn - 3.0 <= t < t_turn + 3.0
        events.append(GnssMessage(float(t), float(t), float(truth.east_m[0]) + rng.normal(0, 1.5),
                                  float(truth.north_m[0]) + rng.normal(0, 1.5), 2.0, True) if not gap else
                      GnssMessage(float(t), float(t), math.nan, math.nan, math.nan, False))
    events += camera_frames(0.0, float(trajectory.t_s[-1]), 10.0, 0.1)
    return trajectory, events, t_turn


def run_turn(turn_after_gap, with_motion: bool, widen: bool = True, **cfg):
    trajectory, events, t_turn = turn_after_gap
    if with_motion:
        events = events + motion_samples(trajectory, seed=5)
    pf = ParticleFilter(ParticleFilterConfig(num_particles=1000, **cfg), seed=0)
    run = run_filter(pf, trajectory, events, SimulatedCrossView(NARROW, seed=1),
                     output_times_s=np.arange(1.0, float(trajectory.t_s[-1]), 0.1),
                     prior_policy=PriorPolicy(widen_yaw_search=widen))
    return run, t_turn


def test_imu_and_wheel_speed_carry_the_filter_through_the_turn(turn_after_gap):
    run, t_turn = run_turn(turn_after_gap, with_motion=True)
    after = run.window(t_turn - 3.0, t_turn + 15.0)
    assert after.max() < 5.0, f"max error {after.max():.1f} m through the gap and the turn"
    assert run.diagnostics["predictions_with_imu"] > 100


def test_without_motion_sensors_the_widened_yaw_search_follows_the_turn(turn_after_gap):
    run, t_turn = run_turn(turn_after_gap, with_motion=False)
    through = run.window(t_turn - 3.0, t_turn + 20.0)
    assert through.max() < 5.0, f"max error {through.max():.1f} m through the gap and the turn"


def test_the_integrity_monitor_alone_recovers_from_a_missed_turn(turn_after_gap):
    """One narrow yaw window (no widening): the filter carries on straight through the gap;
    the sequence test re-locks it within two windows of good fixes (no wheel odometry)."""
    run, t_turn = run_turn(turn_after_gap, with_motion=False, widen=False)
    gap_end = t_turn + 3.0
    assert run.diagnostics["integrity_relocks"] >= 1
    assert run.window(gap_end - 1.0, gap_end + 1.0).max() > 10.0  # it did miss the turn
    later = run.window(gap_end + 6.0, gap_end + 20.0)
    assert later.max() < 5.0, f"still {later.max():.1f} m off 6 s after the gap"
    keep = (run.t_s >= gap_end + 6.0) & (run.t_s < gap_end + 20.0)
    assert np.percentile(run.yaw_error_deg[keep], 95) < 15.0


def test_without_widening_or_integrity_monitor_the_turn_is_lost(turn_after_gap):
    """Both switched off, the filter stays off for relock_after_s: the two tests above would
    fail without what they test."""
    run, t_turn = run_turn(turn_after_gap, with_motion=False, widen=False, integrity_yaw_tolerance_deg=180.0,
                           integrity_min_evidence=-100.0, integrity_contradict_evidence=-100.0)
    assert run.window(t_turn + 3.0 + 6.0, t_turn + 3.0 + 8.0).max() > 10.0


# -- motion sensors ----------------------------------------------------------------------

def test_prediction_integrates_yaw_rate_and_wheel_speed():
    pf = ParticleFilter(ParticleFilterConfig(num_particles=500, position_noise_mps=0.0), seed=1)
    pf.add_gnss(0.0, 0.0, 0.0, 1.0, True)
    omega, speed = 0.2, 8.0
    for k in range(0, 201):
        t = k * 0.01
        pf.add_yaw_rate(t, omega, 1e-6)
        if k % 2 == 0:
            pf.add_wheel_speed(t, speed, 1e-4)
    pf.predict(1.0, start_s=0.0)  # the first second takes the speeds to the wheels'
    p0 = pf.particles.copy()
    pf.predict(1.0, start_s=1.0)
    p1 = pf.particles
    turned = np.degrees(np.remainder(p1[:, 3] - p0[:, 3] + math.pi, 2 * math.pi) - math.pi)
    assert abs(np.median(turned) - math.degrees(omega * 1.0)) < 1.0
    assert abs(np.median(p1[:, 2]) - speed) < 0.3
    assert abs(np.median(np.hypot(*(p1[:, :2] - p0[:, :2]).T)) - speed * 1.0) < 0.4
    assert pf.diagnostics["predictions_with_imu"] == 2


def test_the_newest_samples_hold_over_a_tail_that_has_not_arrived_yet():
    """A measurement processed before the last IMU / wheel samples preceding it arrive (another
    topic, the executor's order): the newest rate and speed hold for motion_hold_s past their
    stamp, the prediction integrates them (no fall-back to the random walk); beyond that,
    or with the hold set to the gap timeout, it falls back."""
    def run(predict_to_s, **overrides):
        cfg = ParticleFilterConfig(num_particles=500, position_noise_mps=0.0, **overrides)
        pf = ParticleFilter(cfg, seed=1)
        pf.add_gnss(0.0, 0.0, 0.0, 1.0, True)
        for k in range(0, 101):  # samples up to 1.0 s
            pf.add_yaw_rate(k * 0.01, 0.2, 1e-6)
            pf.add_wheel_speed(k * 0.01, 8.0, 1e-4)
        pf.predict(1.0, start_s=0.0)
        yaw0 = pf.particles[:, 3].copy()
        pf.predict(predict_to_s - 1.0, start_s=1.0)  # the tail past the newest sample
        turned = np.degrees(np.remainder(pf.particles[:, 3] - yaw0 + math.pi, 2 * math.pi) - math.pi)
        return pf.diagnostics, turned

    diag, turned = run(1.4)
    assert diag["predictions_motion_gap"] == 0 and diag["predictions_with_imu"] == 2
    assert abs(np.median(turned) - math.degrees(0.2 * 0.4)) < 0.5 and np.std(turned) < 1.0
    diag, turned = run(1.4, motion_hold_s=0.2)
    assert diag["predictions_motion_gap"] == 1 and np.std(turned) > 5.0  # the random walk's spread
    diag, _ = run(1.8)
    assert diag["predictions_motion_gap"] == 1
    with pytest.raises(InputError, match="motion_hold_s"):
        ParticleFilterConfig(motion_hold_s=0.1, motion_timeout_s=0.2)


def test_motion_gaps_fall_back_and_bad_samples_are_counted():
    pf = ParticleFilter(ParticleFilterConfig(num_particles=200), seed=1)
    pf.add_gnss(0.0, 0.0, 0.0, 1.0, True)
    for t in (0.0, 0.01, 0.02):
        pf.add_yaw_rate(t, 0.1, 1e-6)
    pf.predict(1.0)  # samples stop after 0.02 s: a gap
    assert pf.diagnostics["predictions_motion_gap"] == 1 and pf.diagnostics["predictions_with_imu"] == 0
    assert not pf.add_yaw_rate(0.5, math.nan)
    assert not pf.add_wheel_speed(0.5, -500.0)
    assert not pf.add_yaw_rate(0.01, 0.1)  # repeated stamp
    assert pf.diagnostics["imu_invalid"] == 2 and pf.diagnostics["wheel_invalid"] == 1
    pf.add_gnss(1.0, 1.0, 0.0, 1.0, True)
    assert pf.add_yaw_rate(0.5, 0.1, 1e-6)  # older than the filter time: kept, counted late
    assert pf.diagnostics["imu_late"] == 1


# -- honest uncertainty ------------------------------------------------------------------

def test_protection_level_bounds_the_error_through_the_turn(turn_after_gap):
    run, _ = run_turn(turn_after_gap, with_motion=True)
    keep = run.initialized
    covered = np.mean(run.error_m[keep] <= run.protection_level_m[keep])
    assert covered >= 0.99, f"protection level held on {100 * covered:.1f} % of poses"
    assert np.all(np.isfinite(run.protection_level_m[keep]))


# -- an estimate that rests on GNSS alone -------------------------------------------------

def start_on(offset, seconds, sigma=2.0):
    """A filter that starts on GNSS offset by `offset` from the truth; cross-view (10 Hz,
    a volume cut around the estimate as the node cuts its patch) peaks at the truth."""
    pf = ParticleFilter(ParticleFilterConfig(num_particles=1000), seed=3)
    covered, sigmas = [], []
    for k, t in enumerate(np.arange(0.0, seconds, 0.1)):
        t = float(round(t, 6))
        e, n = 10.0 * t, 0.0
        if k % 2 == 0:
            pf.add_gnss(t, e + offset[0], n + offset[1], sigma, True)
        if pf.initialized:
            est = pf.estimate(t)
            pf.add_cross_view(t, volume_at(e, n, 0.0, est.east_m, est.north_m))
            est = pf.estimate(t)
            sigmas.append(math.sqrt(max(np.linalg.eigvalsh(est.covariance_3x3[:2, :2]))))
            covered.append(math.hypot(est.east_m - e, est.north_m - n) <= est.protection_level_m)
    return pf, np.array(sigmas), np.array(covered)


def test_a_start_on_a_multipath_fix_is_not_claimed_to_be_precise():
    """The first fixes are 40 m off (a multipath episode reporting 2 m): the camera sees no
    match around them, so the estimate stays unverified, its sigma >= unverified_sigma_m and
    its protection level bounds the 40 m; a start on good fixes is confirmed at once."""
    pf, sigmas, covered = start_on((0.0, 40.0), 3.0)
    assert not pf.estimate().verified and pf.diagnostics["estimate_verified"] is False
    assert sigmas.min() >= ParticleFilterConfig().unverified_sigma_m and covered.all()
    good, sigmas, covered = start_on((0.0, 0.0), 3.0)
    assert good.estimate().verified and sigmas[-1] < 2.0 and covered.all()
    off = ParticleFilter(ParticleFilterConfig(num_particles=1000, unverified_sigma_m=0.0), seed=3)
    off.add_gnss(0.0, 0.0, 40.0, 2.0, True)
    assert math.sqrt(off.estimate().covariance_3x3[0, 0]) < 5.0  # 0: the receiver's word alone


def test_a_reseed_makes_the_estimate_unverified_again():
    pf = settled_filter(relock_after_s=4.0, relock_after_confirmed_s=4.0)
    assert pf.estimate().verified
    decisions = straight_run(pf, 8.1, 12.3, offset=(30.0, 0.0), cross_view=False)
    assert GnssDecision.RELOCKED in [d for _, d in decisions]
    est = pf.estimate()
    assert not est.verified and est.covariance_3x3[0, 0] >= ParticleFilterConfig().unverified_sigma_m ** 2


# -- sensor mounting ---------------------------------------------------------------------

def test_a_camera_ahead_and_an_antenna_behind_base_link_give_base_links_pose():
    """Camera 1.5 m ahead of base_link, antenna 1 m behind: with the mounting in the config the
    pose is base_link's within the error of an origin-mounted rig; ignoring it is biased."""
    from support.simulated_run import city_block_route, gnss_messages, mounted
    from cvgl_ros.sim.gnss import GnssModel

    route, stops = city_block_route()
    trajectory = simulate_drive(route, stops, seed=4, duration_s=30.0, rate_hz=50.0)
    cv_config = SimulatedCrossViewConfig(num_yaw_bins=36, size_cells=80, cell_m=0.6, sigma_xy_m=0.5)

    def mean_error(camera, antenna, config_mounting):
        gnss = GnssModel.from_name("open_sky", seed=4).simulate(mounted(trajectory, *antenna), 5.0)
        events = gnss_messages(gnss) + camera_frames(0.0, 30.0, 5.0, 0.1) + motion_samples(trajectory, seed=4)
        mount = dict(camera_x_m=camera[0], antenna_x_m=antenna[0]) if config_mounting else {}
        pf = ParticleFilter(ParticleFilterConfig(num_particles=500, **mount), seed=1)
        run = run_filter(pf, trajectory, events, SimulatedCrossView(cv_config, seed=2), camera_offset_m=camera)
        return float(run.window(8.0, 30.0).mean())

    origin = mean_error((0.0, 0.0), (0.0, 0.0), True)
    mounted_right = mean_error((1.5, 0.0), (-1.0, 0.0), True)
    ignored = mean_error((1.5, 0.0), (-1.0, 0.0), False)
    assert mounted_right < origin + 0.15, (origin, mounted_right)
    assert ignored > mounted_right + 0.7, (ignored, mounted_right)
