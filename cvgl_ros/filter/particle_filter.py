"""Particle filter fusing cross-view likelihoods with GNSS (and, when the vehicle has them,
IMU yaw rate and wheel speed), after Sec. III-D of "Cross-View Matching for Vehicle
Localization by Learning Geographically Local Representations" (seed 001).

This file is the Bayes filter, in run order: state, initialize, predict, update, resample,
estimate. Its five helpers each have their own module and docstring:
  * `cvgl_ros.filter.motion`: the motion models (seed 001's constant velocity with steering
    noise; measured yaw rate and wheel speed when they are there);
  * `cvgl_ros.filter.gnss_gate`: which fixes are fused, rejected, or make the filter
    re-seed, including the integrity monitor that decides when the estimate is wrong;
  * `cvgl_ros.filter.history`: measurements applied at their own stamps when they arrive
    late;
  * `cvgl_ros.filter.measurements`: the retrieval grid's factor (Eq. 5 with its circle and
    bilinear interpolation);
  * `cvgl_ros.filter.relocalization`: the relocalizer, which finds a lost car from the
    retrieval scores of a wide circle.

State and set-up (the paper's)
------------------------------
Each particle m holds x^[m] = (E, N, v, psi): easting and northing in the `map` frame (ENU
metres), forward speed v (m/s) and yaw psi (ENU, counter-clockwise from east, rad), plus a
gyro bias b used only with an IMU. The set chi_t has M = 2000 particles by default.

Initialization: at the first valid GNSS fix z = (E_z, N_z) with reported 1-sigma sigma_gps,
    (E, N) ~ N(z, sigma_gps^2 I),   psi ~ U[-pi, pi),   v ~ U[0, 5] m/s,   b ~ N(0, sigma_b0^2).

Measurement model (Eq. 5). With pi(m) = (E, N) of particle m, the cross-view score
interpolated at the particle, normalized over the candidate area S_local, times the GNSS
Gaussian:
    w^[m] = exp(-d_{m,q}) / sum_{j in S_local} exp(-d_{j,q})
            * exp(-|pi(m) - pi(G_q,t)|^2 / (2 sigma_gps^2)),
and particles outside the circle |pi(m) - pi(G_q,t)| <= 3 sigma_gps are discarded (w = 0).
Here the cross-view term is the network's likelihood volume over (yaw, y, x) (see
`cvgl_ros.likelihood`): log-likelihood interpolated bilinearly in (x, y) and linearly in yaw
at the particle, normalized over the whole volume (the patch cut around the position prior
plays the role of S_local). Which fixes are fused at all is the gate's decision.

The coarse stage (`add_retrieval`): matching scores e^{-d_j} of the cells j of a satellite
descriptor grid (`cvgl_ros.retrieval`), Eq. 5 as written (`cvgl_ros.filter.measurements`):
the score bilinearly interpolated at the camera's position, normalized over the cells of
the circle of radius gate_sigmas * sigma_gps around pi(G_q,t), particles outside the circle
discarded (w = 0, replaced by the resampling). pi(G_q,t) is the newest fix (its antenna
position) when the gate used it and it is at most retrieval_gnss_max_age_s older than the
frame; after a rejected fix, or with none that recent, the estimate's weighted mean
(the paper's fallback to the estimate at t-1), with the newest fix's sigma. The GNSS term of
Eq. 5 is left out here: `update_gnss` multiplies it in at the fix's own stamp, as for the
dense factor. A frame the model cannot weigh (no cell or no particle in the circle) leaves
the weights alone, counted, with `last_retrieval_reason` saying why. It runs beside the
dense factor, never instead of it; when to feed it is `cvgl_ros.localization.coarse_stage`'s.

Output: the median of every state element over the particles (weighted median while the
weights are unequal; the yaw median is taken around the circular mean), with the published
covariance S C S + diag(sigma_0^2, sigma_0^2, sigma_psi0^2), C the particles' weighted
covariance of (E, N, psi) and S = diag(sqrt c_P, sqrt c_P, sqrt c_psi): position variances
times c_P, the yaw's times c_psi (`covariance_yaw_scale`, 1.5), the cross terms by the
geometric mean (S C S stays positive semi-definite). The yaw has a scale of its own because
the cross-view node widens its yaw search by the published yaw sigma: calibrating the
position's NEES does not move the particles.
c_P > 1 because the particles understate the error: the filter fuses 5-10 camera frames a
second as independent measurements, but their errors are correlated (the same scene, the
same aliasing), as the 2-D NEES on the fleet benchmark shows; calibrate c_P and sigma_0 there,
like the network's temperature. The floor: right after a resampling that kept copies of a
few particles, their spread understates what the set can resolve (the next prediction's
diffusion separates them again). Calibration (4 December 2026, a fleet run re-scored offline:
c_P and sigma_0 enter only the published covariance and the protection level, not the
particles): with the motion model holding the newest IMU sample (`motion_hold_s`), c_P = 1.7
and sigma_0 = 0.05 m gave drive NEES 1.22-3.33; c_P = 1.5, sigma_0 = 0.15 m gives 1.24-2.78,
the widest margin to both ends of [1, 3] on the grid searched (c_P 1.4-2.2, sigma_0
0.03-0.25 m). A floor is needed: without one a few collapsed sets give NEES in the
thousands (rural25-open_sky-28). While the particles
rest on GNSS alone (after the initialization or a re-seed, until the mean cross-view
evidence over the evidence window first reaches integrity_min_evidence) the position floor
becomes sqrt(sigma_0^2 + sigma_u^2), sigma_u = `unverified_sigma_m`: a city receiver can be
tens of metres off while it reports a few (a fix in a multipath episode; the fleet's
`multipath` profile: 20-60 m), and a start on such a fix is indistinguishable from a good one
until the camera confirms it (`PoseEstimate.verified`; `estimate_verified` in the
diagnostics). Then a horizontal protection level (below).

Beyond the paper (each a documented choice)
-------------------------------------------
* Sensor mounting: the particles are base_link poses (REP-105). A sensor mounted at (x, y)
  in base_link is at pi_s(m) = pi(m) + R(psi_m) (x, y): the cross-view volume (the camera's
  pose) is read at the camera's position, and GNSS fixes (the antenna's) are compared with
  the antenna's; an initialization or re-seed around a fix puts base_link at the fix minus
  R(psi) times the lever arm, for each particle's yaw.
* Asynchronous sensors: GNSS (~5 Hz) and cross-view results (~10 Hz) update the particles
  separately at their own stamps (the two factors of Eq. 5 multiply over time). The
  cross-view factor is a mixture with a uniform component of weight
  `cross_view_outlier_prob` (alpha), f_cv = (1 - alpha) p_cell(m) K H W + alpha, so one
  false peak cannot wipe out the particles at the true pose. Particles outside the volume
  get the volume's floor (its smallest value), i.e. about alpha.
* Cross-view evidence: log sum_m w_m f_cv(m), the factor's mean over the prior particles;
  0 for a flat volume, large when the volume confirms the particles. Its mean over the last
  `evidence_window_s` tells the gate whether cross-view still confirms the estimate.
* Systematic resampling when ESS = 1 / sum w^2 < M / 2 (not after every step).
* Re-seeding (gate decisions RESEEDED, RELOCKED): positions around the fix; half the
  particles keep the speed and yaw of the old ones, the other half are drawn as at
  initialization. After an integrity re-lock (RELOCKED_INTEGRITY) yaw and speed are drawn
  around the GNSS course over ground and speed instead, yaw with `relock_yaw_sigma_deg`.
* NaN/Inf positions, NO_FIX and repeated stamps are ignored with a counter; a GNSS stamp
  more than `backwards_reset_s` behind the filter means time went backwards: the filter
  resets (`resets`) and re-initializes at that fix.
* Relocalization (`_relocalize`, with retrieval frames only): while cross-view frames fused
  since the particles' (re)seed have not confirmed them, each retrieval frame feeds
  `Relocalizer`, which accumulates the scores over a circle of `relocalize_radius_m` around
  the estimate (GNSS may be 50-200 m off while it reports a few metres); the published
  position 1-sigma is at least a third of that radius meanwhile (which widens the cross-view
  node's coarse circle to it). Once the estimate has stayed unconfirmed for
  `relocalize_after_s` it is lost, and when the posterior singles out a place
  (`relocalize_mass` within `relocalize_peak_m`) more than `relocalize_min_shift_m` away, the
  particles are re-seeded there (`_reseed_at`: yaw and speed kept, the gate's reference
  moved, no warm-up) and the dense network takes over. The fixes that lost the filter are
  then far from the estimate, and the gate treats them as a GNSS fault: its integrity test
  re-locks onto them only when cross-view contradicts the new estimate (not when it is merely
  weak), and its timed re-lock waits `relocalized_relock_after_s` (120 s, not 30 s) while
  cross-view confirms it.
* A confirmation is withdrawn (`confirmations_withdrawn`) when cross-view contradicts a
  confirmed estimate for `withdraw_confirmation_after_s`: the mean evidence over the evidence
  window stays below `withdraw_confirmation_evidence` (-1 nat: the volume puts the car
  elsewhere; a flat one gives 0) at every frame of that stretch. The dense network can
  confirm a wrong place that looks like the right one (an aliased street 150 m off, 8 s into
  a biased drive); without this the estimate stayed "verified" while
  cross-view contradicted it for 35 s, and nothing searched again. The estimate is then
  unconfirmed as after a seed: the position floor widens by sigma_u, the coarse stage runs,
  and the relocalizer searches from there (`relocalize_after_s` later it may re-seed).
* GNSS-only mode (`use_cross_view=False`): the paper's "GPS" baseline.

Protection level
----------------
With P the weighted 2x2 covariance of (E, N) about the weighted mean mu, the published
median p, the weighted distances d_m = |pi(m) - p| and g the unresolved GNSS disagreement
(the distance of the latest rejected fix from the estimate, for integrity_window_s; after a
timed re-lock, the gap it closed, for relock_memory_s: either side may be the wrong one),
    HPL = max( |p - mu| + k_PL sqrt(lambda_max(P)),  the (1 - 1/M_eff)-quantile of d_m,  g ) * c_PL
with k_PL = `protection_level_sigmas` (3.72: the 2-D Gaussian radius holding 1 - 1e-3)
and c_PL = `protection_level_scale`. It is an overbound of the horizontal error for the
stated risk as long as the particles represent the error: the fleet benchmark measures
how often it holds (the requirement: at least 99 % of poses).

Usage::

    pf = ParticleFilter(ParticleFilterConfig(), seed=0)
    pf.add_gnss(stamp_s, east_m, north_m, sigma_m, status_ok=True)   # -> GnssDecision
    pf.add_yaw_rate(stamp_s, yaw_rate_radps, variance)               # optional IMU
    pf.add_wheel_speed(stamp_s, speed_mps, variance)                 # optional wheel odometry
    pf.add_cross_view(stamp_s, volume)                               # a LikelihoodVolume
    pf.add_retrieval(stamp_s, grid_scores)                           # optional: GridScores
    est = pf.estimate()                                              # PoseEstimate
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from cvgl_ros.config import Settings, setting
from cvgl_ros.errors import InputError
from cvgl_ros.filter import motion
from cvgl_ros.filter.gnss_gate import EstimateView, GateState, GnssDecision, GnssFix, GnssGate, Verdict
from cvgl_ros.filter.history import Entry, MeasurementHistory
from cvgl_ros.filter.measurements import GridFactor, GridScores, grid_log_factor
from cvgl_ros.filter.motion import BIAS, E, N, NUM_STATES, V, YAW, MotionInputs, MotionNoise
from cvgl_ros.filter.relocalization import Relocalizer
from cvgl_ros.filter.resampling import effective_sample_size, systematic_resample
from cvgl_ros.geo.yaw import wrap_angle
from cvgl_ros.likelihood import LikelihoodVolume

UNINITIALIZED_VARIANCE = 1.0e12  # covariance diagonal of an estimate before initialization

__all__ = ["ParticleFilter", "ParticleFilterConfig", "PoseEstimate", "GnssDecision", "GnssFix"]


class ParticleFilterConfig(Settings):
    """Parameters, each with its unit and range; the defaults follow the paper where it gives a
    value. The particle-filter node declares each as the ROS parameter `filter.<name>`."""

    what: ClassVar[str] = "particle filter setting"

    num_particles: int = setting(2000, "particles M (seed 001: 2000)", ge=10, le=1_000_000)
    camera_x_m: float = setting(0.0, "the camera's position in base_link, forward (REP-103 x), m: the likelihood "
                                "is the camera's", ge=-50.0, le=50.0)
    camera_y_m: float = setting(0.0, "the camera's position in base_link, left (y), m", ge=-50.0, le=50.0)
    antenna_x_m: float = setting(0.0, "the GNSS antenna's lever arm in base_link, forward (x), m", ge=-50.0, le=50.0)
    antenna_y_m: float = setting(0.0, "the GNSS antenna's lever arm in base_link, left (y), m", ge=-50.0, le=50.0)
    init_speed_max_mps: float = setting(5.0, "initial speeds ~ U[0, this] m/s", ge=0.0, le=100.0)
    accel_noise_mps2: float = setting(2.0, "sigma_a: acceleration noise density, m/s^2 per sqrt(s)", ge=0.0, le=50.0)
    yaw_rate_noise_radps: float = setting(0.5, "sigma_omega: yaw-rate noise density, rad/s per sqrt(s)",
                                          ge=0.0, le=10.0)
    position_noise_mps: float = setting(0.3, "sigma_p: position diffusion, m per sqrt(s)", ge=0.0, le=10.0)
    max_speed_mps: float = setting(70.0, "speeds are clipped to this, m/s", ge=0.0, le=200.0)
    gyro_noise_radps: float = setting(0.02, "with an IMU: sigma_g, the yaw-rate noise density floor, rad/s per "
                                      "sqrt(s)", ge=0.0, le=10.0)
    gyro_bias_init_radps: float = setting(0.01, "with an IMU: sigma_b0, 1-sigma of the initial gyro bias, rad/s",
                                          ge=0.0, le=1.0)
    gyro_bias_walk_radps: float = setting(0.002, "with an IMU: sigma_bw, gyro bias random walk, rad/s per sqrt(s)",
                                          ge=0.0, le=1.0)
    speed_scale_sigma: float = setting(0.02, "with wheel odometry: sigma_s, 1-sigma speed scale error (fraction)",
                                       ge=0.0, le=1.0)
    speed_noise_mps: float = setting(0.1, "with wheel odometry: sigma_v, the speed noise floor, m/s", ge=0.0, le=10.0)
    motion_timeout_s: float = setting(0.2, "IMU / odometry samples farther apart than this are a gap "
                                      "(constant-velocity model meanwhile), s", ge=0.001, le=10.0)
    motion_hold_s: float = setting(0.5, "the newest IMU / odometry sample holds this long past its stamp for a "
                                   "measurement processed before the samples that precede it arrive "
                                   "(>= motion_timeout_s), s", ge=0.001, le=10.0)
    use_cross_view: bool = setting(True, "fuse cross-view likelihoods (false: the paper's GNSS-only baseline)")
    cross_view_outlier_prob: float = setting(0.05, "alpha: weight of the uniform component of the cross-view factor",
                                             ge=1e-6, le=0.999)
    # > the 2 s between full-circle searches while the yaw is unknown
    cross_view_timeout_s: float = setting(5.0, "a cross-view update this recent holds the estimate against GNSS, s",
                                          ge=0.0, le=60.0)
    evidence_window_s: float = setting(2.0, "cross-view evidence for the estimate is averaged over this, s",
                                       ge=0.0, le=60.0)
    gate_sigmas: float = setting(3.0, "particles beyond this many GNSS sigmas are discarded (seed 001: 3)",
                                 ge=0.1, le=100.0)
    gate_min_weight: float = setting(1e-3, "less particle weight than this in the circle counts as none",
                                     ge=0.0, le=1.0)
    gate_suspicious_weight: float = setting(0.5, "while cross-view holds the estimate, a fix with less particle "
                                            "weight than this inside its 3-sigma circle is suspicious (not fused)",
                                            ge=0.0, le=1.0)
    gate_suspicious_min_m: float = setting(8.0, "a fix closer than this to the estimate is never suspicious, m",
                                           ge=0.0, le=1000.0)
    outlier_sigmas: float = setting(3.0, "r_outlier = this * sigma_gps + v dt (seed 001: 3)", ge=0.1, le=100.0)
    jump_test_max_gap_s: float = setting(1.0, "no jump test against the previous raw fix across a longer gap "
                                         "between valid fixes, s", ge=0.0, le=60.0)
    outlier_warmup_s: float = setting(3.0, "no outlier test this long after (re)initialization, s", ge=0.0, le=600.0)
    relock_after_s: float = setting(10.0, "re-seed around GNSS after rejecting fixes this long, s", ge=0.0, le=3600.0)
    relock_after_confirmed_s: float = setting(30.0, "... this long while cross-view confirms the estimate and its "
                                              "yaw, s", ge=0.0, le=3600.0)
    relock_memory_s: float = setting(30.0, "after a timed re-lock the protection level holds the gap it closed "
                                     "this long, s", ge=0.0, le=3600.0)
    integrity_window_s: float = setting(2.0, "integrity monitor: consistent fixes disagreeing with the estimate "
                                        "this long re-lock it at once (T of the sequence test), s", ge=0.1, le=600.0)
    integrity_min_fixes: int = setting(5, "integrity monitor: fixes needed in the window", ge=3, le=10_000)
    integrity_consistency_sigmas: float = setting(3.0, "integrity monitor: fit residual below this * sigma_gps "
                                                  "counts as consistent", ge=0.1, le=100.0)
    integrity_min_speed_mps: float = setting(2.0, "integrity monitor: yaw is tested against the course over ground "
                                             "above this speed, m/s", ge=0.0, le=100.0)
    integrity_yaw_tolerance_deg: float = setting(45.0, "integrity monitor: yaw farther than this from the course "
                                                 "over ground means the estimate is wrong, deg", ge=1.0, le=180.0)
    retrieval_gnss_max_age_s: float = setting(1.0, "coarse stage: the retrieval circle is centred on the newest "
                                              "fix the gate used when it is at most this older than the frame, "
                                              "else on the estimate, s", ge=0.0, le=60.0)
    relocalize_after_s: float = setting(1.5, "relocalizer: an estimate cross-view has not confirmed this long after "
                                        "its (re)seed, with cross-view frames fused meanwhile, is lost: a place "
                                        "the accumulated retrieval scores single out may re-seed it (needs the "
                                        "coarse stage's frames), s", ge=0.0, le=600.0)
    relocalize_radius_m: float = setting(200.0, "relocalizer: radius of the search around the lost estimate (GNSS "
                                         "50-200 m off); the published 1-sigma is at least a third of it meanwhile, m",
                                         gt=0.0, le=5000.0)
    relocalize_min_frames: int = setting(5, "relocalizer: frames accumulated before a decision", ge=1, le=10_000)
    relocalize_mass: float = setting(0.8, "relocalizer: posterior mass near the best hypothesis that makes it a fix",
                                     gt=0.0, le=1.0)
    relocalize_peak_m: float = setting(10.0, "relocalizer: radius of that mass, m", gt=0.0, le=1000.0)
    relocalize_temperature: float = setting(0.5, "relocalizer: the grid scores e^{-d} enter the accumulation as "
                                            "e^{-d / T} (1: Eq. 5's term as it stands; smaller: sharper "
                                            "evidence per frame; docs/retrieval.md)", gt=0.0, le=100.0)
    relocalize_min_shift_m: float = setting(15.0, "relocalizer: a fix nearer the estimate than this keeps the "
                                            "particles (the estimate was right), m", ge=0.0, le=5000.0)
    relocalized_relock_after_s: float = setting(120.0, "relocalizer: after it re-seeded the particles against the "
                                                "fixes, the timed re-lock onto them waits this long while "
                                                "cross-view confirms the estimate, s", ge=0.0, le=3600.0)
    relocalize_seed_sigma_m: float = setting(3.0, "relocalizer: 1-sigma of the particles re-seeded around a fix, m",
                                             gt=0.0, le=1000.0)
    integrity_min_evidence: float = setting(0.5, "integrity monitor: mean cross-view log-evidence below this means "
                                            "cross-view no longer confirms the estimate", ge=-100.0, le=100.0)
    integrity_contradict_evidence: float = setting(0.0, "integrity monitor: mean cross-view log-evidence below "
                                                   "this means cross-view contradicts the estimate, even after a "
                                                   "GNSS fault (<= integrity_min_evidence)", ge=-100.0, le=100.0)
    withdraw_confirmation_after_s: float = setting(5.0, "cross-view contradicting a confirmed estimate this long "
                                                   "(withdraw_confirmation_evidence) withdraws the confirmation: the "
                                                   "estimate is unconfirmed again and the relocalizer may search, s",
                                                   gt=0.0, le=3600.0)
    withdraw_confirmation_evidence: float = setting(-1.0, "mean cross-view log-evidence below this contradicts a "
                                                    "confirmed estimate (a flat volume gives 0: it only fails to "
                                                    "confirm)", ge=-100.0, le=0.0)
    relock_yaw_sigma_deg: float = setting(15.0, "yaw spread around the course over ground after an integrity "
                                          "re-lock, deg", ge=0.0, le=180.0)
    default_gnss_sigma_m: float = setting(5.0, "1-sigma of fixes that report no (finite, positive) covariance, m",
                                          ge=0.01, le=1000.0)
    min_gnss_sigma_m: float = setting(0.5, "reported GNSS sigmas are floored to this, m", gt=0.0, le=100.0)
    resample_ess_fraction: float = setting(0.5, "resample when ESS < this * M", gt=0.0, le=1.0)
    # a full-circle search takes ~1 s of CPU: its result comes late
    history_s: float = setting(1.0, "late measurements within this are applied at their stamp, s", ge=0.0, le=10.0)
    backwards_reset_s: float = setting(1.5, "a GNSS stamp this far in the past resets the filter (>= history_s), s",
                                       ge=0.0, le=3600.0)
    covariance_scale: float = setting(1.5, "c_P: the published covariance is this times the particles' spread "
                                      "(calibrated by the fleet benchmark's NEES)", ge=0.1, le=100.0)
    covariance_yaw_scale: float = setting(1.5, "c_psi: the published yaw variance is this times the particles' "
                                          "yaw spread (it sets the cross-view node's yaw search)", ge=0.1, le=100.0)
    covariance_floor_m: float = setting(0.15, "sigma_0: the published position 1-sigma is at least this, m",
                                        ge=0.0, le=100.0)
    covariance_floor_yaw_deg: float = setting(0.5, "the published yaw 1-sigma is at least this, deg", ge=0.0, le=180.0)
    unverified_sigma_m: float = setting(25.0, "sigma_u: added (in quadrature) to the position 1-sigma while the "
                                        "estimate rests on GNSS alone: after a (re)seed, until cross-view first "
                                        "confirms it; 0: off, m", ge=0.0, le=1000.0)
    protection_level_sigmas: float = setting(3.72, "k_PL: Gaussian multiplier of the protection level",
                                             ge=0.1, le=100.0)
    protection_level_scale: float = setting(1.0, "c_PL: overall scale of the protection level", ge=0.01, le=100.0)

    def check(self) -> None:
        if self.backwards_reset_s < self.history_s:
            raise InputError("backwards_reset_s must be >= history_s")
        if self.integrity_contradict_evidence > self.integrity_min_evidence:
            raise InputError("integrity_contradict_evidence must be <= integrity_min_evidence")
        if self.motion_hold_s < self.motion_timeout_s:
            raise InputError("motion_hold_s must be >= motion_timeout_s")

    @property
    def motion_noise(self) -> MotionNoise:
        return MotionNoise(self.accel_noise_mps2, self.yaw_rate_noise_radps, self.position_noise_mps,
                           self.max_speed_mps, self.gyro_noise_radps, self.gyro_bias_walk_radps,
                           self.speed_scale_sigma, self.speed_noise_mps)


@dataclass(frozen=True)
class PoseEstimate:
    """The filter output at `stamp_s`: medians (the paper's output) plus mean and covariance.

    Before initialization `initialized` is False, positions are 0, the covariance diagonal
    is UNINITIALIZED_VARIANCE and the protection level its square root (never NaN).
    """

    stamp_s: float
    east_m: float
    north_m: float
    yaw_enu_rad: float
    speed_mps: float
    covariance_3x3: np.ndarray  # over (east, north, yaw), yaw deviations wrapped
    mean_east_m: float
    mean_north_m: float
    mean_yaw_enu_rad: float
    ess: float
    initialized: bool
    protection_level_m: float = math.sqrt(UNINITIALIZED_VARIANCE)
    speed_variance: float = 0.0
    verified: bool = False  # cross-view has confirmed the particles since GNSS last (re)seeded them


@dataclass
class _CrossView:
    stamp_s: float
    volume: LikelihoodVolume
    log_normalizer: float


@dataclass
class _Retrieval:
    stamp_s: float
    grid: GridScores


@dataclass
class _State:
    """Everything the filter changes when it applies a measurement (snapshotted for replays)."""

    particles: np.ndarray | None = None    # (5, M): E, N, v, yaw, gyro bias
    log_weights: np.ndarray | None = None  # (M,), logsumexp = 0
    uniform: bool = True                   # all weights equal (right after resampling)
    time_s: float | None = None            # stamp of the last applied measurement
    seeded_at_s: float | None = None       # last (re)initialization
    last_cross_view_s: float | None = None
    evidence: tuple = ()                   # (stamp, cross-view log-evidence) of the evidence window
    verified: bool = False                 # cross-view confirmed the particles since they were seeded
    gate: GateState | None = None
    newest_fix: tuple | None = None        # (GnssFix, used by the gate): the retrieval circle's centre
    integrity_relock_s: float | None = None  # the last integrity re-lock (the coarse stage's alarm)
    relocalized_s: float | None = None     # the last re-seed by the relocalizer
    relocalizing_since_s: float | None = None  # the relocalizer searches (the estimate is lost)
    contradicted_since_s: float | None = None  # cross-view contradicts the confirmed estimate since
    withdrawn_s: float | None = None       # the last withdrawn confirmation

    @property
    def initialized(self) -> bool:
        return self.particles is not None

    def copy(self) -> "_State":
        out = _State(**{f.name: getattr(self, f.name) for f in fields(self)})
        if self.particles is not None:
            out.particles = self.particles.copy()
            out.log_weights = self.log_weights.copy()
        if self.gate is not None:
            out.gate = self.gate.copy()
        return out


COUNTERS = (
    "gnss_initialized", "gnss_accepted", "gnss_rejected", "gnss_gate_rejected", "gnss_invalid",
    "gnss_duplicates", "cross_view_applied", "cross_view_ignored", "cross_view_duplicates",
    "late_applied", "late_dropped", "resets", "reseeds", "relocks", "integrity_relocks", "resamples",
    "imu_samples", "imu_invalid", "imu_late", "wheel_samples", "wheel_invalid", "wheel_late",
    "predictions_with_imu", "predictions_with_wheel_speed", "predictions_motion_gap",
    "retrieval_applied", "retrieval_not_applied", "retrieval_ignored", "retrieval_duplicates",
    "relocalizer_searches", "relocalizations", "confirmations_withdrawn",
)
DECISION_COUNTERS = {
    GnssDecision.ACCEPTED: "gnss_accepted", GnssDecision.REJECTED_OUTLIER: "gnss_rejected",
    GnssDecision.REJECTED_GATE: "gnss_gate_rejected", GnssDecision.RESEEDED: "reseeds",
    GnssDecision.RELOCKED: "relocks", GnssDecision.RELOCKED_INTEGRITY: "integrity_relocks",
}


class ParticleFilter:
    """Particle filter over (E, N, v, yaw); see the module docstring for the maths."""

    def __init__(self, config: ParticleFilterConfig | None = None, seed: int = 0):
        self.config = config or ParticleFilterConfig()
        self.rng = np.random.default_rng(seed)
        self.gate = GnssGate(self.config)
        self.motion_noise = self.config.motion_noise
        self.motion_inputs = MotionInputs(self.config.motion_timeout_s,
                                          keep_s=max(5.0, self.config.integrity_window_s + self.config.history_s + 1),
                                          hold_s=self.config.motion_hold_s)
        self._state = _State()
        self._history = MeasurementHistory(self.config.history_s)
        self._replaying = False
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._last_reset_reason = ""
        self._last_reseed_reason = ""
        self._last_retrieval_reason = ""
        self._last_relocalizer_reason = ""
        self._relocalizer = self._new_relocalizer()
        self._last_gnss_stamp_s: float | None = None
        self._log_uniform = -math.log(self.config.num_particles)

    def reconfigure(self, config: ParticleFilterConfig) -> None:
        """New tuning parameters for a running filter (the particles stay); the particle count
        and the mode cannot change."""
        if (config.num_particles, config.use_cross_view) != (self.config.num_particles, self.config.use_cross_view):
            raise InputError("num_particles and use_cross_view are fixed for a filter's life")
        self.config = config
        self.gate = GnssGate(config)
        self.motion_noise = config.motion_noise
        self.motion_inputs.timeout_s = config.motion_timeout_s
        self.motion_inputs.hold_s = config.motion_hold_s
        self._history.window_s = config.history_s
        self._relocalizer = self._new_relocalizer()

    def _new_relocalizer(self) -> Relocalizer:
        cfg = self.config
        return Relocalizer(cfg.relocalize_radius_m, cfg.relocalize_peak_m, cfg.relocalize_min_frames,
                           cfg.relocalize_mass, cfg.relocalize_temperature)

    # -- sensor mounting -----------------------------------------------------------------

    @staticmethod
    def _mounted(p: np.ndarray, x_m: float, y_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Where a sensor mounted at (x, y) in base_link is, for every particle:
        pi_s(m) = pi(m) + R(psi_m) (x, y)."""
        if x_m == 0.0 and y_m == 0.0:
            return p[E], p[N]
        c, s = np.cos(p[YAW]), np.sin(p[YAW])
        return p[E] + c * x_m - s * y_m, p[N] + s * x_m + c * y_m

    def _antenna(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._mounted(p, self.config.antenna_x_m, self.config.antenna_y_m)

    def _shift_base_for_yaw(self, p: np.ndarray, old_yaw: np.ndarray) -> None:
        """Keep each particle's antenna where it was while its yaw changed from old_yaw."""
        ax, ay = self.config.antenna_x_m, self.config.antenna_y_m
        if ax == 0.0 and ay == 0.0:
            return
        dc, ds = np.cos(old_yaw) - np.cos(p[YAW]), np.sin(old_yaw) - np.sin(p[YAW])
        p[E] += dc * ax - ds * ay
        p[N] += ds * ax + dc * ay

    # -- initialize ----------------------------------------------------------------------

    def initialize(self, stamp_s: float, east_m: float, north_m: float, sigma_m: float) -> None:
        """Draw the particles around a fix: Gaussian position, uniform yaw, v ~ U[0, v_max]."""
        cfg = self.config
        m = cfg.num_particles
        p = np.empty((NUM_STATES, m))
        p[E] = east_m + sigma_m * self.rng.standard_normal(m)
        p[N] = north_m + sigma_m * self.rng.standard_normal(m)
        p[V] = self.rng.uniform(0.0, cfg.init_speed_max_mps, m)
        p[YAW] = self.rng.uniform(-math.pi, math.pi, m)
        p[BIAS] = cfg.gyro_bias_init_radps * self.rng.standard_normal(m)
        self._shift_base_for_yaw(p, np.zeros(m))  # the fix is the antenna's: base_link = fix - R(psi) lever
        p[E] -= cfg.antenna_x_m
        p[N] -= cfg.antenna_y_m
        s = self._state
        s.particles, s.log_weights, s.uniform = p, np.full(m, self._log_uniform), True
        s.time_s = s.seeded_at_s = float(stamp_s)
        s.evidence = ()
        s.verified = False
        s.newest_fix = (GnssFix(float(stamp_s), float(east_m), float(north_m), float(sigma_m)), True)
        s.gate = GateState(reference=(float(stamp_s), float(east_m), float(north_m), 0.5 * cfg.init_speed_max_mps,
                                      sigma_m))

    def _reseed(self, fix: GnssFix, verdict: Verdict) -> None:
        """Positions around the fix; yaw and speed from the GNSS course when the verdict has
        one, else half the particles keep the old speeds and yaws."""
        s = self._state
        old, gate = s.particles, s.gate
        m = old.shape[1]
        w_old = self._weights()
        keep = self.rng.choice(m, m // 2, p=w_old)
        self.initialize(fix.stamp_s, fix.east_m, fix.north_m, math.hypot(fix.sigma_m, verdict.spread_m))
        p = s.particles
        yaw_drawn = p[YAW].copy()
        if verdict.course_rad is not None:
            every = self.rng.choice(m, m, p=w_old)
            p[YAW] = wrap_angle(verdict.course_rad + math.radians(self.config.relock_yaw_sigma_deg)
                                * self.rng.standard_normal(m))
            p[V] = np.abs(verdict.speed_mps + self.rng.standard_normal(m))
            p[BIAS] = old[BIAS, every]
        else:
            p[V:, : len(keep)] = old[V:, keep]
        self._shift_base_for_yaw(p, yaw_drawn)
        s.gate = GateState(reference=s.gate.reference, last_fix=gate.last_fix, recent=gate.recent,
                           last_alarm=gate.last_alarm, disagreement=gate.disagreement)
        self._last_reseed_reason = verdict.reason

    # -- predict -------------------------------------------------------------------------

    def predict(self, dt_s: float, start_s: float | None = None) -> None:
        """Move every particle dt_s seconds forward (from `start_s`, default the filter time):
        with the measured yaw rate and wheel speed over the interval where they cover it,
        else with the constant-velocity model (see `cvgl_ros.filter.motion`)."""
        s = self._state
        if dt_s <= 0.0 or s.particles is None:
            return
        t0 = s.time_s if start_s is None else start_s
        yaw_rate, speed = self.motion_inputs.over(t0, t0 + dt_s) if t0 is not None else (None, None)
        if yaw_rate is not None:
            self._count("predictions_with_imu")
        if speed is not None:
            self._count("predictions_with_wheel_speed")
        if (yaw_rate is None and len(self.motion_inputs.yaw_rate)) or (speed is None and len(self.motion_inputs.speed)):
            self._count("predictions_motion_gap")
        motion.predict(s.particles, dt_s, self.rng, self.motion_noise, yaw_rate, speed)

    # -- update --------------------------------------------------------------------------

    def update_gnss(self, fix: GnssFix) -> GnssDecision:
        """The gate's verdict on the fix (see `cvgl_ros.filter.gnss_gate`), then the GNSS
        factor of Eq. 5 with the 3-sigma circle, or a re-seed around the fix."""
        cfg, s = self.config, self._state
        ant_e, ant_n = self._antenna(s.particles)  # the fix is the antenna's position
        d2 = (ant_e - fix.east_m) ** 2 + (ant_n - fix.north_m) ** 2
        inside = d2 <= (cfg.gate_sigmas * fix.sigma_m) ** 2
        w = self._weights()
        verdict = self.gate.assess(s.gate, fix, self._view(fix, float(np.sum(w[inside])), w, ant_e, ant_n))
        decision = verdict.decision
        if decision in (GnssDecision.RESEEDED, GnssDecision.RELOCKED, GnssDecision.RELOCKED_INTEGRITY):
            self._reseed(fix, verdict)
        elif decision is GnssDecision.ACCEPTED:
            log_factor = d2 * (-0.5 / fix.sigma_m**2)
            if verdict.circle_cut:
                log_factor[~inside] = -np.inf
            self._reweight(log_factor)
        if decision is GnssDecision.RELOCKED_INTEGRITY:
            s.integrity_relock_s = fix.stamp_s
        s.newest_fix = (fix, decision.used)
        self._set_reference(fix.stamp_s)
        return decision

    def _view(self, fix: GnssFix, weight_inside: float, w: np.ndarray, ant_e, ant_n) -> EstimateView:
        """What the gate needs to know of the particles (positions: the antenna's)."""
        cfg, s = self.config, self._state
        p, stamp_s = s.particles, fix.stamp_s
        yaw = _mean_yaw(p, w)
        held = s.last_cross_view_s is not None and stamp_s - s.last_cross_view_s <= cfg.cross_view_timeout_s
        recent = [e for t, e in s.evidence if stamp_s - t <= cfg.evidence_window_s]
        speed = self.motion_inputs.speed.average(stamp_s - cfg.integrity_window_s, stamp_s, cfg.motion_timeout_s) \
            if len(self.motion_inputs.speed) else None
        mean_e, mean_n = _wsum(ant_e, w), _wsum(ant_n, w)
        return EstimateView(
            weight_inside=weight_inside, distance_m=math.hypot(fix.east_m - mean_e, fix.north_m - mean_n),
            east_m=mean_e, north_m=mean_n, yaw_enu_rad=yaw, speed_mps=_wsum(p[V], w), cross_view_holds=held,
            cross_view_evidence=float(np.mean(recent)) if recent else None,
            in_warmup=stamp_s - s.seeded_at_s < cfg.outlier_warmup_s and not self._relocalized_since_seed(),
            relocalized=self._relocalized_since_seed(),
            measured_speed_mps=None if speed is None else speed[0])

    def _relocalized_since_seed(self) -> bool:
        """The relocalizer decided after the last (re)initialization (re-seeded the particles, or
        found them where they were): no warm-up then (it would accept the very fixes that lost
        the filter), and the gate's longer hold against a timed re-lock."""
        s = self._state
        return s.relocalized_s is not None and s.relocalized_s >= s.seeded_at_s

    def _set_reference(self, stamp_s: float) -> None:
        """Remember the estimate (its antenna) at this GNSS epoch for the next outlier test.

        Weighted means (O(M), no sorting) stand in for the medians here; `spread` is the
        RMS of the east and north standard deviations.
        """
        p, w = self._state.particles, self._weights()
        ant_e, ant_n = self._antenna(p)
        mean_e, mean_n, mean_v = _wsum(ant_e, w), _wsum(ant_n, w), _wsum(p[V], w)
        var = _wsum((ant_e - mean_e) ** 2 + (ant_n - mean_n) ** 2, w)
        self._state.gate.reference = (stamp_s, float(mean_e), float(mean_n), float(mean_v),
                                      math.sqrt(0.5 * max(var, 0.0)))

    def update_cross_view(self, volume: LikelihoodVolume, log_normalizer: float | None = None) -> float:
        """The cross-view factor of Eq. 5, as a mixture with a uniform outlier component;
        returns the evidence log sum_m w_m f_cv(m)."""
        cfg, s = self.config, self._state
        p = s.particles
        if log_normalizer is None:
            log_normalizer = volume.log_normalizer
        cam_e, cam_n = self._mounted(p, cfg.camera_x_m, cfg.camera_y_m)  # the volume is over the camera's pose
        ll = volume.interpolate(cam_e, cam_n, p[YAW])
        # log((1 - alpha) * p_cell * K*H*W + alpha), p_cell = exp(ll - log_normalizer)
        ll += math.log1p(-cfg.cross_view_outlier_prob) - log_normalizer + math.log(volume.log_likelihood.size)
        return self._reweight(np.logaddexp(ll, math.log(cfg.cross_view_outlier_prob), out=ll))

    def update_retrieval(self, grid: GridScores, stamp_s: float) -> GridFactor:
        """The coarse stage's factor: Eq. 5 of the retrieval grid without its GNSS term (see the
        module docstring); the weights stay as they are when it cannot weigh."""
        cfg, s = self.config, self._state
        p = s.particles
        ant_e, ant_n = self._antenna(p)
        fix, used = s.newest_fix if s.newest_fix is not None else (None, False)
        sigma = fix.sigma_m if fix is not None else cfg.default_gnss_sigma_m
        if fix is not None and used and stamp_s - fix.stamp_s <= cfg.retrieval_gnss_max_age_s:
            centre = fix.east_m, fix.north_m
        else:
            w = self._weights()
            centre = _wsum(ant_e, w), _wsum(ant_n, w)
        cam_e, cam_n = self._mounted(p, cfg.camera_x_m, cfg.camera_y_m)  # the scores are the camera's
        factor = grid_log_factor(grid, cam_e, cam_n, centre[0], centre[1], sigma, cfg.gate_sigmas, gnss_term=False,
                                 circle_east_m=ant_e, circle_north_m=ant_n)
        if factor.log_factor is not None:
            self._reweight(factor.log_factor)
        return factor

    def _unconfirmed_since(self) -> float | None:
        """The (re)seed or relocalization cross-view has fused frames after without confirming
        the particles (None: confirmed, or no frame fused since)."""
        cfg, s = self.config, self._state
        if s.particles is None or s.verified or not cfg.use_cross_view:
            return None
        since = max([s.seeded_at_s, *(t for t in (s.relocalized_s, s.withdrawn_s) if t is not None)])
        return since if s.last_cross_view_s is not None and s.last_cross_view_s >= since else None

    def lost(self, stamp_s: float) -> bool:
        """The relocalizer's trigger: cross-view frames were fused since the particles were
        (re)seeded, relocalize_after_s ago or more, and none confirmed them."""
        since = self._unconfirmed_since()
        return since is not None and stamp_s - since >= self.config.relocalize_after_s

    def _relocalize(self, grid: GridScores, stamp_s: float) -> None:
        """One retrieval frame for the relocalizer (`cvgl_ros.filter.relocalization`): its search
        runs while cross-view has not confirmed the particles since their (re)seed; a fix it
        finds re-seeds them once they count as lost (`lost`)."""
        cfg, s, reloc = self.config, self._state, self._relocalizer
        if self._unconfirmed_since() is None:
            if reloc.active:
                reloc.stop()
                s.relocalizing_since_s = None
                self._last_relocalizer_reason = "stopped: the estimate is confirmed" if s.verified else "stopped"
            return
        p, w = s.particles, self._weights()
        cam_e, cam_n = self._mounted(p, cfg.camera_x_m, cfg.camera_y_m)
        here = _wsum(cam_e, w), _wsum(cam_n, w)
        if not reloc.active:
            reloc.start(stamp_s, here[0], here[1], grid.spacing_m or 5.0)
            s.relocalizing_since_s = stamp_s
            self._count("relocalizer_searches")
        yaw, speed = _mean_yaw(p, w), _wsum(p[V], w)
        reloc.update(grid, stamp_s, (speed * math.cos(yaw), speed * math.sin(yaw)))
        decision = reloc.decision()
        self._last_relocalizer_reason = decision.reason
        if not decision.found or not self.lost(stamp_s):   # a right estimate gets its chance to be confirmed
            return
        reloc.stop()
        s.relocalizing_since_s = None
        shift = math.hypot(decision.position_en_m[0] - here[0], decision.position_en_m[1] - here[1])
        if shift < cfg.relocalize_min_shift_m:
            s.relocalized_s = stamp_s
            self._last_relocalizer_reason = f"{decision.reason}: {shift:.1f} m from the estimate, kept"
            return
        self._reseed_at(decision.position_en_m, stamp_s)
        self._last_relocalizer_reason = f"{decision.reason}: re-seeded {shift:.0f} m away"
        self._count("relocalizations")

    def _reseed_at(self, camera_en_m: tuple[float, float], stamp_s: float) -> None:
        """Particles around the camera position `camera_en_m` (relocalize_seed_sigma_m), their yaw,
        speed and bias drawn from the old ones; the gate's reference moves with them, with no
        warm-up (a warm-up would accept the very GNSS that lost the filter), and the fixes that
        now disagree count as a GNSS fault."""
        cfg, s = self.config, self._state
        old, m = s.particles, s.particles.shape[1]
        p = old[:, self.rng.choice(m, m, p=self._weights())].copy()
        p[E] = p[N] = 0.0
        lever_e, lever_n = self._mounted(p, cfg.camera_x_m, cfg.camera_y_m)   # R(psi) lever, each particle
        p[E] = camera_en_m[0] + cfg.relocalize_seed_sigma_m * self.rng.standard_normal(m) - lever_e
        p[N] = camera_en_m[1] + cfg.relocalize_seed_sigma_m * self.rng.standard_normal(m) - lever_n
        s.particles, s.log_weights, s.uniform = p, np.full(m, self._log_uniform), True
        s.evidence, s.verified, s.relocalized_s = (), False, stamp_s
        # GNSS is the suspect now: the gate's integrity test then asks cross-view to contradict the
        # estimate, not merely to be weak, before it re-locks onto the fixes (gnss_gate: fault seen)
        s.gate = GateState(last_fix=s.gate.last_fix, gnss_fault_seen=True)
        self._set_reference(stamp_s)

    def _reweight(self, log_factor: np.ndarray) -> float:
        """Multiply the weights by exp(log_factor), renormalize, resample when ESS is low;
        returns log sum_m w_m exp(log_factor_m) (the weights before, normalized)."""
        s = self._state
        lw = s.log_weights
        lw += log_factor
        peak = lw.max()
        lw -= peak
        w = np.exp(lw)
        total = w.sum()
        lw -= math.log(total)
        w /= total
        s.uniform = False
        self.resample_if_needed(w)
        return float(peak + math.log(total))

    def _weights(self) -> np.ndarray:
        return _normalized(self._state.log_weights)

    # -- resample ------------------------------------------------------------------------

    def resample_if_needed(self, weights: np.ndarray | None = None) -> bool:
        """Systematic resampling when ESS < resample_ess_fraction * M; True when it resampled."""
        s = self._state
        w = self._weights() if weights is None else weights
        m = len(w)
        if effective_sample_size(w) >= self.config.resample_ess_fraction * m:
            return False
        idx = systematic_resample(w, self.rng)
        s.particles = s.particles[:, idx]
        s.log_weights = np.full(m, self._log_uniform)
        s.uniform = True
        self._count("resamples")
        return True

    # -- estimate ------------------------------------------------------------------------

    def estimate(self, stamp_s: float | None = None) -> PoseEstimate:
        """Median pose (and weighted mean, covariance) at `stamp_s` (default: the filter time).

        A stamp after the filter time is reached by moving a copy of the particles with the
        noise-free motion model (with the measured yaw rate and speed when there are some).
        An earlier stamp gives the posterior as it stood at that
        stamp (after the measurements up to it), from the snapshots kept for late
        measurements, moved on to the stamp the same way; once that time has left the
        history, the estimate at the filter time.
        """
        s = self._state
        if s.particles is None:
            cov = np.eye(3) * UNINITIALIZED_VARIANCE
            t = float(stamp_s) if stamp_s is not None and math.isfinite(stamp_s) else 0.0
            return PoseEstimate(t, 0.0, 0.0, 0.0, 0.0, cov, 0.0, 0.0, 0.0, 0.0, False)
        if stamp_s is None or not math.isfinite(stamp_s) or stamp_s == s.time_s:
            return self._estimate_now()
        state = s if stamp_s > s.time_s else self._history.posterior_at(float(stamp_s), s)
        if state is None or state.particles is None:
            return self._estimate_now()
        if stamp_s == state.time_s:
            return self._estimate_of(state, state.time_s)
        return self._estimate_of(state, float(stamp_s), self._moved(state, float(stamp_s)))

    def _moved(self, state: _State, stamp_s: float) -> np.ndarray:
        """A copy of the particles moved to `stamp_s` without noise: measured yaw rate and
        wheel speed where they cover the interval, else constant velocity."""
        dt = stamp_s - state.time_s
        p = state.particles.copy()
        yaw_rate, speed = self.motion_inputs.over(state.time_s, stamp_s)
        v = p[V] if speed is None else np.full_like(p[V], speed[0])
        yaw_mid = p[YAW] if yaw_rate is None else p[YAW] + 0.5 * dt * (yaw_rate[0] - p[BIAS])
        p[E] += dt * v * np.cos(yaw_mid)
        p[N] += dt * v * np.sin(yaw_mid)
        if yaw_rate is not None:
            p[YAW] = wrap_angle(p[YAW] + dt * (yaw_rate[0] - p[BIAS]))
        p[V] = v
        return p

    def _estimate_now(self) -> PoseEstimate:
        return self._estimate_of(self._state, self._state.time_s)

    def _estimate_of(self, state: _State, stamp_s: float, particles: np.ndarray | None = None) -> PoseEstimate:
        cfg = self.config
        p = state.particles if particles is None else particles
        w = None if state.uniform else _normalized(state.log_weights)
        weights = w if w is not None else np.full(p.shape[1], 1.0 / p.shape[1])
        mean_e = _wsum(p[E], weights)
        mean_n = _wsum(p[N], weights)
        mean_yaw = float(wrap_angle(_mean_yaw(p, weights)))
        dev = np.stack([p[E] - mean_e, p[N] - mean_n, wrap_angle(p[YAW] - mean_yaw)])
        weighted = dev * weights
        cov = np.array([[_wsum(weighted[i], dev[j]) for j in range(3)] for i in range(3)])
        floor_m = cfg.covariance_floor_m
        if cfg.use_cross_view and not state.verified:
            floor_m = math.hypot(floor_m, cfg.unverified_sigma_m)
        if state.relocalizing_since_s is not None:
            floor_m = max(floor_m, cfg.relocalize_radius_m / 3.0)
        scale = np.sqrt([cfg.covariance_scale, cfg.covariance_scale, cfg.covariance_yaw_scale])
        cov = np.outer(scale, scale) * 0.5 * (cov + cov.T) + np.diag([floor_m ** 2, floor_m ** 2,
                                                                      math.radians(cfg.covariance_floor_yaw_deg) ** 2])
        median_e, median_n = _weighted_median(p[E], w), _weighted_median(p[N], w)
        median_yaw = float(wrap_angle(mean_yaw + _weighted_median(dev[2], w)))
        ess = effective_sample_size(weights)
        # protection level: the Gaussian bound and the particles' own tail, the larger
        offset = math.hypot(median_e - mean_e, median_n - mean_n)
        major_var = max(float(np.linalg.eigvalsh(cov[:2, :2])[-1]), 0.0)
        gaussian = offset + cfg.protection_level_sigmas * math.sqrt(major_var)
        distance = np.hypot(p[E] - median_e, p[N] - median_n)
        tail = _weighted_quantile(distance, weights, 1.0 - 1.0 / max(ess, 2.0))
        mean_v = _wsum(p[V], weights)
        return PoseEstimate(
            stamp_s=float(stamp_s), east_m=median_e, north_m=median_n,
            yaw_enu_rad=median_yaw, speed_mps=_weighted_median(p[V], w),
            covariance_3x3=cov, mean_east_m=mean_e, mean_north_m=mean_n,
            mean_yaw_enu_rad=mean_yaw, ess=ess, initialized=True,
            protection_level_m=cfg.protection_level_scale * max(gaussian, tail, self._disagreement(state, stamp_s)),
            speed_variance=max(_wsum((p[V] - mean_v) ** 2, weights), 0.0),
            verified=state.verified or not cfg.use_cross_view,
        )

    def _disagreement(self, state: _State, stamp_s: float) -> float:
        """The unresolved gap between GNSS and the estimate: the latest rejected fix's distance
        (for integrity_window_s after it), or the gap at a timed re-lock (for relock_memory_s),
        when one of the two is wrong and the filter cannot tell which."""
        held = state.gate.disagreement if state.gate is not None else None
        if held is None:
            return 0.0
        until, gap = held
        if until < stamp_s - self.config.integrity_window_s:
            return 0.0
        return float(gap)

    # -- measurement intake: validation, stamp order, history --------------------------

    def add_gnss(self, stamp_s: float, east_m: float, north_m: float, sigma_m: float | None,
                 status_ok: bool = True) -> GnssDecision:
        """Feed one GNSS fix (map-frame metres, reported 1-sigma); see GnssDecision."""
        values = (stamp_s, east_m, north_m)
        if not status_ok or not all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in values):
            self._count("gnss_invalid")
            return GnssDecision.IGNORED_INVALID
        cfg = self.config
        if sigma_m is None or not math.isfinite(sigma_m) or sigma_m <= 0:
            sigma_m = cfg.default_gnss_sigma_m
        fix = GnssFix(float(stamp_s), float(east_m), float(north_m), max(float(sigma_m), cfg.min_gnss_sigma_m))
        s = self._state
        if fix.stamp_s == self._last_gnss_stamp_s or self._history.has(fix.stamp_s, GnssFix):
            self._count("gnss_duplicates")
            return GnssDecision.IGNORED_DUPLICATE
        self._last_gnss_stamp_s = fix.stamp_s
        if not s.initialized:
            self.initialize(fix.stamp_s, fix.east_m, fix.north_m, fix.sigma_m)
            self._history.start(Entry(fix.stamp_s, fix, _State()))
            self._count("gnss_initialized")
            return GnssDecision.INITIALIZED
        lag = s.time_s - fix.stamp_s
        if lag > cfg.backwards_reset_s:
            self.reset(f"GNSS stamp {fix.stamp_s:.3f} s is {lag:.3f} s behind the filter time: time went backwards")
            self.initialize(fix.stamp_s, fix.east_m, fix.north_m, fix.sigma_m)
            self._history.start(Entry(fix.stamp_s, fix, _State()))
            return GnssDecision.RESET
        return self._ingest(Entry(fix.stamp_s, fix))

    def add_cross_view(self, stamp_s: float, volume: LikelihoodVolume) -> bool:
        """Feed one likelihood volume computed from the camera frame at `stamp_s`.

        Returns True when it was applied (now or, if it came late, at its own stamp).
        """
        if not isinstance(volume, LikelihoodVolume):
            raise InputError(f"add_cross_view expects a LikelihoodVolume, got {type(volume).__name__}")
        s = self._state
        if not self.config.use_cross_view or not s.initialized or not math.isfinite(stamp_s):
            self._count("cross_view_ignored")
            return False
        if self._history.has(stamp_s, _CrossView):
            self._count("cross_view_duplicates")
            return False
        entry = Entry(float(stamp_s), _CrossView(float(stamp_s), volume, volume.log_normalizer))
        return self._ingest(entry) is not None

    def add_retrieval(self, stamp_s: float, grid: GridScores) -> bool:
        """Feed one frame's retrieval grid scores (the coarse stage). True when they weighed the
        particles (now or at their own stamp); `diagnostics['last_retrieval_reason']` says why not."""
        if not isinstance(grid, GridScores):
            raise InputError(f"add_retrieval expects GridScores, got {type(grid).__name__}")
        if not self._state.initialized or not math.isfinite(stamp_s):
            self._count("retrieval_ignored")
            self._last_retrieval_reason = "no estimate yet" if math.isfinite(stamp_s) else "stamp not finite"
            return False
        if self._history.has(stamp_s, _Retrieval):
            self._count("retrieval_duplicates")
            return False
        return bool(self._ingest(Entry(float(stamp_s), _Retrieval(float(stamp_s), grid))))

    def integrity_alarm(self) -> str:
        """Why the estimate may be lost (the coarse stage's alarm), or "": an integrity re-lock
        that cross-view has not confirmed since."""
        s = self._state
        if s.integrity_relock_s is None or s.verified or s.gate is None:
            return ""
        return f"integrity re-lock at {s.integrity_relock_s:.1f} s, not yet confirmed: {s.gate.last_alarm}"

    def disagreement_m(self, stamp_s: float | None = None) -> float:
        """The unresolved gap between GNSS and the estimate at `stamp_s` (the protection level's g)."""
        s = self._state
        t = s.time_s if stamp_s is None else stamp_s
        return 0.0 if t is None else self._disagreement(s, t)

    def add_yaw_rate(self, stamp_s: float, yaw_rate_radps: float, variance: float | None = None) -> bool:
        """Feed one IMU yaw-rate sample (rad/s, counter-clockwise; its white-noise variance)."""
        return self._add_motion("imu", self.motion_inputs.add_yaw_rate, stamp_s, yaw_rate_radps, variance, 10.0)

    def add_wheel_speed(self, stamp_s: float, speed_mps: float, variance: float | None = None) -> bool:
        """Feed one wheel-odometry forward-speed sample (m/s; its variance)."""
        return self._add_motion("wheel", self.motion_inputs.add_speed, stamp_s, speed_mps, variance,
                                self.config.max_speed_mps)

    def _add_motion(self, kind: str, add, stamp_s, value, variance, limit: float) -> bool:
        finite = all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in (stamp_s, value))
        if not finite or abs(value) > limit:
            self._count(f"{kind}_invalid")
            return False
        var = float(variance) if variance is not None and math.isfinite(variance) and variance >= 0 else 0.0
        if not add(float(stamp_s), float(value), var):
            self._count(f"{kind}_invalid")  # a repeated stamp
            return False
        self._count(f"{kind}_samples")
        now = self._state.time_s
        if now is not None and stamp_s < now:
            self._count(f"{kind}_late")  # kept for re-predictions of late measurements
        if now is not None:
            self.motion_inputs.prune(now)
        return True

    def _ingest(self, entry: Entry):
        """Apply a measurement at its stamp: directly when it is the newest, else by replay
        (see `cvgl_ros.filter.history`)."""
        s, history = self._state, self._history
        if entry.stamp_s >= s.time_s:
            entry.before = s.copy()
            result = self._apply(entry.measurement)
            history.append(entry, self._state.time_s)
            return result
        if history.is_too_late(entry.stamp_s, s.time_s):
            self._count("late_dropped")
            return GnssDecision.DROPPED_LATE if isinstance(entry.measurement, GnssFix) else None
        later = history.first_newer(entry.stamp_s)
        self._state = history.entries[later].before
        entry.before = self._state.copy()
        result = self._apply(entry.measurement)
        self._count("late_applied")
        self._replaying = True
        try:
            for e in history.entries[later:]:
                e.before = self._state.copy()
                self._apply(e.measurement)
        finally:
            self._replaying = False
        history.insert(later, entry)
        return result

    def _apply(self, m: GnssFix | _CrossView | _Retrieval):
        s = self._state
        if s.particles is None:  # rewound to before the initialization
            if isinstance(m, GnssFix):
                self.initialize(m.stamp_s, m.east_m, m.north_m, m.sigma_m)
                return GnssDecision.INITIALIZED
            return None
        self.predict(m.stamp_s - s.time_s)
        s.time_s = max(s.time_s, m.stamp_s)
        if isinstance(m, GnssFix):
            decision = self.update_gnss(m)
            self._count(DECISION_COUNTERS.get(decision))
            return decision
        if isinstance(m, _Retrieval):
            if not self._replaying:
                self._relocalize(m.grid, m.stamp_s)
            factor = self.update_retrieval(m.grid, m.stamp_s)
            self._count("retrieval_applied" if factor.log_factor is not None else "retrieval_not_applied")
            if not self._replaying:
                self._last_retrieval_reason = factor.reason or f"{factor.cells} cells, {factor.particles_inside} " \
                                                               f"particles in the circle"
            return factor.log_factor is not None
        evidence = self.update_cross_view(m.volume, m.log_normalizer)
        horizon = m.stamp_s - self.config.evidence_window_s
        s.evidence = tuple(x for x in s.evidence if x[0] >= horizon) + ((m.stamp_s, evidence),)
        mean = float(np.mean([e for _, e in s.evidence]))
        s.verified = s.verified or mean >= self.config.integrity_min_evidence
        self._withdraw_if_contradicted(m.stamp_s, mean)
        s.last_cross_view_s = m.stamp_s
        self._count("cross_view_applied")
        return True

    def _withdraw_if_contradicted(self, stamp_s: float, mean_evidence: float) -> None:
        """Withdraw the confirmation after withdraw_confirmation_after_s of contradiction
        (module docstring)."""
        cfg, s = self.config, self._state
        if not s.verified or mean_evidence >= cfg.withdraw_confirmation_evidence:
            s.contradicted_since_s = None
            return
        if s.contradicted_since_s is None:
            s.contradicted_since_s = stamp_s
        if stamp_s - s.contradicted_since_s >= cfg.withdraw_confirmation_after_s:
            s.verified, s.withdrawn_s, s.contradicted_since_s = False, stamp_s, None
            self._count("confirmations_withdrawn")

    def reset(self, reason: str = "reset requested") -> None:
        """Forget everything (e.g. the ROS clock jumped back); the next valid fix initializes."""
        self._state = _State()
        self._history.clear()
        self._relocalizer.stop()
        self._last_reset_reason = reason
        self._count("resets")

    # -- read-only views -----------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self._state.initialized

    @property
    def time_s(self) -> float | None:
        """Stamp of the newest measurement applied (None before initialization)."""
        return self._state.time_s

    @property
    def particles(self) -> np.ndarray:
        """(M, 4) view of the particles: east_m, north_m, speed_mps, yaw_enu_rad."""
        if self._state.particles is None:
            return np.empty((0, 4))
        return self._state.particles[:BIAS].T

    @property
    def weights(self) -> np.ndarray:
        """(M,) normalized weights."""
        return np.empty(0) if self._state.particles is None else self._weights()

    @property
    def diagnostics(self) -> dict:
        """Event counters, the last reset / re-seed / integrity-alarm reasons and the recent
        cross-view evidence."""
        s = self._state
        evidence = [e for _, e in s.evidence]
        return dict(self._counters, last_reset_reason=self._last_reset_reason,
                    last_reseed_reason=self._last_reseed_reason,
                    last_integrity_alarm=s.gate.last_alarm if s.gate else "",
                    last_retrieval_reason=self._last_retrieval_reason,
                    last_relocalizer_reason=self._last_relocalizer_reason,
                    estimate_verified=s.verified,
                    cross_view_evidence=f"{np.mean(evidence):.2f}" if evidence else "none")

    def _count(self, name: str | None) -> None:
        if name is not None and not self._replaying:
            self._counters[name] += 1


def _normalized(log_weights: np.ndarray) -> np.ndarray:
    w = np.exp(log_weights)
    return w / w.sum()


def _mean_yaw(p: np.ndarray, weights: np.ndarray) -> float:
    """The particles' weighted circular mean yaw, rad."""
    return math.atan2(_wsum(np.sin(p[YAW]), weights), _wsum(np.cos(p[YAW]), weights))


def _wsum(values: np.ndarray, weights: np.ndarray, scale: float = 1.0) -> float:
    """sum(values * weights), without BLAS: a multi-threaded BLAS dot spins badly on a busy
    vehicle computer, and these vectors are too short to gain from it."""
    return float(np.multiply(values, weights).sum()) * scale


def _weighted_median(values: np.ndarray, weights: np.ndarray | None) -> float:
    """Median of `values`; weighted when `weights` (normalized) is given."""
    if weights is None:
        return float(np.median(values))
    return _weighted_quantile(values, weights, 0.5)

def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The q-quantile of `values` under normalized `weights`."""
    order = np.argsort(values)
    cdf = np.cumsum(weights[order])
    i = int(np.searchsorted(cdf, q * cdf[-1]))
    return float(values[order[min(i, len(order) - 1)]])
