"""North-up metric grids (satellite patches, BEV maps, likelihood volumes): one convention.

A grid of H rows and W columns with cell size `mpp` metres, centred at (center_e, center_n)
in the ENU `map` frame. Columns go east, rows go south; the centre of cell (row r, col c) is

    east  = center_e + (c - (W - 1) / 2) * mpp
    north = center_n - (r - (H - 1) / 2) * mpp

so the grid centre is at fractional pixel ((W - 1) / 2, (H - 1) / 2) whatever the parity.
"""
from __future__ import annotations

import numpy as np


def grid_to_en(col, row, center_e: float, center_n: float, width: int, height: int, mpp: float):
    """Fractional (col, row) -> (east, north) metres."""
    east = center_e + (np.asarray(col, dtype=float) - (width - 1) / 2.0) * mpp
    north = center_n - (np.asarray(row, dtype=float) - (height - 1) / 2.0) * mpp
    return east, north


def en_to_grid(east, north, center_e: float, center_n: float, width: int, height: int, mpp: float):
    """(east, north) metres -> fractional (col, row)."""
    col = (np.asarray(east, dtype=float) - center_e) / mpp + (width - 1) / 2.0
    row = (center_n - np.asarray(north, dtype=float)) / mpp + (height - 1) / 2.0
    return col, row
