"""Cars: the transient objects of a world. Which parking spots are taken and where traffic is
differs between the orthophoto and every ground appearance (each draws its own seeded
stream), as a satellite image and a drive are never taken at the same moment.

Moving traffic follows the right-hand lanes of the road edges at constant speed, looping
along its edge; `TrafficModel.cars_at(time_s)` gives the deterministic snapshot at a time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.sim.roads import RoadGraph, offset_polyline, resample
from cvgl_ros.sim.world_layout import CAR_COLOURS, ParkingSpot, rect_corners

CAR_LENGTH_M = (4.0, 4.9)
CAR_WIDTH_M = (1.72, 1.92)
CAR_HEIGHT_M = (1.40, 1.65)
TRAFFIC_SPACING_M = {"urban": 45.0, "suburban": 140.0, "rural": 350.0}


@dataclass
class Car:
    east_m: float
    north_m: float
    yaw_enu_rad: float
    length_m: float
    width_m: float
    height_m: float
    rgb: tuple[int, int, int]

    def corners(self, grow_m: float = 0.0) -> np.ndarray:
        return rect_corners((self.east_m, self.north_m), self.length_m + 2 * grow_m, self.width_m + 2 * grow_m,
                            self.yaw_enu_rad)


def _random_car(rng: np.random.Generator, e: float, n: float, yaw: float) -> Car:
    rgb = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
    return Car(float(e), float(n), float(yaw), float(rng.uniform(*CAR_LENGTH_M)), float(rng.uniform(*CAR_WIDTH_M)),
               float(rng.uniform(*CAR_HEIGHT_M)), tuple(int(c) for c in rgb))


def parked_cars(spots: list[ParkingSpot], rng: np.random.Generator, occupancy: float = 0.55) -> list[Car]:
    """Cars in a random subset of the parking spots (same spot order, so deterministic)."""
    taken = rng.random(len(spots)) < occupancy
    cars = []
    for spot, t in zip(spots, taken):
        car = _random_car(rng, spot.east_m, spot.north_m, spot.angle_rad + (math.pi if rng.random() < 0.5 else 0.0))
        if t:
            cars.append(car)
    return cars


class TrafficModel:
    """Cars driving in the right-hand lanes; lanes are resampled every 1 m so that a snapshot
    is a vectorized lookup."""

    def __init__(self, roads: RoadGraph, rng: np.random.Generator, style: str):
        spacing = TRAFFIC_SPACING_M[style]
        points, starts, lengths = [], [], []
        lane_of, s0, speed, cars = [], [], [], []
        offset = 0
        for e in roads.edges:
            for forward in (True, False):
                pts = e.points_en if forward else e.points_en[::-1]
                lane = resample(offset_polyline(pts, e.lane_offset_m), 1.0)
                if len(lane) < 21:
                    continue
                k = len(starts)
                points.append(lane)
                starts.append(offset)
                lengths.append(len(lane) - 1)
                offset += len(lane)
                for _ in range(int(rng.poisson((len(lane) - 1) / spacing))):
                    lane_of.append(k)
                    s0.append(rng.uniform(0, len(lane) - 1))
                    speed.append(rng.uniform(5.0, 12.0))
                    cars.append(_random_car(rng, 0.0, 0.0, 0.0))
        self._points = np.concatenate(points) if points else np.zeros((0, 2))
        self._start = np.array(starts, dtype=np.int64)[lane_of] if cars else np.zeros(0, np.int64)
        self._length = np.array(lengths, dtype=float)[lane_of] if cars else np.zeros(0)
        self._s0 = np.array(s0)
        self._speed = np.array(speed)
        self._cars = cars
        self._dims = np.array([[c.length_m, c.width_m, c.height_m] for c in cars], float).reshape(-1, 3)
        self._rgb = np.array([c.rgb for c in cars], np.float32).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self._cars)

    def snapshot(self, time_s: float, near_en=None, radius_m: float = math.inf):
        """Arrays of the cars at `time_s` (optionally within `radius_m` of `near_en`):
        (N,6) east, north, yaw, length, width, height and (N,3) RGB."""
        if not self._cars:
            return np.zeros((0, 6)), np.zeros((0, 3))
        s = np.mod(self._s0 + self._speed * float(time_s), self._length)
        i = np.minimum(np.floor(s).astype(np.int64), (self._length - 1).astype(np.int64))
        f = (s - i)[:, None]
        p0 = self._points[self._start + i]
        p1 = self._points[self._start + i + 1]
        pos = p0 + f * (p1 - p0)
        yaw = np.arctan2(p1[:, 1] - p0[:, 1], p1[:, 0] - p0[:, 0])
        keep = slice(None)
        if near_en is not None:
            keep = np.hypot(pos[:, 0] - near_en[0], pos[:, 1] - near_en[1]) < radius_m
        cars = np.column_stack([pos, yaw, self._dims])[keep]
        return cars, self._rgb[keep]

    def cars_at(self, time_s: float, near_en=None, radius_m: float = math.inf) -> list[Car]:
        """The cars at `time_s` (optionally only those within `radius_m` of `near_en`)."""
        cars, rgb = self.snapshot(time_s, near_en, radius_m)
        return [Car(float(c[0]), float(c[1]), float(c[2]), float(c[3]), float(c[4]), float(c[5]),
                    tuple(int(v) for v in col)) for c, col in zip(cars, rgb)]
