"""GNSS receiver error models for simulated drives: `clean`, `open_sky`, `urban_canyon`, `multipath`.

`GnssModel.from_name(name, seed).simulate(trajectory, rate_hz, sky_openness)` samples the
true trajectory at `rate_hz` and returns a `GnssTrack`: measured east/north (NaN where the
receiver has NO_FIX), the NavSatStatus code, the 1-sigma horizontal error the receiver
*reports* (what goes into NavSatFix.position_covariance), and the truth. Errors are
horizontal (east, north); the simulated receiver reports the true altitude.

The error of a fix is the sum of

* white noise, per axis N(0, sigma_w^2), independent between fixes;
* a first-order Gauss-Markov bias per axis, b_{k+1} = phi b_k + sqrt(1 - phi^2) w_k with
  phi = exp(-dt / tau) and unit-variance w_k, scaled by sigma_b (so its stationary standard
  deviation is sigma_b, its correlation time tau);
* (urban_canyon) multipath bursts: onsets are a Poisson process; each burst offsets the fix
  by a magnitude drawn in [10, 50] m in a random direction for [1, 10] s, with 0.3 s ramps;
* (urban_canyon) NO_FIX drop-outs: Poisson onsets, lasting [1, 5] s.

`sky_openness(e, n) -> [0, 1]` (1 = open sky, 0 = deep canyon; the world provides it from
building heights beside the road) drives urban_canyon: with c = 1 - openness,
sigma_w, sigma_b, the burst rate and the drop-out rate grow linearly in c from their
open-sky to their canyon values below. Without a callable the openness is the constant
`default_openness`.

Parameters (per axis sigmas, metres; rates per second):

=================  ===========  ==============================================
parameter          open_sky     urban_canyon (openness 1 -> 0)
=================  ===========  ==============================================
sigma_w            1.5          2.1 -> 3.5   (horizontal RMS sqrt(2) sigma_w: 3 -> 5 m)
sigma_b            1.0          1.0 -> 2.5
tau                60 s         30 s
burst rate         0            0.0005 -> 0.005 /s   (magnitude 10-50 m, 1-10 s)
drop-out rate      0            0.0005 -> 0.006 /s   (1-5 s)
default_openness   --           0.5
reported sigma     sqrt(sigma_w^2 + sigma_b^2) x lognormal(0, 0.15), per fix
=================  ===========  ==============================================

The receiver's reported sigma never sees the multipath bursts (it grows by only 20 % of
its value during one), so during a burst it understates the error several times over, as
real receivers do. `clean` reports the true position with reported sigma 0.1 m.

Target and measurement. On Oxford RobotCar, Table III of "Cross-View Matching for Vehicle
Localization by Learning Geographically Local Representations" gives for GPS alone (its
"GPS" row, the particle filter fed by the receiver only) mean 4.60 m, median 3.95 m,
90 % 8.16 m, 95 % 10.22 m, 99 % 20.20 m over three test traversals; the text quotes a raw
mean of ~3.7 m on the test traversals and 13 m on the validation one. urban_canyon at
the default openness, 5 Hz, pooled over 1000 drives of 300 s (seeds 0-999, city-block
loop, 83 h), gives mean 4.51 m, median 3.94 m, 90 % 7.32 m, 95 % 8.52 m, 99 % 20.4 m, with
1.0 % of epochs NO_FIX (per-drive means 3.8-7.8 m: a drive with several bursts is worse,
like the paper's 13 m validation traversal). The 99 % point falls where the bursts begin
(they cover ~1.5 % of the time), so over a short drive it swings widely: 12-30 m over 40
drives. p90/p95 sit a little below the paper's because, at a constant openness, the
non-burst error is Gaussian; along a real street the openness varies and fattens that
tail. open_sky gives mean 2.25 m, median 2.11 m, 99 % 5.5 m.
`error_stats()` computes these numbers for any track.

`multipath` is the harsh profile of the fleet accuracy benchmark (`cvgl_ros.evaluation.fleet`):
urban_canyon's errors plus

* long multipath bias episodes: the fix follows a reflected signal for 5-30 s (uniform),
  offset by 20-60 m (uniform) in one direction, ramping in and out over 2 s. Episodes follow
  one another with quiet gaps drawn in [30, 90] s (the first after [5, 40] s), so every
  3-minute drive has at least one and about a fifth of the time is in one. The reported
  sigma grows by only 20 % during an episode: the covariance lies, understating the error
  4-20 times;
* NO_FIX gaps of 3-30 s (log-uniform: median 9.5 s) at intersections: at each turn of the
  drive (`cvgl_ros.sim.trajectory.turn_times_s`) that comes at least 20 s after the previous
  gap ended, a gap starts with probability 0.35 (and at the middle turn when none did); the
  turn falls in the last half of the gap (the receiver comes back just after the car
  turned, the case that loses a filter that dead-reckons straight on).

The episodes and the intersection gaps draw from the random stream after everything
urban_canyon draws, so the two profiles share the same base errors for a seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.signal import lfilter

from cvgl_ros.errors import InputError
from cvgl_ros.sim.trajectory import Trajectory

# NavSatStatus codes (sensor_msgs/NavSatStatus).
STATUS_NO_FIX = -1
STATUS_FIX = 0

MODEL_NAMES = ("clean", "open_sky", "urban_canyon", "multipath")
BURST_RAMP_S = 0.3
BURST_SIGMA_GROWTH = 0.2  # the reported sigma grows by only this fraction during a burst
CLEAN_SIGMA_M = 0.1


@dataclass(frozen=True)
class GnssParams:
    """One error model; `*_open` at sky openness 1, `*_canyon` at openness 0."""

    name: str
    white_sigma_open_m: float = 0.0
    white_sigma_canyon_m: float = 0.0
    bias_sigma_open_m: float = 0.0
    bias_sigma_canyon_m: float = 0.0
    bias_tau_s: float = 60.0
    burst_rate_open_per_s: float = 0.0
    burst_rate_canyon_per_s: float = 0.0
    burst_magnitude_m: tuple[float, float] = (10.0, 50.0)
    burst_duration_s: tuple[float, float] = (1.0, 10.0)
    dropout_rate_open_per_s: float = 0.0
    dropout_rate_canyon_per_s: float = 0.0
    dropout_duration_s: tuple[float, float] = (1.0, 5.0)
    reported_sigma_jitter: float = 0.15  # lognormal sigma of the receiver's own sigma estimate
    default_openness: float = 1.0
    # multipath bias episodes (none when episode_gap_s is None): quiet gap before each one
    episode_first_s: tuple[float, float] = (5.0, 40.0)
    episode_gap_s: tuple[float, float] | None = None
    episode_magnitude_m: tuple[float, float] = (20.0, 60.0)
    episode_duration_s: tuple[float, float] = (5.0, 30.0)
    episode_ramp_s: float = 2.0
    # NO_FIX gaps at turns (intersections)
    turn_gap_probability: float = 0.0
    turn_gap_s: tuple[float, float] = (3.0, 30.0)
    turn_gap_spacing_s: float = 20.0  # a gap only this long after the previous one ended


PRESETS: dict[str, GnssParams] = {
    "clean": GnssParams("clean"),
    "open_sky": GnssParams(
        "open_sky", white_sigma_open_m=1.5, white_sigma_canyon_m=1.5,
        bias_sigma_open_m=1.0, bias_sigma_canyon_m=1.0, bias_tau_s=60.0,
    ),
    "urban_canyon": GnssParams(
        "urban_canyon", white_sigma_open_m=3.0 / math.sqrt(2.0), white_sigma_canyon_m=5.0 / math.sqrt(2.0),
        bias_sigma_open_m=1.0, bias_sigma_canyon_m=2.5, bias_tau_s=30.0,
        burst_rate_open_per_s=0.0005, burst_rate_canyon_per_s=0.005,
        dropout_rate_open_per_s=0.0005, dropout_rate_canyon_per_s=0.006,
        default_openness=0.5,
    ),
}
PRESETS["multipath"] = GnssParams(**{**PRESETS["urban_canyon"].__dict__, "name": "multipath",
                                     "episode_gap_s": (30.0, 90.0), "turn_gap_probability": 0.35})


@dataclass(frozen=True)
class GnssTrack:
    """Simulated receiver output at the GNSS rate (ENU metres; NaN position where NO_FIX)."""

    t_s: np.ndarray
    east_m: np.ndarray
    north_m: np.ndarray
    status: np.ndarray  # NavSatStatus codes: STATUS_FIX or STATUS_NO_FIX
    reported_sigma_m: np.ndarray  # receiver's 1-sigma per axis (NaN where NO_FIX)
    true_east_m: np.ndarray
    true_north_m: np.ndarray
    in_burst: np.ndarray  # bool, a multipath burst is active (diagnostic, not in the bag)

    def __len__(self) -> int:
        return len(self.t_s)

    @property
    def valid(self) -> np.ndarray:
        return self.status != STATUS_NO_FIX

    @property
    def error_m(self) -> np.ndarray:
        """Horizontal error of every fix (NaN where NO_FIX)."""
        return np.hypot(self.east_m - self.true_east_m, self.north_m - self.true_north_m)

    def error_stats(self) -> dict:
        """Raw error statistics over valid fixes, as Table III of the RobotCar particle-filter paper."""
        err = self.error_m[self.valid]
        stats = {"n_fixes": int(err.size), "n_epochs": int(len(self)),
                 "no_fix_fraction": float(1.0 - err.size / max(len(self), 1))}
        if err.size == 0:
            return stats | {k: math.nan for k in ("mean_m", "p50_m", "p90_m", "p95_m", "p99_m", "max_m")}
        p50, p90, p95, p99 = np.percentile(err, [50, 90, 95, 99])
        return stats | {"mean_m": float(err.mean()), "p50_m": float(p50), "p90_m": float(p90),
                        "p95_m": float(p95), "p99_m": float(p99), "max_m": float(err.max())}


@dataclass(frozen=True)
class GnssOffset:
    """A fault injected on top of a profile: every fix in [start_s, end_s) of the drive is moved
    by `distance_m` along `bearing_deg` (ENU, counter-clockwise from east), the reported sigma
    left as the receiver gave it (a receiver locked onto a reflection does not know). The
    relocalization trials of the coarse stage use it (GNSS 150 m off for 60 s)."""

    distance_m: float
    bearing_deg: float
    start_s: float = 0.0
    end_s: float = math.inf

    def __post_init__(self):
        values = (self.distance_m, self.bearing_deg, self.start_s)
        if not all(math.isfinite(v) for v in values) or self.distance_m < 0 or not self.end_s > self.start_s:
            raise InputError(f"GNSS offset {self.distance_m} m at {self.bearing_deg} deg over [{self.start_s}, "
                             f"{self.end_s}) s: need a finite distance >= 0 and a window end > start")

    def apply(self, track: "GnssTrack") -> "GnssTrack":
        from dataclasses import replace

        t = track.t_s - track.t_s[0] if len(track) else track.t_s
        inside = (t >= self.start_s) & (t < self.end_s)
        bearing = math.radians(self.bearing_deg)
        return replace(track, east_m=np.where(inside, track.east_m + self.distance_m * math.cos(bearing), track.east_m),
                       north_m=np.where(inside, track.north_m + self.distance_m * math.sin(bearing), track.north_m))


def _events(rng: np.random.Generator, t: np.ndarray, rate: np.ndarray, duration_s: tuple[float, float]):
    """Poisson onsets with a time-varying rate (per epoch), each with a uniform duration."""
    dt = np.diff(t, append=t[-1] + (t[-1] - t[-2] if len(t) > 1 else 1.0))
    onsets = np.flatnonzero(rng.uniform(size=len(t)) < 1.0 - np.exp(-rate * dt))
    return [(t[i], float(rng.uniform(*duration_s))) for i in onsets]


def _bias_episodes(rng: np.random.Generator, t: np.ndarray, p: GnssParams) -> tuple[np.ndarray, np.ndarray]:
    """Long multipath bias episodes (module docstring): (n, 2) offsets and their 0-1 envelope."""
    offset = np.zeros((len(t), 2))
    envelope = np.zeros(len(t))
    start = float(t[0]) + float(rng.uniform(*p.episode_first_s))
    while start < t[-1]:
        length = float(rng.uniform(*p.episode_duration_s))
        magnitude = float(rng.uniform(*p.episode_magnitude_m))
        angle = float(rng.uniform(-math.pi, math.pi))
        ramp = min(p.episode_ramp_s, length / 2.0)
        rel = t - start
        w = np.clip(np.minimum(rel, length - rel) / ramp, 0.0, 1.0)
        offset += (w * magnitude)[:, None] * np.array([math.cos(angle), math.sin(angle)])
        envelope = np.maximum(envelope, w)
        start += length + float(rng.uniform(*p.episode_gap_s))
    return offset, envelope


def _turn_gaps(rng: np.random.Generator, t: np.ndarray, trajectory: Trajectory, p: GnssParams) -> np.ndarray:
    """NO_FIX gaps at the drive's turns (module docstring): a bool mask over the epochs."""
    from cvgl_ros.sim.trajectory import turn_times_s

    no_fix = np.zeros(len(t), dtype=bool)
    turns = turn_times_s(trajectory)
    free_from = -math.inf
    log_range = np.log(p.turn_gap_s)

    def gap_at(turn: float) -> tuple[float, float]:
        length = float(np.exp(rng.uniform(*log_range)))
        return turn - length * float(rng.uniform(0.5, 1.0)), length

    for turn in turns:
        if rng.uniform() >= p.turn_gap_probability:
            continue
        start, length = gap_at(turn)
        if start < free_from:
            continue
        no_fix |= (t >= start) & (t < start + length)
        free_from = start + length + p.turn_gap_spacing_s
    if not no_fix.any() and len(turns):
        start, length = gap_at(float(turns[len(turns) // 2]))
        no_fix |= (t >= start) & (t < start + length)
    return no_fix


class GnssModel:
    """A GNSS receiver error model; `simulate` is deterministic in the model's seed."""

    def __init__(self, params: GnssParams, seed: int = 0):
        self.params = params
        self.seed = int(seed)

    @classmethod
    def from_name(cls, name: str, seed: int = 0) -> "GnssModel":
        if name not in PRESETS:
            raise InputError(f"unknown GNSS model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
        return cls(PRESETS[name], seed)

    @property
    def name(self) -> str:
        return self.params.name

    def simulate(self, trajectory: Trajectory, rate_hz: float,
                 sky_openness: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> GnssTrack:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise InputError(f"GNSS rate must be > 0 Hz, got {rate_hz}")
        p = self.params
        rng = np.random.default_rng(self.seed)
        t0 = float(trajectory.t_s[0])
        n = int(math.floor(trajectory.duration_s * rate_hz + 1e-9)) + 1
        t = t0 + np.arange(n) / float(rate_hz)
        truth = trajectory.sample(t)
        e_true, n_true = truth.east_m, truth.north_m

        if p.name == "clean":
            return GnssTrack(t, e_true.copy(), n_true.copy(), np.full(n, STATUS_FIX, dtype=np.int8),
                             np.full(n, CLEAN_SIGMA_M), e_true, n_true, np.zeros(n, dtype=bool))

        if sky_openness is None:
            openness = np.full(n, p.default_openness)
        else:
            openness = np.broadcast_to(np.asarray(sky_openness(e_true, n_true), dtype=float), (n,)).copy()
            if not np.all(np.isfinite(openness)):
                raise InputError("sky_openness returned a non-finite value")
            openness = np.clip(openness, 0.0, 1.0)
        canyon = 1.0 - openness

        def lerp(open_value, canyon_value):
            return open_value + (canyon_value - open_value) * canyon

        white_sigma = lerp(p.white_sigma_open_m, p.white_sigma_canyon_m)
        bias_sigma = lerp(p.bias_sigma_open_m, p.bias_sigma_canyon_m)

        # Gauss-Markov bias (unit variance, correlation time tau), scaled by the local sigma_b.
        phi = math.exp(-1.0 / (rate_hz * p.bias_tau_s))
        drive = rng.standard_normal((n, 2)) * math.sqrt(1.0 - phi * phi)
        drive[0] = rng.standard_normal(2)  # start in the stationary distribution
        unit = lfilter([1.0], [1.0, -phi], drive, axis=0)
        error = unit * bias_sigma[:, None] + rng.standard_normal((n, 2)) * white_sigma[:, None]

        # Multipath bursts: an offset of 10-50 m in one direction with short ramps.
        envelope = np.zeros(n)
        burst = np.zeros((n, 2))
        for start, length in _events(rng, t, lerp(p.burst_rate_open_per_s, p.burst_rate_canyon_per_s), p.burst_duration_s):
            magnitude = rng.uniform(*p.burst_magnitude_m)
            angle = rng.uniform(-math.pi, math.pi)
            ramp = min(BURST_RAMP_S, length / 2.0)
            rel = t - start
            w = np.clip(np.minimum(rel, length - rel) / ramp, 0.0, 1.0)
            burst += (w * magnitude)[:, None] * np.array([math.cos(angle), math.sin(angle)])
            envelope = np.maximum(envelope, w)
        error += burst

        no_fix = np.zeros(n, dtype=bool)
        for start, length in _events(rng, t, lerp(p.dropout_rate_open_per_s, p.dropout_rate_canyon_per_s), p.dropout_duration_s):
            no_fix |= (t >= start) & (t < start + length)

        base_sigma = np.sqrt(white_sigma**2 + bias_sigma**2)
        reported = base_sigma * np.exp(rng.normal(0.0, p.reported_sigma_jitter, n)) * (1.0 + BURST_SIGMA_GROWTH * envelope)
        if p.episode_gap_s is not None:
            episode, envelope_ep = _bias_episodes(rng, t, p)
            error += episode
            reported *= 1.0 + BURST_SIGMA_GROWTH * np.maximum(envelope_ep - envelope, 0.0)
            envelope = np.maximum(envelope, envelope_ep)
        if p.turn_gap_probability > 0:
            no_fix |= _turn_gaps(rng, t, trajectory, p)
        east = e_true + error[:, 0]
        north = n_true + error[:, 1]
        east[no_fix] = np.nan
        north[no_fix] = np.nan
        reported[no_fix] = np.nan
        status = np.where(no_fix, STATUS_NO_FIX, STATUS_FIX).astype(np.int8)
        return GnssTrack(t, east, north, status, reported, e_true, n_true, envelope > 0)
