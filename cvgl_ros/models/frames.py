"""Metric frames of the network, in one place.

* Map offsets (e, n): metres east/north of the satellite patch centre (the position prior),
  the `cvgl_ros.geo.grid` convention for every north-up grid (patch, features, volume).
* Vehicle frame (x, y): metres forward/left of the vehicle origin (REP-103). A vehicle
  point p' at pose (yaw, t) lies at map offset R(yaw) p' + t: Eq. 3 of "Learning Dense
  Flow Field for Highly-accurate Cross-view Camera Localization".

`grid_sample` is always called with align_corners=True on north-up grids, so normalized
coordinate -1 / +1 is the centre of the first / last cell, matching the grid convention.
"""
from __future__ import annotations

import torch


def vehicle_to_map(points_xy: torch.Tensor, yaw: torch.Tensor, t_en: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate (and translate) vehicle-frame points into map offsets.

    points_xy (..., 2) forward/left metres; yaw broadcastable to points_xy[..., 0];
    t_en broadcastable to points_xy. Returns (..., 2) east/north metres.
    """
    c, s = torch.cos(yaw), torch.sin(yaw)
    x, y = points_xy[..., 0], points_xy[..., 1]
    out = torch.stack((c * x - s * y, s * x + c * y), dim=-1)
    return out if t_en is None else out + t_en


def map_to_grid_norm(en: torch.Tensor, cells: int, cell_m: float) -> torch.Tensor:
    """Map offsets (..., 2) -> grid_sample coordinates (..., 2) of a square north-up grid
    of `cells` x `cells` centred on the patch centre (align_corners=True)."""
    half = (cells - 1) / 2.0
    col = en[..., 0] / cell_m + half
    row = half - en[..., 1] / cell_m
    return torch.stack((col / half - 1.0, row / half - 1.0), dim=-1)


def grid_cell_centres(cells: int, cell_m: float) -> torch.Tensor:
    """(cells, cells, 2) east/north offsets of the cell centres of a north-up grid."""
    idx = torch.arange(cells, dtype=torch.float32) - (cells - 1) / 2.0
    east = idx[None, :].expand(cells, cells) * cell_m
    north = -idx[:, None].expand(cells, cells) * cell_m
    return torch.stack((east, north), dim=-1)


def bev_cell_centres(rows: int, cols: int, cell_m: float) -> torch.Tensor:
    """(rows, cols, 2) vehicle-frame (forward, left) metres of BEV cell centres.

    Row 0 is the farthest row, column 0 the leftmost: the BEV reads like a picture with the
    vehicle at the bottom centre looking up. Forward spans (0, rows*cell], left +-cols*cell/2.
    """
    forward = (rows - torch.arange(rows, dtype=torch.float32) - 0.5) * cell_m
    left = (cols / 2.0 - torch.arange(cols, dtype=torch.float32) - 0.5) * cell_m
    return torch.stack((forward[:, None].expand(rows, cols), left[None, :].expand(rows, cols)), dim=-1)
