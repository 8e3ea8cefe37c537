"""When the coarse stage (retrieval on a satellite descriptor grid, seed 001 Sec. III-D) runs,
and what the cross-view node computes for it; ROS-free.

The dense pose network searches a patch of +-E around its prior, E = cells * cell_m / 2 (the
card's volume extent: 20.8 m for the shipped model). It cannot find a car whose prior is
farther off than that. The coarse stage can: it compares the frame's descriptor with every
grid cell in a circle of radius circle_sigmas * sigma around the prior, at a fraction of the
dense network's cost per cell. `CoarseStage.decide` says whether it runs, and why:

1. No estimate yet: on ("no estimate yet").
2. The integrity checks say the estimate is lost (an integrity re-lock not yet confirmed by
   cross-view, or a prior taken from GNSS because the filter is far from it): on.
3. An unresolved GNSS disagreement larger than E (the filter's protection-level term g): on.
4. The position uncertainty R = sigmas * sigma_major (sigma_major: the square root of the
   larger eigenvalue of the position covariance; NaN counts as unknown) larger than E: on.
5. Already on and R still above release_fraction * E (hysteresis: no flapping at the edge): on.
6. Otherwise off: the dense patch covers the uncertainty; the dense network has taken over
   ("found" when this ends a search).

Both nodes decide with what they know: the particle-filter node with its own estimate and
gate (and fuses /cvgl/retrieval only while on); the cross-view node with the filter's pose
on /cvgl/pose and its prior's source (and computes /cvgl/retrieval only while on).

`CoarseSearch` (the cross-view node's side): the frame's ground descriptor (ONNX Runtime,
`cvgl_ros.retrieval.encoders`; its sectors are absolute bearings, so it needs a yaw: the
prior's, else the filter's newest while its 1-sigma is at most `yaw_max_std_deg`; no frame is
searched without either: a bearing drawn from the filter's initial uniform yaw would be
evidence against the true place as often as for it), the grid's
cells in the circle of radius circle_sigmas * max(sigma_gnss, sigma_filter) around the prior,
at most `max_cells` of them (the nearest), and their scores e^{-d} (`cvgl_ros.retrieval.index`), as `GridScores`.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.filter.measurements import GridScores

DATUM_TOLERANCE_M = 0.01


@dataclass(frozen=True)
class CoarseInputs:
    """What the decision reads. sigma_m: 1-sigma of the position's major axis (NaN: unknown)."""

    initialized: bool
    sigma_m: float = math.nan
    disagreement_m: float = 0.0
    integrity_alarm: str = ""


@dataclass(frozen=True)
class CoarseDecision:
    run: bool
    reason: str


def position_sigma_m(cov_2x2) -> float:
    """sqrt of the larger eigenvalue of a 2x2 position covariance; NaN when not finite."""
    cov = np.asarray(cov_2x2, dtype=np.float64)
    if cov.shape != (2, 2) or not np.isfinite(cov).all():
        return math.nan
    return math.sqrt(max(float(np.linalg.eigvalsh(0.5 * (cov + cov.T))[-1]), 0.0))


class CoarseStage:
    """The decision of the module docstring. `half_extent_m`: E (None: no dense patch known
    yet, e.g. before the first likelihood; the coarse stage then runs)."""

    def __init__(self, half_extent_m: float | None, sigmas: float = 3.0, release_fraction: float = 0.8):
        if not (math.isfinite(sigmas) and sigmas > 0 and 0 < release_fraction <= 1):
            raise InputError(f"coarse stage: sigmas {sigmas} must be > 0, release_fraction {release_fraction} in (0, 1]")
        self.half_extent_m = None
        self.set_half_extent(half_extent_m)
        self.sigmas, self.release_fraction = float(sigmas), float(release_fraction)
        self.active = False
        self.last = CoarseDecision(False, "not decided yet")

    def set_half_extent(self, half_extent_m: float | None) -> None:
        if half_extent_m is not None and not (math.isfinite(half_extent_m) and half_extent_m > 0):
            raise InputError(f"dense patch half-extent {half_extent_m} m must be a positive number")
        self.half_extent_m = None if half_extent_m is None else float(half_extent_m)

    def decide(self, inputs: CoarseInputs) -> CoarseDecision:
        run, reason = self._rule(inputs)
        if not run and self.active:
            reason = f"found: {reason}"
        self.active = run
        self.last = CoarseDecision(run, reason)
        return self.last

    def _rule(self, x: CoarseInputs) -> tuple[bool, str]:
        extent = self.half_extent_m
        if not x.initialized:
            return True, "no estimate yet"
        if x.integrity_alarm:
            return True, f"estimate lost: {x.integrity_alarm}"
        if extent is None:
            return True, "no dense patch yet (no likelihood seen)"
        if math.isfinite(x.disagreement_m) and x.disagreement_m > extent:
            return True, f"GNSS disagrees with the estimate by {x.disagreement_m:.1f} m > dense patch +-{extent:.1f} m"
        if not math.isfinite(x.sigma_m):
            return True, "position uncertainty unknown"
        radius = self.sigmas * x.sigma_m
        if radius > extent:
            return True, f"{self.sigmas:g} sigma = {radius:.1f} m > dense patch +-{extent:.1f} m"
        if self.active and radius > self.release_fraction * extent:
            return True, (f"still searching: {self.sigmas:g} sigma = {radius:.1f} m > "
                          f"{self.release_fraction:g} x dense patch +-{extent:.1f} m")
        return False, f"dense patch +-{extent:.1f} m covers {self.sigmas:g} sigma = {radius:.1f} m"


