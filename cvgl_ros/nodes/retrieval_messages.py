"""The coarse stage's messages and set-up (seed 001's retrieval grid; the logic is
`cvgl_ros.localization.coarse_stage`): a frame's grid scores as a PointCloud2 on
/cvgl/retrieval (fields x, y, z = 0, score: float32, one point per grid cell, frame `map`,
stamped with the camera frame; RViz shows it coloured by `score` = e^{-d}), and back.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2

from cvgl_ros.errors import InputError
from cvgl_ros.filter.measurements import GridScores
from cvgl_ros.nodes.conversions import cloud_points, points_to_cloud
from cvgl_ros.stamps import stamp_to_ns

RETRIEVAL_TOPIC = "/cvgl/retrieval"
MAX_POINTS = 1_000_000
_DTYPE = np.dtype({"names": ["x", "y", "z", "score"], "formats": ["<f4"] * 4, "offsets": [0, 4, 8, 12],
                   "itemsize": 16})


def scores_to_cloud(grid: GridScores, frame_id: str = "map") -> PointCloud2:
    """GridScores -> PointCloud2 (module docstring)."""
    pts = np.zeros(len(grid), dtype=_DTYPE)
    pts["x"], pts["y"] = grid.positions_en_m[:, 0], grid.positions_en_m[:, 1]
    pts["score"] = grid.scores
    return points_to_cloud(pts, grid.stamp_ns, frame_id)


def cloud_to_scores(msg, map_frame: str = "map") -> GridScores:
    """A /cvgl/retrieval PointCloud2 -> GridScores; InputError, one line, for anything else."""
    if msg.header.frame_id != map_frame:
        raise InputError(f"retrieval cloud in frame {msg.header.frame_id!r}, expected {map_frame!r}")
    if int(msg.width) * int(msg.height) > MAX_POINTS:
        raise InputError(f"retrieval cloud of {int(msg.width) * int(msg.height)} points (at most {MAX_POINTS})")
    pts = cloud_points(msg)
    missing = [n for n in ("x", "y", "score") if n not in (pts.dtype.names or ())]
    if missing:
        raise InputError(f"retrieval cloud lacks field(s) {', '.join(missing)}")
    if pts.size < 2:
        raise InputError(f"retrieval cloud of {pts.size} cells: nothing to compare")
    positions = np.column_stack([pts["x"].astype(np.float64), pts["y"].astype(np.float64)])
    return GridScores(positions, pts["score"].astype(np.float64), stamp_to_ns(msg.header.stamp))


def open_coarse_search(p: dict, estimator, health):
    """The cross-view node's `CoarseSearch` of its `retrieval_*` parameters, or None (off, or it
    cannot be opened: /diagnostics says why; the dense stage works on without it)."""
    from cvgl_ros.localization.coarse_stage import CoarseSearch, CoarseStage

    if not p["retrieval_index"]:
        health.set_value("coarse_stage", "off")
        health.set_value("coarse_stage_reason", "no retrieval_index")
        return None
    half_extent = 0.5 * estimator.cells * estimator.cell_m if estimator is not None else None
    try:
        search = CoarseSearch.open(p["retrieval_index"], p["retrieval_model"], p["retrieval_max_cells"],
                                   CoarseStage(half_extent), p["providers"], p["intra_op_threads"],
                                   yaw_max_std_deg=p["retrieval_yaw_max_std_deg"])
    except InputError as exc:
        health.set_value("coarse_stage", "off")
        health.problem(f"coarse stage off: {exc}", "retrieval_unavailable")
        health.set_value("coarse_stage_reason", f"unavailable: {exc}")
        return None
    health.set_value("coarse_stage", "ready")
    health.set_value("coarse_stage_reason", f"{len(search.index)} cells, at most {search.max_cells} a frame")
    return search


def fuse_retrieval(msg, pf, coarse, health, map_frame: str) -> tuple[int, bool] | None:
    """The particle-filter node's intake of one /cvgl/retrieval cloud through `coarse` (a
    `FilterCoarseStage`) into `pf`: (its stamp in ns, whether it weighed the particles), or None
    for a cloud it cannot read. /diagnostics: coarse_stage (on/off), coarse_stage_reason, counters."""
    try:
        grid = cloud_to_scores(msg, map_frame)
    except InputError as exc:
        health.problem(f"retrieval cloud ignored: {exc}", "retrieval_rejected")
        return None
    t_ns = stamp_to_ns(msg.header.stamp)
    applied, decision = coarse.offer(pf, t_ns * 1e-9, grid)
    health.set_value("coarse_stage", "on" if decision.run else "off")
    health.set_value("coarse_stage_reason", decision.reason)
    health.count("retrieval_applied" if applied else
                 "retrieval_not_applied" if decision.run else "retrieval_not_needed")
    return t_ns, applied
