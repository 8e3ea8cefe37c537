"""WGS84 <-> local ENU at a datum (REP-103/105: the `map` frame is ENU anchored at a datum).

The conversion is PROJ's exact `cart` + `topocentric` pipeline through pyproj, vectorized
over numpy arrays (no small-angle approximation: a round trip is sub-millimetre across
tens of kilometres).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pyproj import Transformer

from cvgl_ros.errors import InputError


def check_lat_lon(lat_deg, lon_deg) -> None:
    """Raise InputError unless every latitude is in [-90, 90] and longitude in [-180, 180]."""
    if isinstance(lat_deg, (float, int)) and isinstance(lon_deg, (float, int)):  # one point: no numpy (~70 us)
        if not (math.isfinite(lat_deg) and math.isfinite(lon_deg)):
            raise InputError("latitude/longitude must be finite numbers")
        if abs(lat_deg) > 90.0:
            raise InputError(f"latitude {lat_deg:g} deg is outside [-90, 90]")
        if abs(lon_deg) > 180.0:
            raise InputError(f"longitude {lon_deg:g} deg is outside [-180, 180]")
        return
    lat = np.asarray(lat_deg, dtype=float)
    lon = np.asarray(lon_deg, dtype=float)
    if not np.all(np.isfinite(lat)) or not np.all(np.isfinite(lon)):
        raise InputError("latitude/longitude must be finite numbers")
    if np.any(np.abs(lat) > 90.0):
        bad = lat[np.abs(lat) > 90.0].flat[0]
        raise InputError(f"latitude {bad:g} deg is outside [-90, 90]")
    if np.any(np.abs(lon) > 180.0):
        bad = lon[np.abs(lon) > 180.0].flat[0]
        raise InputError(f"longitude {bad:g} deg is outside [-180, 180]")


@dataclass(frozen=True)
class Datum:
    """Origin of a local ENU frame: geodetic latitude/longitude (deg) and ellipsoidal height (m)."""

    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    _transformer: Transformer = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        check_lat_lon(self.lat_deg, self.lon_deg)
        if not math.isfinite(self.alt_m):
            raise InputError("datum altitude must be finite")
        if abs(self.lat_deg) > 89.9:
            raise InputError(f"datum latitude {self.lat_deg:g} deg is too close to a pole for a local ENU frame")
        pipeline = (
            "+proj=pipeline +step +proj=cart +ellps=WGS84 "
            f"+step +proj=topocentric +ellps=WGS84 +lat_0={self.lat_deg!r} "
            f"+lon_0={self.lon_deg!r} +h_0={self.alt_m!r}"
        )
        object.__setattr__(self, "_transformer", Transformer.from_pipeline(pipeline))

    @classmethod
    def from_dict(cls, d: dict) -> "Datum":
        return cls(float(d["lat_deg"]), float(d["lon_deg"]), float(d.get("alt_m", 0.0)))

    def to_dict(self) -> dict:
        return {"lat_deg": self.lat_deg, "lon_deg": self.lon_deg, "alt_m": self.alt_m}

    def to_enu(self, lat_deg, lon_deg, alt_m=None):
        """Geodetic (deg, deg, m) -> local (east, north, up) in metres. Arrays broadcast."""
        check_lat_lon(lat_deg, lon_deg)
        lat = np.asarray(lat_deg, dtype=float)
        lon = np.asarray(lon_deg, dtype=float)
        alt = np.zeros_like(lat) if alt_m is None else np.asarray(alt_m, dtype=float)
        lat, lon, alt = np.broadcast_arrays(lat, lon, alt)
        e, n, u = self._transformer.transform(lon, lat, alt)
        return np.asarray(e), np.asarray(n), np.asarray(u)

    def to_wgs84(self, east_m, north_m, up_m=None):
        """Local (east, north, up) in metres -> geodetic (lat deg, lon deg, alt m)."""
        e = np.asarray(east_m, dtype=float)
        n = np.asarray(north_m, dtype=float)
        u = np.zeros_like(e) if up_m is None else np.asarray(up_m, dtype=float)
        e, n, u = np.broadcast_arrays(e, n, u)
        lon, lat, alt = self._transformer.transform(e, n, u, direction="INVERSE")
        return np.asarray(lat), np.asarray(lon), np.asarray(alt)