class CoarseSearch:
    """The cross-view node's coarse stage (module docstring). `index`: a `DescriptorIndex`;
    `model`: a `DescriptorModel` whose ground encoder the index was built for."""

    def __init__(self, index, model, max_cells: int, stage: CoarseStage, circle_sigmas: float = 3.0,
                 yaw_max_std_deg: float = 20.0):
        index.check_model(model.sha256("ground"))
        if not (isinstance(max_cells, int) and max_cells >= 2):
            raise InputError(f"retrieval_max_cells must be an integer >= 2, got {max_cells!r}")
        if not (math.isfinite(yaw_max_std_deg) and 0 < yaw_max_std_deg <= 180):
            raise InputError(f"retrieval_yaw_max_std_deg must be in (0, 180], got {yaw_max_std_deg!r}")
        self.index, self.model, self.max_cells, self.stage = index, model, max_cells, stage
        self.circle_sigmas, self.yaw_max_std_rad = float(circle_sigmas), math.radians(yaw_max_std_deg)
        self._lock, self._model_lock = threading.Lock(), threading.Lock()
        self._filter_sigma_m = math.nan
        self._filter_yaw: tuple[float, float] | None = None   # (yaw, its 1-sigma), rad
        self._gnss_sigma_m = math.nan

    @classmethod
    def open(cls, index_path: str, model_path: str, max_cells: int, stage: CoarseStage, providers=("cpu",),
             intra_op_threads: int = 1, yaw_max_std_deg: float = 20.0) -> "CoarseSearch":
        """From the files; `model_path` "" takes the card the index names. InputError: why not."""
        from cvgl_ros.retrieval.encoders import DescriptorModel
        from cvgl_ros.retrieval.index import DescriptorIndex

        index = DescriptorIndex.load(index_path)
        card = model_path or index.meta.get("model", {}).get("card", "")
        if not card:
            raise InputError(f"{index_path} names no descriptor card: set retrieval_model")
        return cls(index, DescriptorModel(card, providers, intra_op_threads), max_cells, stage,
                   yaw_max_std_deg=yaw_max_std_deg)

    def note_filter_pose(self, cov_2x2, yaw_enu_rad: float | None = None, yaw_std_rad: float = math.nan) -> None:
        """The filter's newest pose: its position covariance (the circle), yaw and yaw 1-sigma
        (the sectors' bearing when the frame's prior has none; NaN: unknown, not used)."""
        with self._lock:
            self._filter_sigma_m = position_sigma_m(cov_2x2)
            if yaw_enu_rad is not None and math.isfinite(yaw_enu_rad):
                self._filter_yaw = float(yaw_enu_rad), float(yaw_std_rad)

    def note_gnss_sigma(self, sigma_m: float) -> None:
        if math.isfinite(sigma_m) and sigma_m > 0:
            with self._lock:
                self._gnss_sigma_m = float(sigma_m)

    def decide(self, prior_source: str) -> CoarseDecision:
        """The stage's decision for a frame whose prior came from `prior_source` (PriorChoice.source)."""
        with self._lock:
            from_filter = prior_source.startswith("filter")
            alarm = f"prior from GNSS ({prior_source})" if prior_source.startswith("gnss (filter") else ""
            return self.stage.decide(CoarseInputs(from_filter or bool(alarm), self._filter_sigma_m,
                                                  integrity_alarm=alarm))

    def radius_m(self) -> float:
        """circle_sigmas * max(sigma_gnss, sigma_filter) (known ones; 5 m when neither is)."""
        with self._lock:
            known = [s for s in (self._gnss_sigma_m, self._filter_sigma_m) if math.isfinite(s)]
        return self.circle_sigmas * (max(known) if known else 5.0)

    def _bearing(self, yaw_enu_rad: float | None) -> float:
        """The frame's yaw, else the filter's newest while its 1-sigma is at most yaw_max_std_deg
        (InputError: neither is known)."""
        if yaw_enu_rad is not None and math.isfinite(yaw_enu_rad):
            return yaw_enu_rad
        with self._lock:
            yaw, std = self._filter_yaw or (math.nan, math.nan)
        if not math.isfinite(yaw):
            raise InputError("the yaw is unknown: the ground descriptor's sectors need it")
        if not std <= self.yaw_max_std_rad:
            raise InputError(f"the yaw is unknown: the filter's yaw 1-sigma {math.degrees(std):.0f} deg > "
                             f"{math.degrees(self.yaw_max_std_rad):g} (the ground descriptor's sectors need it)")
        return yaw

    def search(self, rgb: np.ndarray, k: np.ndarray, yaw_enu_rad: float | None, east_m: float, north_m: float,
               datum, stamp_ns: int, timings: dict | None = None) -> GridScores:
        """The scores of the cells around (east, north) for the frame `rgb` with intrinsics `k`,
        looking along `yaw_enu_rad`, else along the filter's newest yaw: a prior whose yaw is too
        uncertain for the dense network's narrow search still gives the sectors' bearing to a
        sector's width (InputError: none; also when no yaw is known at all, since the
        descriptor's sectors are absolute bearings)."""
        from cvgl_ros.localization.datum import datum_offset_m

        offset_m = 0.0 if datum is None else datum_offset_m(datum, self.index.datum)
        if offset_m > DATUM_TOLERANCE_M:
            raise InputError(f"the descriptor grid's datum is {offset_m:.1f} m from the filter's: build it with the "
                             "filter's datum")
        yaw_enu_rad = self._bearing(yaw_enu_rad)
        t0 = time.perf_counter()
        radius = self.radius_m()
        cells = self.index.cells_within(east_m, north_m, radius)
        if cells.size == 0:
            raise InputError(f"no grid cell within {radius:.0f} m of the prior ({east_m:.1f}, {north_m:.1f})")
        if cells.size > self.max_cells:
            d2 = ((self.index.positions_en_m[cells] - [east_m, north_m]) ** 2).sum(axis=1)
            cells = np.sort(cells[np.argsort(d2, kind="stable")[: self.max_cells]])
        with self._model_lock:  # one ONNX session, created on first use
            query = self.model.encode_ground(rgb, k, yaw_enu_rad)
        scores = np.exp(-self.index.distances(query, cells))
        if timings is not None:
            timings["retrieval_ms"] = (time.perf_counter() - t0) * 1e3
        return GridScores(self.index.positions_en_m[cells], scores, stamp_ns, self.index.spacing_m)


