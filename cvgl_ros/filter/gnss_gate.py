"""The GNSS gate of the particle filter: which fixes are fused, which are rejected, and when
the filter concludes that its own estimate, not GNSS, is wrong (fault detection and
exclusion in the filter, as a receiver's RAIM does over satellites).

Tests on a fix z = (E_z, N_z) with reported 1-sigma sigma_gps (floored), at time t
--------------------------------------------------------------------------------
* Circle weight: W = sum of the particle weights within gate_sigmas * sigma_gps of z
  (seed 001's 3-sigma circle).
* Far from the estimate (seed 001's outlier test, refined): farther than
      r_outlier = outlier_sigmas (sigma_gps + sigma_est) + v_ref (t - t_ref)
  from the estimate (E_ref, N_ref, v_ref, spread sigma_est) at the previous GNSS epoch.
* Suspicious: far from the estimate, or W < gate_suspicious_weight while cross-view results
  hold the estimate (one within cross_view_timeout_s), or W < gate_min_weight otherwise;
  but never a fix within gate_suspicious_min_m of the estimate's mean: an estimate that
  cross-view made overconfident must not reject the GNSS that would correct it by a few
  metres (the product's bar is 10 m).
* Jumped: farther than outlier_sigmas sigma_gps + v_ref dt from the previous valid raw fix
  (not tested across gaps longer than jump_test_max_gap_s), or an earlier jump has not
  come back yet (no unsuspicious fix since).

Decisions (GnssDecision), in the order they are tried
-----------------------------------------------------
1. No test during outlier_warmup_s after a (re)initialization: ACCEPTED (or RESEEDED).
2. Suspicious and jumped: REJECTED_OUTLIER. Suspicious, smooth, cross-view holds:
   REJECTED_GATE (a multipath ramp, or the estimate drifted; the integrity monitor decides).
   Suspicious, smooth, after the relocalizer re-seeded the particles against these fixes:
   REJECTED_GATE too, with cross-view frames or without (a re-seed off the tile cache has
   none until the car is back on it; the timed re-lock of 4. bounds the hold). Suspicious,
   smooth, no cross-view: the estimate drifted from GNSS: used.
3. A rejected fix goes to the integrity monitor (below): RELOCKED_INTEGRITY re-seeds around
   it at once, with the yaw of the GNSS course over ground.
4. Otherwise, after relock_after_s of rejected fixes (relock_after_confirmed_s while recent
   cross-view updates confirm the estimate: evidence >= integrity_min_evidence;
   relocalized_relock_after_s while they confirm an estimate the relocalizer re-seeded against
   these fixes): RELOCKED, re-seeded around the fix, so the filter never locks itself out.
5. A used fix whose circle holds no weight (W < gate_min_weight): RESEEDED around it, unless
   it lies within gate_suspicious_min_m of the estimate: then ACCEPTED without the circle's
   cut (the Gaussian alone pulls a too-tight cloud toward it).
6. Otherwise ACCEPTED: the GNSS factor of Eq. 5 is applied.

Integrity monitor: the sequence test
------------------------------------
The fixes of the last integrity_window_s (T) are kept with the estimate (its weighted mean)
at their epochs. Over the window, D_gnss is the displacement of a quadratic in time fitted
to the fixes' E and N (first to last stamp), D_est the estimate's displacement, and the
course over ground the direction of the fit's velocity at the last stamp. The estimate is
declared wrong when, together,
  a. every fix of the window was rejected, the rejections began at least T ago, and the
     window holds at least integrity_min_fixes fixes;
  b. the fixes agree with one another: the fit leaves an RMS residual below
     integrity_consistency_sigmas * median(sigma_gps) (floored at 1 m);
  c. the recent cross-view evidence for the estimate is weak (below integrity_min_evidence;
     see ParticleFilter.update_cross_view) and no GNSS fault was seen in this streak of
     rejections (below), or cross-view contradicts the estimate (evidence below
     integrity_contradict_evidence: the particles sit where the volume is below its mean),
     fault or not: the estimate is wrong (no further test); else
  c'. where wheel odometry covers the window, they agree with the measured motion: GNSS
     moved as far as the wheels did, | |D_gnss| - d | <= max(3 m, 30 % of d);
  d. and the estimate disagrees with them in a way a GNSS error cannot explain: the
     vehicle moves (|D_gnss| >= integrity_min_speed_mps * T) and both D_est's direction and
     the estimate's yaw differ from D_gnss's direction and the course over ground by more
     than integrity_yaw_tolerance_deg; without wheel odometry, for a second window in a row
     (a multipath ramp lasts one window: after it, the offset cancels in D_gnss).
A multipath episode offsets the fixes: once it has ramped in, D_gnss equals the vehicle's
displacement (the offset cancels) and d fails; while it ramps in, D_gnss is longer or
shorter than the vehicle's motion and c' fails; and cross-view still confirms the estimate.
A filter that ran off along the wrong road at a turn fails d on its direction: it re-locks
after T (2 T without wheels) instead of relock_after_s.
A GNSS fault seen: the streak of rejections began with a jump, or with fixes that moved
unlike the wheels (c' failed once). GNSS is then the suspect: the evidence test (c) asks
for contradiction, not mere weakness (a real network's evidence dips toward 0 on plain
roads while the estimate is right), the direction test (d) needs two windows in a row even
with wheels, and the timed re-lock waits relock_after_confirmed_s unless cross-view
contradicts the estimate. The flag clears with the streak (a fix used again, or a re-lock).
Why contradiction overrides the fault: without wheels, a multipath episode's onset is
flagged as a jump, and the flag stays while every fix is rejected. If the estimate is lost
meanwhile (a turn the constant-velocity model missed), nothing but cross-view can say so;
on the fleet, a negative mean evidence over the window came with errors of 4-40 m.
Only an integrity re-lock seeds the yaw from the course over ground (a timed re-lock may
come at the end of a multipath episode, whose ramp-out reverses the apparent course).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from cvgl_ros.geo.yaw import angle_diff


class GnssDecision(str, Enum):
    """What `ParticleFilter.add_gnss` did with a fix."""

    INITIALIZED = "initialized"              # first valid fix: particles drawn around it
    ACCEPTED = "accepted"                    # used in the measurement update
    REJECTED_OUTLIER = "rejected_outlier"    # GNSS jumped away from the estimate
    REJECTED_GATE = "rejected_gate"          # smooth but far from the estimate while cross-view holds
    RESEEDED = "reseeded"                    # all weight vanished: particles re-seeded around it
    RELOCKED = "relocked"                    # fixes rejected for relock_after_s: re-seeded around it
    RELOCKED_INTEGRITY = "relocked_integrity"  # the sequence test found the estimate wrong: re-seeded
    RESET = "reset"                          # its stamp went back in time: filter reset, re-initialized
    IGNORED_INVALID = "ignored_invalid"      # NO_FIX, NaN or Inf position or stamp
    IGNORED_DUPLICATE = "ignored_duplicate"  # a fix with this stamp was already seen
    DROPPED_LATE = "dropped_late"            # older than the history window

    @property
    def used(self) -> bool:
        """True when the fix moved the particles toward it."""
        return self in (GnssDecision.INITIALIZED, GnssDecision.ACCEPTED, GnssDecision.RESEEDED,
                        GnssDecision.RELOCKED, GnssDecision.RELOCKED_INTEGRITY, GnssDecision.RESET)

    @property
    def rejected(self) -> bool:
        return self in (GnssDecision.REJECTED_OUTLIER, GnssDecision.REJECTED_GATE)


@dataclass(frozen=True)
class GnssFix:
    """A valid fix in the map frame: stamp (s), position (m), 1-sigma (m, floored)."""

    stamp_s: float
    east_m: float
    north_m: float
    sigma_m: float


@dataclass(frozen=True)
class Epoch:
    """One fix of the integrity window, with the estimate at its epoch."""

    stamp_s: float
    east_m: float
    north_m: float
    sigma_m: float
    rejected: bool
    estimate_e: float = math.nan
    estimate_n: float = math.nan


@dataclass
class GateState:
    """The gate's memory (snapshotted with the particles for late-measurement replays)."""

    reference: tuple | None = None         # estimate at the previous GNSS epoch: (t, E, N, v, spread)
    rejecting_since_s: float | None = None
    last_fix: tuple | None = None          # previous valid raw fix (t, E, N), used or not
    gnss_jumped: bool = False              # GNSS jumped away and has not come back yet
    recent: tuple = ()                     # Epochs of the integrity window, oldest first
    last_alarm: str = ""                   # why the integrity monitor last re-locked
    direction_alarm_since_s: float | None = None  # the sequence test's direction disagreement began
    disagreement: tuple | None = None      # (valid until, m): GNSS and the estimate disagree by this
    gnss_fault_seen: bool = False          # this rejection streak began with a GNSS fault (jump, or unlike the wheels)

    def copy(self) -> "GateState":
        return replace(self)


