"""Correlation volumes between BEV and satellite features (RAFT-style, seed 002 §3.2).

* `all_pairs_correlation`: the dot product of every BEV cell with every satellite cell,
  one north-up correlation image per BEV cell, scaled by 1/sqrt(C) (coarse level).
* `LocalCorrelation`: the same at the fine level and its 2x2-pooled levels, but only in a
  window around each cell's starting match, and RAFT's (2r+1)^2 lookup at the current match.
* `rigid_volume`: the coarse likelihood volume over (yaw, y, x). For a vehicle at yaw k
  and map offset t, BEV cell p' should match the satellite at R(yaw_k) p' + t; the score
  of the pose is the mean correlation of the visible BEV cells at those places (bilinear).
  Rows of the result go south, columns east: the `cvgl_ros.likelihood` convention.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from cvgl_ros.models.frames import grid_cell_centres, map_to_grid_norm, vehicle_to_map


def all_pairs_correlation(bev: torch.Tensor, satellite: torch.Tensor) -> torch.Tensor:
    """bev (B, C, R, W), satellite (B, C, S, S) -> (B * R * W, 1, S, S)."""
    b, c = bev.shape[:2]
    s_h, s_w = satellite.shape[-2:]
    corr = torch.bmm(bev.flatten(2).transpose(1, 2), satellite.flatten(2)) / math.sqrt(c)  # (B, P, S*S)
    return corr.reshape(-1, 1, s_h, s_w)


class LocalCorrelation:
    """Correlation of every BEV cell with the satellite around its initial match, per level.

    RAFT's pyramid (2x2 average pooling of the correlation over the satellite dimensions,
    which equals correlating with 2x2-pooled satellite features) restricted to a window of
    (2R+1)^2 displacements around the match the refinement starts from. All BEV cells share
    one rigid start pose, so the satellite features are resampled once onto the BEV grid in
    that pose (with a margin) and the window is a set of plain shifts: nothing the size of
    the full all-pairs volume is ever held. Displacements are in the start pose's vehicle
    frame (forward, left), in fine cells, so the update block is independent of the yaw.
    """

    def __init__(self, bev: torch.Tensor, sat_fine: torch.Tensor, init_pose: torch.Tensor, bev_rows: int,
                 bev_cols: int, cell_m: float, levels: int, window_radius: int):
        b, c = bev.shape[:2]
        self.levels, self.radius = levels, window_radius
        self.windows = []
        sat = sat_fine
        for level in range(levels):
            if level:
                sat = F.avg_pool2d(sat, 2, stride=2)
            step = 2 ** level                                   # shift between window cells, fine cells
            margin = window_radius * step
            xy = _extended_bev_cells(bev_rows, bev_cols, margin, cell_m, bev.device, bev.dtype)
            points = vehicle_to_map(xy.unsqueeze(0), init_pose[:, 2].reshape(-1, 1, 1), init_pose[:, None, None, 0:2])
            grid = map_to_grid_norm(points, sat.shape[-1], cell_m * step)
            warped = F.grid_sample(sat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            # For BEV row i and window row dy, correlate the BEV row with the whole warped row
            # i + m + dy*step (one batched matmul), then keep the band of columns j + m + dx*step.
            size = 2 * window_radius + 1
            shifts = torch.arange(-window_radius, window_radius + 1, device=bev.device) * step + margin
            row_index = (torch.arange(bev_rows, device=bev.device)[:, None] + shifts[None, :]).reshape(-1)
            band = warped.index_select(2, row_index)                                  # (B, C, R*(2R+1), W+2m)
            width = warped.shape[-1]
            band = band.reshape(b, c, bev_rows, size * width).transpose(1, 2).reshape(b * bev_rows, c, size * width)
            rows_bev = bev.permute(0, 2, 3, 1).reshape(b * bev_rows, bev_cols, c)     # (B*R, W, C)
            full = torch.bmm(rows_bev, band).reshape(b * bev_rows, bev_cols, size, width)
            col_index = (torch.arange(bev_cols, device=bev.device)[:, None] + shifts[None, :])     # (W, 2R+1)
            col_index = col_index.reshape(1, bev_cols, 1, size).expand(b * bev_rows, -1, size, -1)
            corr = torch.gather(full, 3, col_index) / math.sqrt(c)                    # (B*R, W, dy, dx)
            self.windows.append(corr.reshape(-1, 1, size, size))

    def lookup(self, displacement: torch.Tensor, radius: int) -> torch.Tensor:
        """displacement (B, P, 2) (forward, left) fine cells from the start -> (B, levels*(2r+1)^2, P)."""
        b, p = displacement.shape[:2]
        size = 2 * radius + 1
        dtype, device = displacement.dtype, displacement.device
        steps = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
        # Window images: column index grows with dx (to the right = -left), row with dy (= -forward).
        offsets = torch.stack((steps[None, :].expand(size, -1), steps[:, None].expand(-1, size)), -1).reshape(1, -1)
        centre = torch.stack((-displacement[..., 1], -displacement[..., 0]), dim=-1).reshape(b * p, 2)
        # grid = (centre / 2^level + offset) / R for every (2r+1)^2 offset, written as
        # centre @ E + offset: a tiny matmul and a row broadcast instead of a (B*P, 1, 1, 2) +
        # (size, size, 2) broadcast, which ONNX Runtime runs 16x slower (1.2 ms per level).
        spread = torch.zeros(2, size * size * 2, dtype=dtype, device=device)
        spread[0, 0::2] = 1.0
        spread[1, 1::2] = 1.0
        out = []
        for level, window in enumerate(self.windows):
            scale = 1.0 / (2 ** level * self.radius)
            grid = (centre @ (spread * scale) + offsets / self.radius).reshape(b * p, size, size, 2)  # align_corners
            sampled = F.grid_sample(window, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            out.append(sampled.reshape(b, p, -1))
        return torch.cat(out, dim=-1).transpose(1, 2)


def _extended_bev_cells(rows: int, cols: int, margin: int, cell_m: float, device, dtype) -> torch.Tensor:
    """(rows + 2m, cols + 2m, 2) vehicle-frame centres of the BEV grid grown by `margin` cells."""
    i = torch.arange(-margin, rows + margin, device=device, dtype=dtype)
    j = torch.arange(-margin, cols + margin, device=device, dtype=dtype)
    forward = (rows - i - 0.5) * cell_m
    left = (cols / 2.0 - j - 0.5) * cell_m
    return torch.stack((forward[:, None].expand(-1, len(j)), left[None, :].expand(len(i), -1)), dim=-1)


def rigid_volume(corr: torch.Tensor, bev_xy: torch.Tensor, bev_mask: torch.Tensor, yaw_bins: torch.Tensor,
                 volume_cells: int, cell_m: float) -> torch.Tensor:
    """Score every (yaw, y, x) pose by the mean correlation of the visible BEV cells.

    corr (B*P, 1, S, S) coarse correlation images (cell `cell_m`); bev_xy (P, 2) vehicle
    frame cell centres; bev_mask (B, P) visibility in [0, 1]; yaw_bins (B, K) ENU yaws.
    Returns (B, K, volume_cells, volume_cells).
    """
    b, k = yaw_bins.shape
    p = bev_xy.shape[0]
    cells = corr.shape[-1]
    # The grid coordinate is affine in the map offset, so the (B, P, K, L) grid is one sum of
    # the normalized rotated BEV offsets and the normalized volume cell centres (no centre
    # offset in the first term: it is in the second).
    positions = map_to_grid_norm(grid_cell_centres(volume_cells, cell_m).to(corr), cells, cell_m)   # (V,V,2)
    offsets = vehicle_to_map(bev_xy.reshape(1, p, 1, 2), yaw_bins.reshape(b, 1, k))                  # (B,P,K,2)
    scale = torch.tensor([1.0, -1.0], dtype=corr.dtype, device=corr.device) / (cell_m * (cells - 1) / 2.0)
    grid = (offsets * scale).reshape(b * p, k, 1, 2) + positions.reshape(1, 1, -1, 2)               # (B*P,K,L,2)
    # Sampling is linear in the image: weight each cell's correlation image first, then sum.
    weights = bev_mask / bev_mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    weighted = corr * weights.reshape(b * p, 1, 1, 1)
    sampled = F.grid_sample(weighted, grid, mode="bilinear", padding_mode="zeros", align_corners=True)  # (B*P,1,K,L)
    score = sampled.reshape(b, p, k * positions.shape[0] * positions.shape[1]).sum(dim=1)
    return score.reshape(b, k, volume_cells, volume_cells)


def volume_band_spread(bev_xy: torch.Tensor, yaw_offsets, cell_m: float) -> int:
    """How many cells the first column of the volume's samples of one BEV cell moves across a
    yaw window (`rigid_volume_gather`'s `spread`): the chord of the window's arc at the
    farthest BEV cell, in cells, rounded up, plus one for the floor."""
    width = float(max(yaw_offsets) - min(yaw_offsets))
    chord = 2.0 * float(bev_xy.norm(dim=-1).max()) * math.sin(min(width, math.pi) / 2.0)
    return int(math.ceil(chord / cell_m)) + 1


def rigid_volume_gather(corr: torch.Tensor, bev_xy: torch.Tensor, bev_mask: torch.Tensor, yaw_bins: torch.Tensor,
                        volume_cells: int, cell_m: float, pad: int, spread: int) -> torch.Tensor:
    """`rigid_volume` by separable gathers: the same bilinear samples, no sampling grid.

    For one BEV cell and yaw the samples over all volume cells are the correlation image
    shifted by R(yaw) p' (the volume cells lie on the image's own lattice), so the bilinear
    weights are shared and the shift splits into a row gather and a column gather. Equal
    to `rigid_volume` to float precision; much faster in ONNX Runtime, whose GridSample is
    slow for millions of samples. `pad` (cells of zeros around the image) must exceed the
    largest |R p'| / cell_m + 1, which the caller computes once from the BEV grid. Every
    yaw of the window reads columns of one band of `volume_cells + 1 + spread` per BEV
    cell, so the band is cut first (`spread`: `volume_band_spread` of the window), which
    halves the work of the gathers. In ONNX Runtime the rows are Gathers of whole lines
    (memory copies) and the columns one GatherElements along the band, which measured
    faster than transposing the rows to gather columns as lines, or element-wise Gathers.
    """
    b, k = yaw_bins.shape
    p = bev_xy.shape[0]
    s = corr.shape[-1]
    v = volume_cells
    weights = bev_mask / bev_mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    image = F.pad(corr.reshape(b, p, s, s) * weights.reshape(b, p, 1, 1), (pad, pad, pad, pad))
    size = s + 2 * pad
    band = min(v + 1 + spread, size)
    offsets = vehicle_to_map(bev_xy.reshape(1, p, 1, 2), yaw_bins.reshape(b, 1, k))          # (B, P, K, 2)
    origin = (s - v) / 2.0 + pad                   # image index of volume cell 0 (before the shift)
    col = offsets[..., 0] / cell_m + origin
    row = -offsets[..., 1] / cell_m + origin
    col0, row0 = torch.floor(col), torch.floor(row)
    fc, fr = (col - col0).unsqueeze(-1), (row - row0).unsqueeze(-1)                           # (B, P, K, 1)
    # The band of columns all yaws of a BEV cell read, from the smallest first column.
    low = torch.clamp(col0.min(dim=2).values, max=size - band).long()                        # (B, P)
    band_index = (low.reshape(b, p, 1, 1) + torch.arange(band, device=corr.device)).expand(b, p, size, band)
    image = torch.gather(image, 3, band_index)                                                # (B, P, size, band)
    col0 = col0.long() - low.unsqueeze(-1)
    steps = torch.arange(v, device=corr.device)
    # Rows row0 .. row0 + v of each (b, p) band, for every yaw: two row gathers (the top and
    # the bottom tap), so no slice of a gathered tensor is copied.
    image_id = torch.arange(b * p, device=corr.device).reshape(b, p, 1, 1) * size
    top_index = (image_id + row0.long().unsqueeze(-1) + steps).reshape(-1)                   # (B*P*K*V,)
    lines = image.reshape(b * p * size, band)
    top = lines.index_select(0, top_index).reshape(b, p, k, v, band)
    bottom = lines.index_select(0, top_index + 1).reshape(b, p, k, v, band)
    rows = top * (1 - fr.unsqueeze(-1)) + bottom * fr.unsqueeze(-1)                         # (B, P, K, V, band)
    # Columns col0 .. col0 + v of every row: one element gather along the band, already in
    # (row, col) order (no transpose of the (B, P, K, V, band) tensor), then the left and the
    # right tap are its first and last v columns.
    col_index = (col0.reshape(b, p, k, 1, 1) + torch.arange(v + 1, device=corr.device)).expand(b, p, k, v, v + 1)
    taps = torch.gather(rows, 4, col_index)                                                   # (B, P, K, V, V + 1)
    cols = taps[..., :v] * (1 - fc.unsqueeze(-1)) + taps[..., 1:] * fc.unsqueeze(-1)          # (B, P, K, row, col)
    return cols.sum(dim=1)                                                                    # (B, K, rows, cols)
