"""Particle filter fusing cross-view likelihoods with GNSS, as in Sec. III-D of "Cross-View
Matching for Vehicle Localization by Learning Geographically Local Representations".

State and set-up (the paper's)
------------------------------
Each particle m holds x^[m] = (E, N, v, psi): easting and northing in the `map` frame (ENU
metres), forward speed v (m/s) and yaw psi (ENU, counter-clockwise from east, rad). The set
chi_t has M = 2000 particles by default.

Initialization: at the first valid GNSS fix z = (E_z, N_z) with reported 1-sigma sigma_gps,
    (E, N) ~ N(z, sigma_gps^2 I),   psi ~ U[-pi, pi),   v ~ U[0, 5] m/s.

Prediction over dt (constant velocity; Gaussian acceleration and steering noise). Speed and
yaw are random walks driven by white acceleration and yaw-rate noise of densities sigma_a,
sigma_omega (so the spread they add grows with sqrt(dt) whatever the update rate):
    v'   = | v + sigma_a sqrt(dt) n_a |
    psi' = psi + sigma_omega sqrt(dt) n_omega
    E'   = E + dt (v + v')/2 cos((psi + psi')/2) + sigma_p sqrt(dt) n_E
    N'   = N + dt (v + v')/2 sin((psi + psi')/2) + sigma_p sqrt(dt) n_N
with n ~ N(0, 1); sigma_p is a small position diffusion that keeps resampled copies apart.

Measurement model (Eq. 5). With pi(m) = (E, N) of particle m, the cross-view score
interpolated at the particle, normalized over the candidate area S_local, times the GNSS
Gaussian:
    w^[m] = exp(-d_{m,q}) / sum_{j in S_local} exp(-d_{j,q})
            * exp(-|pi(m) - pi(G_q,t)|^2 / (2 sigma_gps^2)),
and particles outside the circle |pi(m) - pi(G_q,t)| <= 3 sigma_gps are discarded (w = 0).
Here the cross-view term is the network's likelihood volume over (yaw, y, x) (see
`cvgl_ros.likelihood`): log-likelihood interpolated bilinearly in (x, y) and linearly in yaw
at the particle, normalized over the whole volume (the patch cut around the position prior
plays the role of S_local).

GNSS outlier rejection: a fix farther than
    r_outlier = 3 sigma_gps + v_{t-1} dt
from the previous estimate (E, N, v at the previous GNSS epoch, dt since then) is not used;
the filter then propagates its previous estimate (prediction only: the paper's substitute
fix would be the filter's own estimate, which carries no new information).

Output: the median of every state element over the particles (weighted median while the
weights are unequal; the yaw median is taken around the circular mean).

Beyond the paper (each a documented choice)
-------------------------------------------
* Asynchronous sensors: GNSS (~5 Hz) and cross-view results (~10 Hz) update the particles
  separately at their own stamps (the two factors of Eq. 5 multiply over time). The
  cross-view factor is a mixture with a uniform component of weight
  `cross_view_outlier_prob` (alpha), w_cv = (1 - alpha) p_cell(m) K H W + alpha, so one
  false peak cannot wipe out the particles at the true pose. Particles outside the volume
  get the volume's floor (its smallest value), i.e. about alpha.
* Systematic resampling when ESS = 1 / sum w^2 < M / 2 (not after every step).
* Outlier rejection, refined (see `update_gnss`). r_outlier also grows with the previous
  estimate's own spread, 3 sigma_gps + 3 sigma_est + v dt, and is not applied during
  `outlier_warmup_s` after a (re)initialization, when the speed is still unknown. A fix is
  *suspicious* when it is beyond r_outlier or when its 3-sigma circle would discard most
  of the particle weight (less than `gate_suspicious_weight` = 1/2 inside; in GNSS-only
  operation, where the particles are nothing but GNSS history: all of it). A suspicious
  fix is an outlier when GNSS *jumped*: it is also beyond 3 sigma_gps + v dt from the
  previous raw fix (unless that is older than `jump_test_max_gap_s`), or an earlier jump
  has not come back yet. A suspicious fix that continues the raw GNSS track smoothly means
  the estimate drifted away from GNSS (in GNSS-only mode, a yaw that lagged through a
  turn) or a slowly ramping multipath error: it is rejected while cross-view results hold
  the estimate (one within `cross_view_timeout_s`), otherwise used; when its circle holds
  no weight at all (< `gate_min_weight`) all weight has vanished and the particles are
  re-seeded around the fix (diagnostic `reseeds`). After `relock_after_s` of rejected fixes
  the filter re-seeds around GNSS anyway (`relocks`), so it can never lock itself out. A
  re-seed draws positions around the fix; half the particles keep the speed and yaw of the
  old ones, the other half are drawn as at initialization.
* Measurements are applied in stamp order: the filter keeps `history_s` (0.5 s) of
  measurements with a snapshot of the particles before each; one that arrives late but
  within that window is applied at its own stamp and the newer ones are re-applied on top.
  Older ones are dropped (`late_dropped`); a GNSS stamp more than `backwards_reset_s`
  behind the filter means time went backwards: the filter resets (`resets`) and
  re-initializes at that fix.
* NaN/Inf positions, NO_FIX and repeated stamps are ignored with a counter.
* GNSS-only mode (`use_cross_view=False`): the paper's "GPS" baseline.

Usage::

    pf = ParticleFilter(ParticleFilterConfig(), seed=0)
    pf.add_gnss(stamp_s, east_m, north_m, sigma_m, status_ok=True)   # -> GnssDecision
    pf.add_cross_view(stamp_s, volume)                               # a LikelihoodVolume
    est = pf.estimate()                                              # PoseEstimate
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import Enum

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.filter.resampling import effective_sample_size, systematic_resample
from cvgl_ros.geo.yaw import wrap_angle
from cvgl_ros.likelihood import LikelihoodVolume

E, N, V, YAW = 0, 1, 2, 3  # rows of the (4, M) particle array
TWO_PI = 2.0 * math.pi
UNINITIALIZED_VARIANCE = 1.0e12  # covariance diagonal of an estimate before initialization


@dataclass(frozen=True)
class ParticleFilterConfig:
    """Parameters; the defaults follow the paper where it gives a value."""

    num_particles: int = 2000                # M
    init_speed_max_mps: float = 5.0          # v ~ U[0, 5] m/s at initialization
    accel_noise_mps2: float = 2.0            # sigma_a, m/s^2 per sqrt(s)
    yaw_rate_noise_radps: float = 0.5        # sigma_omega, rad/s per sqrt(s)
    position_noise_mps: float = 0.3          # sigma_p, m per sqrt(s)
    max_speed_mps: float = 70.0              # speeds are clipped to this
    use_cross_view: bool = True              # False: the paper's GNSS-only baseline
    cross_view_outlier_prob: float = 0.05    # alpha of the cross-view mixture
    cross_view_timeout_s: float = 2.0        # a cross-view update this recent "holds" the estimate
    gate_sigmas: float = 3.0                 # particles outside gate_sigmas * sigma_gps are discarded
    gate_min_weight: float = 1e-3            # less weight than this inside the circle: "none"
    gate_suspicious_weight: float = 0.5      # less weight than this inside the circle: suspicious fix
    outlier_sigmas: float = 3.0              # r_outlier = outlier_sigmas * sigma_gps + v dt (+ spread)
    jump_test_max_gap_s: float = 1.0         # no jump test across a longer gap between valid fixes
    outlier_warmup_s: float = 3.0            # no outlier test this long after a (re)initialization
    relock_after_s: float = 10.0             # re-seed around GNSS after rejecting fixes this long
    default_gnss_sigma_m: float = 5.0        # used when a fix reports no (finite, positive) sigma
    min_gnss_sigma_m: float = 0.5            # reported sigmas are floored to this
    resample_ess_fraction: float = 0.5       # resample when ESS < fraction * M
    history_s: float = 0.5                   # late measurements within this are applied at their stamp
    backwards_reset_s: float = 1.0           # a GNSS stamp this far behind resets the filter

    def __post_init__(self):
        if not isinstance(self.num_particles, (int, np.integer)) or self.num_particles < 10:
            raise InputError(f"num_particles must be an integer >= 10, got {self.num_particles!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("num_particles", "use_cross_view"):
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InputError(f"particle filter {f.name} must be a finite number >= 0, got {value!r}")
        if not 0.0 < self.cross_view_outlier_prob < 1.0:
            raise InputError(f"cross_view_outlier_prob must be in (0, 1), got {self.cross_view_outlier_prob}")
        if not 0.0 < self.resample_ess_fraction <= 1.0:
            raise InputError(f"resample_ess_fraction must be in (0, 1], got {self.resample_ess_fraction}")
        for name in ("gate_sigmas", "outlier_sigmas", "default_gnss_sigma_m", "min_gnss_sigma_m"):
            if getattr(self, name) <= 0:
                raise InputError(f"particle filter {name} must be > 0")
        if self.backwards_reset_s < self.history_s:
            raise InputError("backwards_reset_s must be >= history_s")


class GnssDecision(str, Enum):
    """What `add_gnss` did with a fix."""

    INITIALIZED = "initialized"              # first valid fix: particles drawn around it
    ACCEPTED = "accepted"                    # used in the measurement update
    REJECTED_OUTLIER = "rejected_outlier"    # farther than r_outlier from the previous estimate
    REJECTED_GATE = "rejected_gate"          # no particle weight in its 3-sigma circle while cross-view holds
    RESEEDED = "reseeded"                    # all weight vanished: particles re-seeded around it
    RELOCKED = "relocked"                    # fixes rejected for relock_after_s: re-seeded around it
    RESET = "reset"                          # its stamp went back in time: filter reset, re-initialized
    IGNORED_INVALID = "ignored_invalid"      # NO_FIX, NaN or Inf position or stamp
    IGNORED_DUPLICATE = "ignored_duplicate"  # a fix with this stamp was already seen
    DROPPED_LATE = "dropped_late"            # older than the history window

    @property
    def used(self) -> bool:
        """True when the fix moved the particles toward it."""
        return self in (GnssDecision.INITIALIZED, GnssDecision.ACCEPTED, GnssDecision.RESEEDED,
                        GnssDecision.RELOCKED, GnssDecision.RESET)


@dataclass(frozen=True)
class PoseEstimate:
    """The filter output at `stamp_s`: medians (the paper's output) plus mean and covariance.

    Before initialization `initialized` is False, positions are 0 and the covariance
    diagonal is UNINITIALIZED_VARIANCE (never NaN).
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


@dataclass
class _Gnss:
    stamp_s: float
    east_m: float
    north_m: float
    sigma_m: float


@dataclass
class _CrossView:
    stamp_s: float
    volume: LikelihoodVolume
    log_normalizer: float


@dataclass
class _State:
    """Everything the filter changes when it applies a measurement (snapshotted for replays)."""

    particles: np.ndarray | None = None    # (4, M): E, N, v, yaw
    log_weights: np.ndarray | None = None  # (M,), logsumexp = 0
    uniform: bool = True                   # all weights equal (right after resampling)
    time_s: float | None = None            # stamp of the last applied measurement
    seeded_at_s: float | None = None       # last (re)initialization
    reference: tuple | None = None         # previous estimate for r_outlier: (t, E, N, v, spread)
    rejecting_since_s: float | None = None
    last_cross_view_s: float | None = None
    last_fix: tuple | None = None          # previous valid raw fix (t, E, N), used or not
    gnss_jumped: bool = False              # GNSS jumped away and has not come back yet

    @property
    def initialized(self) -> bool:
        return self.particles is not None

    def copy(self) -> "_State":
        out = _State(**{f.name: getattr(self, f.name) for f in fields(self)})
        if self.particles is not None:
            out.particles = self.particles.copy()
            out.log_weights = self.log_weights.copy()
        return out


@dataclass
class _Entry:
    stamp_s: float
    measurement: _Gnss | _CrossView
    before: _State = field(repr=False, default=None)


COUNTERS = (
    "gnss_initialized", "gnss_accepted", "gnss_rejected", "gnss_gate_rejected", "gnss_invalid",
    "gnss_duplicates", "cross_view_applied", "cross_view_ignored", "cross_view_duplicates",
    "late_applied", "late_dropped", "resets", "reseeds", "relocks", "resamples",
)


class ParticleFilter:
    """Particle filter over (E, N, v, yaw); see the module docstring for the maths."""

    def __init__(self, config: ParticleFilterConfig | None = None, seed: int = 0):
        self.config = config or ParticleFilterConfig()
        self.rng = np.random.default_rng(seed)
        self._state = _State()
        self._history: list[_Entry] = []
        self._replaying = False
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._last_reset_reason = ""
        self._last_reseed_reason = ""
        self._last_gnss_stamp_s: float | None = None
        m = self.config.num_particles
        self._log_uniform = -math.log(m)

    # -- initialize ----------------------------------------------------------------------

    def initialize(self, stamp_s: float, east_m: float, north_m: float, sigma_m: float) -> None:
        """Draw the particles around a fix: Gaussian position, uniform yaw, v ~ U[0, v_max]."""
        m = self.config.num_particles
        p = np.empty((4, m))
        p[E] = east_m + sigma_m * self.rng.standard_normal(m)
        p[N] = north_m + sigma_m * self.rng.standard_normal(m)
        p[V] = self.rng.uniform(0.0, self.config.init_speed_max_mps, m)
        p[YAW] = self.rng.uniform(-math.pi, math.pi, m)
        s = self._state
        s.particles, s.log_weights, s.uniform = p, np.full(m, self._log_uniform), True
        s.time_s = s.seeded_at_s = float(stamp_s)
        s.reference = (float(stamp_s), float(east_m), float(north_m), 0.5 * self.config.init_speed_max_mps, sigma_m)
        s.rejecting_since_s = None
        s.gnss_jumped = False

    def _reseed(self, fix: _Gnss, reason: str) -> None:
        """Positions around the fix; half the particles keep the old speeds and yaws."""
        s = self._state
        old = s.particles
        keep = self.rng.choice(old.shape[1], old.shape[1] // 2, p=self._weights())
        self.initialize(fix.stamp_s, fix.east_m, fix.north_m, fix.sigma_m)
        s.particles[V:, : len(keep)] = old[V:, keep]
        self._last_reseed_reason = reason

    # -- predict -------------------------------------------------------------------------

    def predict(self, dt_s: float) -> None:
        """Move every particle dt_s seconds forward with the noisy constant-velocity model."""
        if dt_s <= 0.0 or self._state.particles is None:
            return
        cfg = self.config
        p = self._state.particles
        m = p.shape[1]
        root_dt = math.sqrt(dt_s)
        noise = self.rng.standard_normal((4, m), dtype=np.float32)
        speed_new = np.abs(p[V] + (cfg.accel_noise_mps2 * root_dt) * noise[0])
        np.minimum(speed_new, cfg.max_speed_mps, out=speed_new)
        yaw_step = (cfg.yaw_rate_noise_radps * root_dt) * noise[1]
        yaw_mid = p[YAW] + 0.5 * yaw_step
        step = (0.5 * dt_s) * (p[V] + speed_new)
        p[E] += step * np.cos(yaw_mid) + (cfg.position_noise_mps * root_dt) * noise[2]
        p[N] += step * np.sin(yaw_mid) + (cfg.position_noise_mps * root_dt) * noise[3]
        p[V] = speed_new
        yaw = p[YAW]
        yaw += yaw_step
        yaw -= TWO_PI * np.floor((yaw + math.pi) * (1.0 / TWO_PI))

    # -- update --------------------------------------------------------------------------

    def update_gnss(self, fix: _Gnss) -> GnssDecision:
        """Outlier rejection, then the GNSS factor of Eq. 5 with the 3-sigma circle.

        A fix is suspicious when it lies farther than r_outlier from the previous estimate,
        or when its circle would discard most of the particle weight (less than
        `gate_suspicious_weight` inside) while cross-view results hold the estimate, or all
        of it (less than `gate_min_weight`) otherwise. A
        suspicious fix is an outlier if GNSS jumped: it is also farther than
        3 sigma_gps + v dt from the previous raw fix, or an earlier jump has not come back
        yet. A suspicious fix on a smooth continuation of the GNSS track means the estimate
        drifted away from GNSS: it is rejected while cross-view results hold the estimate,
        else used (re-seeding around it when the circle is empty).
        """
        cfg, s = self.config, self._state
        p = s.particles
        d2 = (p[E] - fix.east_m) ** 2 + (p[N] - fix.north_m) ** 2
        inside = d2 <= (cfg.gate_sigmas * fix.sigma_m) ** 2
        weight_inside = float(np.sum(self._weights()[inside]))
        empty = weight_inside < cfg.gate_min_weight
        held = self._cross_view_holds(fix.stamp_s)
        suspicious = (weight_inside < (cfg.gate_suspicious_weight if held else cfg.gate_min_weight)
                      or self._far_from_estimate(fix))
        jumped = self._jumped_from_previous_fix(fix)
        s.last_fix = (fix.stamp_s, fix.east_m, fix.north_m)
        if suspicious and not self._in_warmup(fix.stamp_s):
            if jumped or s.gnss_jumped:
                s.gnss_jumped = True
                return self._rejected(fix, GnssDecision.REJECTED_OUTLIER)
            if held:
                return self._rejected(fix, GnssDecision.REJECTED_GATE)
        s.gnss_jumped = False
        if empty:
            self._reseed(fix, f"no particle weight within {cfg.gate_sigmas:g} sigma of the GNSS fix at "
                              f"t={fix.stamp_s:.3f} s: re-seeded around it")
            self._count("reseeds")
            self._set_reference(fix.stamp_s)
            return GnssDecision.RESEEDED
        log_factor = d2 * (-0.5 / fix.sigma_m**2)
        log_factor[~inside] = -np.inf
        self._reweight(log_factor)
        s.rejecting_since_s = None
        self._set_reference(fix.stamp_s)
        return GnssDecision.ACCEPTED

    def _far_from_estimate(self, fix: _Gnss) -> bool:
        """The paper's test: farther than r_outlier = 3 sigma_gps + v dt (+ 3 sigma_est)."""
        cfg = self.config
        t_ref, e_ref, n_ref, v_ref, spread_ref = self._state.reference
        r_outlier = cfg.outlier_sigmas * (fix.sigma_m + spread_ref) + v_ref * max(fix.stamp_s - t_ref, 0.0)
        return math.hypot(fix.east_m - e_ref, fix.north_m - n_ref) > r_outlier

    def _jumped_from_previous_fix(self, fix: _Gnss) -> bool:
        """Farther than 3 sigma_gps + v dt from the previous valid raw fix."""
        s = self._state
        if s.last_fix is None:
            return False
        t_prev, e_prev, n_prev = s.last_fix
        if fix.stamp_s - t_prev > self.config.jump_test_max_gap_s:
            return False  # after a gap in the fixes, motion and jump cannot be told apart
        r_step = self.config.outlier_sigmas * fix.sigma_m + s.reference[3] * max(fix.stamp_s - t_prev, 0.0)
        return math.hypot(fix.east_m - e_prev, fix.north_m - n_prev) > r_step

    def _rejected(self, fix: _Gnss, decision: GnssDecision) -> GnssDecision:
        """A rejected fix: propagate the previous estimate, unless rejecting for too long."""
        s = self._state
        if s.rejecting_since_s is None:
            s.rejecting_since_s = fix.stamp_s
        if fix.stamp_s - s.rejecting_since_s >= self.config.relock_after_s:
            self._reseed(fix, f"GNSS fixes rejected for {fix.stamp_s - s.rejecting_since_s:.1f} s: re-seeded around GNSS")
            self._count("relocks")
            self._set_reference(fix.stamp_s)
            return GnssDecision.RELOCKED
        self._set_reference(fix.stamp_s)
        return decision

    def _in_warmup(self, stamp_s: float) -> bool:
        return stamp_s - self._state.seeded_at_s < self.config.outlier_warmup_s

    def _cross_view_holds(self, stamp_s: float) -> bool:
        last = self._state.last_cross_view_s
        return last is not None and stamp_s - last <= self.config.cross_view_timeout_s

    def _set_reference(self, stamp_s: float) -> None:
        """Remember the estimate at this GNSS epoch for the next outlier test.

        Weighted means (O(M), no sorting) stand in for the medians here; `spread` is the
        RMS of the east and north standard deviations.
        """
        p, w = self._state.particles, self._weights()
        mean_e, mean_n, mean_v = _wsum(p[E], w), _wsum(p[N], w), _wsum(p[V], w)
        var = _wsum((p[E] - mean_e) ** 2 + (p[N] - mean_n) ** 2, w)
        self._state.reference = (stamp_s, float(mean_e), float(mean_n), float(mean_v), math.sqrt(0.5 * max(var, 0.0)))

    def update_cross_view(self, volume: LikelihoodVolume, log_normalizer: float | None = None) -> None:
        """The cross-view factor of Eq. 5, as a mixture with a uniform outlier component."""
        cfg, s = self.config, self._state
        p = s.particles
        if log_normalizer is None:
            log_normalizer = volume.log_normalizer
        ll = volume.interpolate(p[E], p[N], p[YAW])
        # log((1 - alpha) * p_cell * K*H*W + alpha), p_cell = exp(ll - log_normalizer)
        ll += math.log1p(-cfg.cross_view_outlier_prob) - log_normalizer + math.log(volume.log_likelihood.size)
        self._reweight(np.logaddexp(ll, math.log(cfg.cross_view_outlier_prob), out=ll))

    def _reweight(self, log_factor: np.ndarray) -> None:
        """Multiply the weights by exp(log_factor), renormalize, resample when ESS is low."""
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
        noise-free motion model. An earlier stamp gives the posterior as it stood at that
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
        state = s if stamp_s > s.time_s else self._posterior_at(float(stamp_s))
        if state is None or state.particles is None:
            return self._estimate_now()
        if stamp_s == state.time_s:
            return self._estimate_of(state, state.time_s)
        dt = float(stamp_s) - state.time_s
        p = state.particles.copy()
        p[E] += dt * p[V] * np.cos(p[YAW])
        p[N] += dt * p[V] * np.sin(p[YAW])
        return self._estimate_of(state, float(stamp_s), p)

    def _posterior_at(self, stamp_s: float) -> _State | None:
        """The state right after the last measurement at or before `stamp_s` (None when the
        history no longer reaches back that far)."""
        history = self._history
        i = next((k for k in range(len(history) - 1, -1, -1) if history[k].stamp_s <= stamp_s), None)
        if i is None:
            return None
        return history[i + 1].before if i + 1 < len(history) else self._state

    def _estimate_now(self) -> PoseEstimate:
        return self._estimate_of(self._state, self._state.time_s)

    def _estimate_of(self, state: _State, stamp_s: float, particles: np.ndarray | None = None) -> PoseEstimate:
        p = state.particles if particles is None else particles
        w = None if state.uniform else _normalized(state.log_weights)
        weights = w if w is not None else np.full(p.shape[1], 1.0 / p.shape[1])
        mean_e = _wsum(p[E], weights)
        mean_n = _wsum(p[N], weights)
        mean_yaw = float(wrap_angle(math.atan2(_wsum(np.sin(p[YAW]), weights), _wsum(np.cos(p[YAW]), weights))))
        dev = np.stack([p[E] - mean_e, p[N] - mean_n, wrap_angle(p[YAW] - mean_yaw)])
        weighted = dev * weights
        cov = np.array([[_wsum(weighted[i], dev[j]) for j in range(3)] for i in range(3)])
        median_yaw = float(wrap_angle(mean_yaw + _weighted_median(dev[2], w)))
        return PoseEstimate(
            stamp_s=float(stamp_s),
            east_m=_weighted_median(p[E], w), north_m=_weighted_median(p[N], w),
            yaw_enu_rad=median_yaw, speed_mps=_weighted_median(p[V], w),
            covariance_3x3=0.5 * (cov + cov.T), mean_east_m=mean_e, mean_north_m=mean_n,
            mean_yaw_enu_rad=mean_yaw, ess=effective_sample_size(weights), initialized=True,
        )

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
        fix = _Gnss(float(stamp_s), float(east_m), float(north_m), max(float(sigma_m), cfg.min_gnss_sigma_m))
        s = self._state
        if fix.stamp_s == self._last_gnss_stamp_s or any(
                isinstance(e.measurement, _Gnss) and e.stamp_s == fix.stamp_s for e in self._history):
            self._count("gnss_duplicates")
            return GnssDecision.IGNORED_DUPLICATE
        self._last_gnss_stamp_s = fix.stamp_s
        if not s.initialized:
            self.initialize(fix.stamp_s, fix.east_m, fix.north_m, fix.sigma_m)
            self._history = [_Entry(fix.stamp_s, fix, _State())]
            self._count("gnss_initialized")
            return GnssDecision.INITIALIZED
        lag = s.time_s - fix.stamp_s
        if lag > cfg.backwards_reset_s:
            self.reset(f"GNSS stamp {fix.stamp_s:.3f} s is {lag:.3f} s behind the filter time: time went backwards")
            self.initialize(fix.stamp_s, fix.east_m, fix.north_m, fix.sigma_m)
            self._history = [_Entry(fix.stamp_s, fix, _State())]
            return GnssDecision.RESET
        return self._ingest(_Entry(fix.stamp_s, fix))

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
        if any(isinstance(e.measurement, _CrossView) and e.stamp_s == stamp_s for e in self._history):
            self._count("cross_view_duplicates")
            return False
        return self._ingest(_Entry(float(stamp_s), _CrossView(float(stamp_s), volume, volume.log_normalizer))) is not None

    def _ingest(self, entry: _Entry):
        """Apply a measurement at its stamp: directly when it is the newest, else by replay."""
        s = self._state
        if entry.stamp_s >= s.time_s:
            entry.before = s.copy()
            result = self._apply(entry.measurement)
            self._history.append(entry)
            self._trim_history()
            return result
        if s.time_s - entry.stamp_s > self.config.history_s or not self._history:
            self._count("late_dropped")
            return GnssDecision.DROPPED_LATE if isinstance(entry.measurement, _Gnss) else None
        # Rewind to just before the first newer measurement, apply this one, re-apply the rest.
        later = next(i for i, e in enumerate(self._history) if e.stamp_s > entry.stamp_s)
        self._state = self._history[later].before
        entry.before = self._state.copy()
        result = self._apply(entry.measurement)
        self._count("late_applied")
        self._replaying = True
        try:
            for e in self._history[later:]:
                e.before = self._state.copy()
                self._apply(e.measurement)
        finally:
            self._replaying = False
        self._history.insert(later, entry)
        return result

    def _apply(self, m: _Gnss | _CrossView):
        s = self._state
        if s.particles is None:  # rewound to before the initialization
            if isinstance(m, _Gnss):
                self.initialize(m.stamp_s, m.east_m, m.north_m, m.sigma_m)
                return GnssDecision.INITIALIZED
            return None
        self.predict(m.stamp_s - s.time_s)
        s.time_s = max(s.time_s, m.stamp_s)
        if isinstance(m, _Gnss):
            decision = self.update_gnss(m)
            self._count({GnssDecision.ACCEPTED: "gnss_accepted", GnssDecision.REJECTED_OUTLIER: "gnss_rejected",
                         GnssDecision.REJECTED_GATE: "gnss_gate_rejected"}.get(decision))
            return decision
        self.update_cross_view(m.volume, m.log_normalizer)
        s.last_cross_view_s = m.stamp_s
        self._count("cross_view_applied")
        return True

    def _trim_history(self) -> None:
        horizon = self._state.time_s - self.config.history_s
        drop = 0
        while drop < len(self._history) - 1 and self._history[drop].stamp_s < horizon:
            drop += 1
        if drop:
            del self._history[:drop]

    def reset(self, reason: str = "reset requested") -> None:
        """Forget everything (e.g. the ROS clock jumped back); the next valid fix initializes."""
        self._state = _State()
        self._history = []
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
        return self._state.particles.T

    @property
    def weights(self) -> np.ndarray:
        """(M,) normalized weights."""
        return np.empty(0) if self._state.particles is None else self._weights()

    @property
    def diagnostics(self) -> dict:
        """Event counters plus the last reset / re-seed reasons."""
        return dict(self._counters, last_reset_reason=self._last_reset_reason,
                    last_reseed_reason=self._last_reseed_reason)

    def _count(self, name: str | None) -> None:
        if name is not None and not self._replaying:
            self._counters[name] += 1


def _normalized(log_weights: np.ndarray) -> np.ndarray:
    w = np.exp(log_weights)
    return w / w.sum()


def _wsum(values: np.ndarray, weights: np.ndarray, scale: float = 1.0) -> float:
    """sum(values * weights), without BLAS: a multi-threaded BLAS dot spins badly on a busy
    vehicle computer, and these vectors are too short to gain from it."""
    return float(np.multiply(values, weights).sum()) * scale


def _weighted_median(values: np.ndarray, weights: np.ndarray | None) -> float:
    """Median of `values`; weighted when `weights` (normalized) is given."""
    if weights is None:
        return float(np.median(values))
    order = np.argsort(values)
    cdf = np.cumsum(weights[order])
    i = int(np.searchsorted(cdf, 0.5 * cdf[-1]))
    return float(values[order[min(i, len(order) - 1)]])
