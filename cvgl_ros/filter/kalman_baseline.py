"""Constant-velocity Kalman filter on GNSS positions (filterpy): what a user would otherwise
pick to smooth GNSS, the comparison row next to the particle filters in `cvgl evaluate-track`.

State x = (E, vE, N, vN) in the `map` frame; over dt the velocity is a random walk driven
by white acceleration of density q (m/s^2 per sqrt(s)), filterpy's
`Q_discrete_white_noise(dim=2, dt, var=q^2, block_size=2)`. A fix measures (E, N) with
R = sigma^2 I from the receiver's reported sigma. No outlier gating: a plain Kalman filter
follows GNSS jumps, which is the point of the comparison. Invalid fixes (NO_FIX, NaN) are
skipped; the state is only predicted through them. Yaw is the direction of the velocity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter

from cvgl_ros.errors import InputError


@dataclass(frozen=True)
class KalmanTrack:
    """Kalman estimates at the fix stamps (after predicting to, and updating with, each fix)."""

    t_s: np.ndarray
    east_m: np.ndarray
    north_m: np.ndarray
    yaw_enu_rad: np.ndarray
    speed_mps: np.ndarray
    initialized: np.ndarray


class ConstantVelocityKalman:
    """Constant-velocity Kalman filter over (E, vE, N, vN), updated with GNSS fixes."""

    def __init__(self, accel_noise_mps2: float = 2.0, initial_speed_sigma_mps: float = 10.0):
        if not (math.isfinite(accel_noise_mps2) and accel_noise_mps2 > 0):
            raise InputError(f"Kalman acceleration noise must be > 0, got {accel_noise_mps2}")
        self.accel_noise_mps2 = float(accel_noise_mps2)
        self.initial_speed_sigma_mps = float(initial_speed_sigma_mps)
        self.kf = KalmanFilter(dim_x=4, dim_z=2)
        self.kf.H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
        self.time_s: float | None = None

    @property
    def initialized(self) -> bool:
        return self.time_s is not None

    def predict_to(self, stamp_s: float) -> None:
        dt = stamp_s - self.time_s
        if dt <= 0:
            return
        self.kf.F = np.array([[1.0, dt, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, dt], [0.0, 0.0, 0.0, 1.0]])
        self.kf.Q = Q_discrete_white_noise(dim=2, dt=dt, var=self.accel_noise_mps2**2, block_size=2)
        self.kf.predict()
        self.time_s = stamp_s

    def add_gnss(self, stamp_s: float, east_m: float, north_m: float, sigma_m: float, status_ok: bool = True) -> bool:
        """Predict to the fix and update with it; False (and no update) for an invalid fix."""
        if not status_ok or not all(math.isfinite(v) for v in (stamp_s, east_m, north_m, sigma_m)) or sigma_m <= 0:
            return False
        if self.time_s is None:
            self.kf.x = np.array([east_m, 0.0, north_m, 0.0])
            self.kf.P = np.diag([sigma_m**2, self.initial_speed_sigma_mps**2, sigma_m**2, self.initial_speed_sigma_mps**2])
            self.time_s = float(stamp_s)
            return True
        if stamp_s < self.time_s:
            return False  # a plain Kalman filter cannot go back in time: skip
        self.predict_to(float(stamp_s))
        self.kf.update(np.array([east_m, north_m]), R=np.eye(2) * sigma_m**2)
        return True

    def state_at(self, stamp_s: float) -> tuple[float, float, float, float]:
        """(east, north, yaw, speed) extrapolated to `stamp_s` with the constant velocity."""
        e, ve, n, vn = (float(v) for v in self.kf.x)
        dt = max(stamp_s - self.time_s, 0.0) if self.time_s is not None else 0.0
        return e + ve * dt, n + vn * dt, math.atan2(vn, ve), math.hypot(ve, vn)


def run_kalman(t_s, east_m, north_m, sigma_m, valid, accel_noise_mps2: float = 2.0) -> KalmanTrack:
    """Run the filter over a GNSS track (arrays); estimates at every epoch, valid or not."""
    kf = ConstantVelocityKalman(accel_noise_mps2)
    rows = []
    for t, e, n, s, ok in zip(t_s, east_m, north_m, sigma_m, valid):
        kf.add_gnss(float(t), float(e), float(n), float(s), bool(ok))
        rows.append((*kf.state_at(float(t)), kf.initialized) if kf.initialized else (0.0, 0.0, 0.0, 0.0, False))
    arr = np.array(rows, dtype=float).reshape(-1, 5)
    return KalmanTrack(np.asarray(t_s, dtype=float), arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4].astype(bool))