FUSION_MODES = ("auto", "always", "off")


class FilterCoarseStage:
    """The particle-filter node's side: whether a frame's grid scores are fused (`mode` auto:
    `CoarseStage.decide` on the filter's estimate, gate and the dense patch's extent, taken
    from the likelihood volumes it receives; always; off)."""

    def __init__(self, mode: str = "auto", stage: CoarseStage | None = None):
        if mode not in FUSION_MODES:
            raise InputError(f"retrieval fusion {mode!r} is not one of {', '.join(FUSION_MODES)}")
        self.mode, self.stage = mode, stage or CoarseStage(None)

    def note_volume(self, volume) -> None:
        """The dense patch's half-extent E from a likelihood volume (its shorter side)."""
        _, h, w = volume.shape
        self.stage.set_half_extent(0.5 * min(h, w) * volume.cell_m)

    def inputs(self, pf, stamp_s: float) -> CoarseInputs:
        """The decision's inputs from a `ParticleFilter` at `stamp_s`."""
        if not pf.initialized:
            return CoarseInputs(False)
        est = pf.estimate(stamp_s)
        return CoarseInputs(True, position_sigma_m(est.covariance_3x3[:2, :2]), pf.disagreement_m(stamp_s),
                            pf.integrity_alarm())

    def offer(self, pf, stamp_s: float, grid: GridScores) -> tuple[bool, CoarseDecision]:
        """Fuse `grid` into `pf` when the stage runs; (weighed the particles, the decision)."""
        if self.mode == "off":
            return False, CoarseDecision(False, "retrieval_fusion is off")
        decision = self.stage.decide(self.inputs(pf, stamp_s))
        if self.mode == "always":
            decision = CoarseDecision(True, f"retrieval_fusion is always ({decision.reason})")
        if not decision.run:
            return False, decision
        return pf.add_retrieval(stamp_s, grid), decision
