"""Position errors in the vehicle's own axes, as every cross-view metric reports them.

Longitudinal: along the vehicle's heading (forward positive). Lateral: perpendicular to it
(left positive, REP-103). The split is a rotation by -yaw, so it preserves the error norm.
"""
from __future__ import annotations

import numpy as np


def lateral_longitudinal(error_east_m, error_north_m, yaw_enu_rad):
    """Split ENU position errors (estimate - truth) into (lateral, longitudinal) metres.

    `yaw_enu_rad` is the true heading of the vehicle (ENU, counter-clockwise from east).
    """
    e = np.asarray(error_east_m, dtype=float)
    n = np.asarray(error_north_m, dtype=float)
    yaw = np.asarray(yaw_enu_rad, dtype=float)
    c, s = np.cos(yaw), np.sin(yaw)
    longitudinal = c * e + s * n
    lateral = -s * e + c * n
    return lateral, longitudinal