@dataclass(frozen=True)
class EstimateView:
    """What the gate needs to know of the particles at the fix's stamp."""

    weight_inside: float                   # W
    distance_m: float                      # from the fix to the estimate's weighted mean
    east_m: float                          # the estimate's weighted mean
    north_m: float
    yaw_enu_rad: float                     # circular mean
    speed_mps: float                       # weighted mean
    cross_view_holds: bool
    cross_view_evidence: float | None      # recent mean log-evidence, None without cross-view
    in_warmup: bool
    measured_speed_mps: float | None = None  # wheel odometry, mean over the integrity window
    relocalized: bool = False              # the relocalizer re-seeded the particles against these fixes


@dataclass(frozen=True)
class Verdict:
    decision: GnssDecision
    reason: str = ""
    course_rad: float | None = None        # GNSS course over ground, for a re-lock
    speed_mps: float | None = None         # GNSS speed, for a re-lock
    spread_m: float = 0.0                  # residual of the GNSS track fit
    circle_cut: bool = True                # ACCEPTED: discard particles outside the 3-sigma circle


@dataclass(frozen=True)
class TrackFit:
    """A quadratic in time fitted to a window of fixes, evaluated at its last stamp."""

    east_m: float
    north_m: float
    velocity_e: float
    velocity_n: float
    rms_m: float
    displacement_e: float = 0.0            # fitted position at the last stamp minus at the first
    displacement_n: float = 0.0

    @property
    def speed_mps(self) -> float:
        return math.hypot(self.velocity_e, self.velocity_n)

    @property
    def course_rad(self) -> float:
        return math.atan2(self.velocity_n, self.velocity_e)


def fit_track(epochs) -> TrackFit | None:
    """Least-squares quadratic (linear below 4 fixes) of E(t), N(t); None below 3 fixes."""
    if len(epochs) < 3:
        return None
    t = np.array([e.stamp_s for e in epochs])
    t = t - t[-1]
    xy = np.array([(e.east_m, e.north_m) for e in epochs])
    degree = 2 if len(epochs) >= 4 and t[0] < -0.5 else 1
    design = np.vander(t, degree + 1)  # columns t^d .. 1
    coef, *_ = np.linalg.lstsq(design, xy, rcond=None)
    residual = xy - design @ coef
    rms = float(math.sqrt(np.mean(np.sum(residual ** 2, axis=1))))
    velocity = coef[-2]
    moved = coef[-1] - design[0] @ coef
    return TrackFit(float(coef[-1][0]), float(coef[-1][1]), float(velocity[0]), float(velocity[1]), rms,
                    float(moved[0]), float(moved[1]))


class GnssGate:
    """Gate decisions for one fix at a time; `config` is the ParticleFilterConfig."""

    def __init__(self, config):
        self.config = config

    def assess(self, state: GateState, fix: GnssFix, view: EstimateView) -> Verdict:
        """Decide on `fix` and update `state` (the filter applies the verdict)."""
        cfg = self.config
        empty = view.weight_inside < cfg.gate_min_weight
        threshold = cfg.gate_suspicious_weight if view.cross_view_holds else cfg.gate_min_weight
        suspicious = view.distance_m > cfg.gate_suspicious_min_m and (
            view.weight_inside < threshold or self._far_from_estimate(state, fix))
        jumped = self._jumped_from_previous_fix(state, fix)
        state.last_fix = (fix.stamp_s, fix.east_m, fix.north_m)
        rejected = suspicious and not view.in_warmup and (jumped or state.gnss_jumped or view.cross_view_holds
                                                          or view.relocalized)
        self._remember(state, fix, rejected, view)
        if rejected:
            return self._rejected(state, fix, view, jumped or state.gnss_jumped)
        state.gnss_jumped = state.gnss_fault_seen = False
        state.rejecting_since_s = None
        if empty and view.distance_m <= cfg.gate_suspicious_min_m:
            return Verdict(GnssDecision.ACCEPTED, circle_cut=False)  # near a too-tight cloud: no cut, no re-seed
        if empty:
            return Verdict(GnssDecision.RESEEDED, f"no particle weight within {cfg.gate_sigmas:g} sigma of the GNSS "
                                                  f"fix at t={fix.stamp_s:.3f} s: re-seeded around it")
        return Verdict(GnssDecision.ACCEPTED)

    def _rejected(self, state: GateState, fix: GnssFix, view: EstimateView, jumped: bool) -> Verdict:
        cfg = self.config
        state.gnss_jumped = jumped
        state.gnss_fault_seen = state.gnss_fault_seen or jumped
        state.disagreement = (fix.stamp_s, view.distance_m)
        if state.rejecting_since_s is None:
            state.rejecting_since_s = fix.stamp_s
        rejecting_s = fix.stamp_s - state.rejecting_since_s
        alarm, fit = self._sequence_test(state, fix, view)
        if alarm:
            state.last_alarm = alarm
            state.disagreement = None  # the estimate was found wrong: GNSS is trusted again
            return self._relock(state, GnssDecision.RELOCKED_INTEGRITY, alarm, fit)
        evidence = view.cross_view_evidence
        confirmed = (evidence is not None and evidence >= cfg.integrity_min_evidence) or (
            state.gnss_fault_seen and not self._contradicted(view))
        limit = cfg.relock_after_confirmed_s if confirmed else cfg.relock_after_s
        if confirmed and view.relocalized:  # the camera found the car against these very fixes
            limit = max(limit, cfg.relocalized_relock_after_s)
        if rejecting_s >= limit:  # no course: the fixes were not checked against the motion
            state.disagreement = (fix.stamp_s + cfg.relock_memory_s, view.distance_m)  # either may be wrong
            return self._relock(state, GnssDecision.RELOCKED,
                                f"GNSS fixes rejected for {rejecting_s:.1f} s: re-seeded around GNSS", None)
        return Verdict(GnssDecision.REJECTED_OUTLIER if jumped else GnssDecision.REJECTED_GATE)

    @staticmethod
    def _relock(state: GateState, decision: GnssDecision, reason: str, fit: TrackFit | None) -> Verdict:
        state.rejecting_since_s = None
        state.gnss_jumped = state.gnss_fault_seen = False
        state.recent = tuple(replace(e, rejected=False) for e in state.recent)
        if fit is None or fit.speed_mps < 0.5:
            return Verdict(decision, reason)
        return Verdict(decision, reason, fit.course_rad, fit.speed_mps, fit.rms_m)

    def _remember(self, state: GateState, fix: GnssFix, rejected: bool, view: EstimateView) -> None:
        horizon = fix.stamp_s - self.config.integrity_window_s - 1e-9
        kept = tuple(e for e in state.recent if horizon <= e.stamp_s < fix.stamp_s)
        state.recent = kept + (Epoch(fix.stamp_s, fix.east_m, fix.north_m, fix.sigma_m, rejected,
                                     view.east_m, view.north_m),)

    def _sequence_test(self, state: GateState, fix: GnssFix, view: EstimateView) -> tuple[str, TrackFit | None]:
        """('' or the alarm's reason, the fit of the window's fixes); see the module docstring."""
        cfg = self.config
        window = state.recent
        fit = fit_track(window)
        if (fit is None or len(window) < cfg.integrity_min_fixes or not all(e.rejected for e in window)
                or fix.stamp_s - state.rejecting_since_s < cfg.integrity_window_s - 1e-6):
            return "", fit
        sigma = max(float(np.median([e.sigma_m for e in window])), 1.0)
        if fit.rms_m > cfg.integrity_consistency_sigmas * sigma:
            return "", fit  # the fixes disagree with one another: GNSS itself is unreliable
        span = window[-1].stamp_s - window[0].stamp_s
        gap = math.hypot(fix.east_m - view.east_m, fix.north_m - view.north_m)
        weak = view.cross_view_evidence is not None and view.cross_view_evidence < cfg.integrity_min_evidence
        contradicted = self._contradicted(view)
        if (weak and not state.gnss_fault_seen) or contradicted:
            verb = "contradicts" if contradicted else "no longer confirms"
            return (f"integrity: {len(window)} consistent GNSS fixes over {span:.1f} s, {gap:.0f} m "
                    f"from an estimate that cross-view {verb} (evidence "
                    f"{view.cross_view_evidence:.2f}): re-locked"), fit
        d_gnss = math.hypot(fit.displacement_e, fit.displacement_n)
        d_est_e, d_est_n = window[-1].estimate_e - window[0].estimate_e, window[-1].estimate_n - window[0].estimate_n
        d_est = math.hypot(d_est_e, d_est_n)
        if view.measured_speed_mps is not None:
            moved = view.measured_speed_mps * span
            if abs(d_gnss - moved) > max(3.0, 0.3 * moved):
                state.direction_alarm_since_s = None
                state.gnss_fault_seen = True
                return "", fit  # GNSS moved unlike the wheels: a ramping GNSS error
        off = math.degrees(abs(angle_diff(math.atan2(d_est_n, d_est_e), math.atan2(fit.displacement_n,
                                                                                   fit.displacement_e))))
        if not (d_gnss >= cfg.integrity_min_speed_mps * span and d_est > 0 and self._yaw_disagrees(view, fit)
                and off > cfg.integrity_yaw_tolerance_deg):
            state.direction_alarm_since_s = None
            return "", fit
        if state.direction_alarm_since_s is None:
            state.direction_alarm_since_s = fix.stamp_s
        if ((view.measured_speed_mps is None or state.gnss_fault_seen)
                and fix.stamp_s - state.direction_alarm_since_s < cfg.integrity_window_s):
            return "", fit  # the disagreement must outlast a multipath ramp (one more window)
        return (f"integrity: {len(window)} consistent GNSS fixes over {span:.1f} s, {gap:.0f} m from the "
                f"estimate, which moves {off:.0f} deg off their course over ground: re-locked"), fit

    def _contradicted(self, view: EstimateView) -> bool:
        """Cross-view's recent mean log-evidence is below integrity_contradict_evidence."""
        return view.cross_view_evidence is not None and view.cross_view_evidence < self.config.integrity_contradict_evidence

    def _yaw_disagrees(self, view: EstimateView, fit: TrackFit | None) -> bool:
        cfg = self.config
        if (fit is None or fit.speed_mps < cfg.integrity_min_speed_mps
                or view.speed_mps < 0.5 * cfg.integrity_min_speed_mps):
            return False
        return abs(angle_diff(view.yaw_enu_rad, fit.course_rad)) > math.radians(cfg.integrity_yaw_tolerance_deg)

    def _far_from_estimate(self, state: GateState, fix: GnssFix) -> bool:
        """Seed 001's test: farther than r_outlier = 3 (sigma_gps + sigma_est) + v dt."""
        t_ref, e_ref, n_ref, v_ref, spread_ref = state.reference
        r_outlier = self.config.outlier_sigmas * (fix.sigma_m + spread_ref) + v_ref * max(fix.stamp_s - t_ref, 0.0)
        return math.hypot(fix.east_m - e_ref, fix.north_m - n_ref) > r_outlier

    def _jumped_from_previous_fix(self, state: GateState, fix: GnssFix) -> bool:
        """Farther than 3 sigma_gps + v dt from the previous valid raw fix."""
        if state.last_fix is None:
            return False
        t_prev, e_prev, n_prev = state.last_fix
        if fix.stamp_s - t_prev > self.config.jump_test_max_gap_s:
            return False  # after a gap in the fixes, motion and jump cannot be told apart
        r_step = self.config.outlier_sigmas * fix.sigma_m + state.reference[3] * max(fix.stamp_s - t_prev, 0.0)
        return math.hypot(fix.east_m - e_prev, fix.north_m - n_prev) > r_step


__all__ = ["GnssDecision", "GnssFix", "GnssGate", "GateState", "EstimateView", "Verdict", "TrackFit", "fit_track"]
