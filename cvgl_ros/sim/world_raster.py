"""Rasterizing the ground of a synthetic world: material classes, road paint, texture noise.

Both views of a world are painted from these rasters, so they share the geometry exactly:
the orthophoto (`ortho.py`) samples them on its north-up grid, the ground camera
(`ground_camera.py`) looks them up where its rays hit the ground. Grids follow
`cvgl_ros.geo.grid` (cell (r, c) centre at east = ce + (c-(W-1)/2)*mpp, north = cn - (r-(H-1)/2)*mpp),
so OpenCV's integer pixel centres are exactly the grid's cell centres.

`rasterize_ground` draws, in order: background cover, areas (fields with crop rows, lawns,
paving, driveways, parking lots), sidewalks and shoulders, kerbs, carriageways with rounded
intersections and cul-de-sacs, building footprints; and into a separate anti-aliased coverage
layer the road paint: centre lines (dashed or double solid), lane dividers, edge lines, stop
lines, zebra crossings and parking stalls.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from cvgl_ros.sim.roads import RoadGraph, arc_lengths, offset_polyline
from cvgl_ros.sim.world_layout import Layout

# ground material classes
GRASS, MEADOW, SOIL, SOIL_DARK, CROP_GREEN, CROP_GOLD, ROAD, SIDEWALK, PARKING, KERB, BUILDING, GRAVEL, \
    PAVING, DRIVEWAY = range(14)
CLASS_NAMES = ["grass", "meadow", "soil", "soil_dark", "crop_green", "crop_gold", "road", "sidewalk", "parking",
               "kerb", "building", "gravel", "paving", "driveway"]
N_CLASSES = len(CLASS_NAMES)
BACKGROUND = {"urban": GRASS, "suburban": GRASS, "rural": MEADOW}

SHIFT = 4
SCALE = 1 << SHIFT
PAINT_WIDTH_M = 0.2
STOP_LINE_M = 0.5
CUL_DE_SAC_RADIUS_M = 9.0


class GridTransform:
    """ENU metres <-> pixel coordinates of one north-up grid (cvgl_ros.geo.grid convention)."""

    def __init__(self, center_e: float, center_n: float, width: int, height: int, mpp: float):
        self.center_e, self.center_n = float(center_e), float(center_n)
        self.width, self.height, self.mpp = int(width), int(height), float(mpp)

    def px(self, pts_en: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts_en, dtype=float).reshape(-1, 2)
        col = (pts[:, 0] - self.center_e) / self.mpp + (self.width - 1) / 2.0
        row = (self.center_n - pts[:, 1]) / self.mpp + (self.height - 1) / 2.0
        return np.stack([col, row], axis=1)

    def fixed(self, pts_en: np.ndarray) -> np.ndarray:
        """Pixel coordinates as OpenCV fixed-point int32 (SHIFT fractional bits)."""
        return np.round(self.px(pts_en) * SCALE).astype(np.int32)

    def en_of_pixels(self, cols, rows):
        east = self.center_e + (np.asarray(cols, dtype=float) - (self.width - 1) / 2.0) * self.mpp
        north = self.center_n - (np.asarray(rows, dtype=float) - (self.height - 1) / 2.0) * self.mpp
        return east, north

    def visible(self, pts_en: np.ndarray, pad_m: float = 0.0) -> bool:
        """Whether a bounding box of points can touch the grid."""
        pts = np.asarray(pts_en, dtype=float).reshape(-1, 2)
        half_w = self.width * self.mpp / 2.0 + pad_m
        half_h = self.height * self.mpp / 2.0 + pad_m
        return bool(pts[:, 0].max() >= self.center_e - half_w and pts[:, 0].min() <= self.center_e + half_w
                    and pts[:, 1].max() >= self.center_n - half_h and pts[:, 1].min() <= self.center_n + half_h)


def strip_polygon(points: np.ndarray, left_m: float, right_m: float) -> np.ndarray:
    """Polygon of the band between `left_m` left of a polyline and `right_m` right of it."""
    a = offset_polyline(points, -left_m)
    b = offset_polyline(points, right_m)
    return np.concatenate([a, b[::-1]])


def sub_polyline(points: np.ndarray, s: np.ndarray, s0: float, s1: float) -> np.ndarray:
    s0, s1 = max(s0, 0.0), min(s1, s[-1])
    inner = (s > s0) & (s < s1)
    p0 = np.array([np.interp(s0, s, points[:, 0]), np.interp(s0, s, points[:, 1])])
    p1 = np.array([np.interp(s1, s, points[:, 0]), np.interp(s1, s, points[:, 1])])
    return np.concatenate([p0[None], points[inner], p1[None]])


def _fill(canvas, tf: GridTransform, polys: list[np.ndarray], value, aa: bool = False) -> None:
    polys = [p for p in polys if len(p) >= 3 and tf.visible(p, 2.0)]
    if polys:
        cv2.fillPoly(canvas, [tf.fixed(p) for p in polys], value, lineType=cv2.LINE_AA if aa else cv2.LINE_8,
                     shift=SHIFT)


def _circle(canvas, tf: GridTransform, center, radius_m: float, value) -> None:
    if tf.visible(np.asarray(center), radius_m + 1.0):
        c = tf.fixed(center)[0]
        cv2.circle(canvas, (int(c[0]), int(c[1])), int(round(radius_m / tf.mpp * SCALE)), value, thickness=-1,
                   lineType=cv2.LINE_8, shift=SHIFT)


def paint_polygons(roads: RoadGraph, layout: Layout, style: str) -> list[np.ndarray]:
    """Every piece of road paint as a polygon in ENU metres (computed once per world)."""
    polys: list[np.ndarray] = []
    w = PAINT_WIDTH_M
    for e in roads.edges:
        pts = e.points_en
        s = arc_lengths(pts)
        length = s[-1]
        clear_a = roads.node_clearance_m(e.a) if roads.degree(e.a) >= 3 else 0.0
        clear_b = roads.node_clearance_m(e.b) if roads.degree(e.b) >= 3 else 0.0
        if roads.is_dead_end(e.a) and style == "suburban":
            clear_a = CUL_DE_SAC_RADIUS_M
        if roads.is_dead_end(e.b) and style == "suburban":
            clear_b = CUL_DE_SAC_RADIUS_M
        s0, s1 = clear_a, length - clear_b
        if s1 - s0 < 4.0:
            continue
        lane_edge = e.lanes_per_direction * e.lane_width_m

        def band(a, b, off, width=w):
            sub = sub_polyline(pts, s, a, b)
            return strip_polygon(sub, -off + width / 2.0, off + width / 2.0)

        def dashed(off, dash, gap):
            period = dash + gap
            start = s0 + ((-s0) % period) + 1.0
            for a in np.arange(start, s1 - dash, period):
                polys.append(band(a, a + dash, off))

        rural = e.kind == "country"
        if e.lanes_per_direction >= 2:
            polys.append(band(s0, s1, -0.15))
            polys.append(band(s0, s1, 0.15))
            for k in range(1, e.lanes_per_direction):
                dashed(k * e.lane_width_m, 3.0, 6.0)
                dashed(-k * e.lane_width_m, 3.0, 6.0)
        else:
            dashed(0.0, 4.0 if rural else 3.0, 8.0 if rural else 6.0)
        if rural or e.kind == "arterial":
            polys.append(band(s0, s1, lane_edge - 0.25))
            polys.append(band(s0, s1, -(lane_edge - 0.25)))
        if e.parking_lane_m > 0:
            polys.append(band(s0, s1, lane_edge))
            polys.append(band(s0, s1, -lane_edge))
        # stop lines across the right half before intersections (right-hand traffic)
        if style != "rural":
            if roads.degree(e.b) >= 3:
                sub = sub_polyline(pts, s, s1 - STOP_LINE_M, s1)
                polys.append(strip_polygon(sub, -0.1, lane_edge))
            if roads.degree(e.a) >= 3:
                sub = sub_polyline(pts, s, s0, s0 + STOP_LINE_M)
                polys.append(strip_polygon(sub, lane_edge, -0.1))
        # zebra crossings: stripes along the road, across the whole carriageway
        for c in e.crossings_s_m:
            half = e.half_width_m
            for off in np.arange(-half + 0.5, half - 0.25, 1.0):
                polys.append(band(c - 2.0, c + 2.0, off, 0.5))
    for a in layout.areas:
        if a.kind != "parking":
            continue
        polys.extend(_stall_lines(a))
    return polys


def _stall_lines(lot) -> list[np.ndarray]:
    c = np.asarray(lot.center_en)
    u = np.array([math.cos(lot.angle_rad), math.sin(lot.angle_rad)])
    v = np.array([-u[1], u[0]])
    n_stalls = int(lot.length_m // 2.6)
    module = 16.0
    rows = int(round(lot.width_m / module)) * 2
    out = []
    for r in range(rows):
        pair, inner = divmod(r, 2)
        y_edge = -lot.width_m / 2.0 + pair * module + (0.0 if inner == 0 else module)
        y_in = y_edge + (5.0 if inner == 0 else -5.0)
        for k in range(n_stalls + 1):
            x = (k - n_stalls / 2.0) * 2.6
            p0 = c + u * x + v * y_edge
            p1 = c + u * x + v * y_in
            d = (p1 - p0) / max(np.linalg.norm(p1 - p0), 1e-9)
            n = np.array([-d[1], d[0]]) * 0.06
            out.append(np.array([p0 - n, p1 - n, p1 + n, p0 + n]))
    return out


def rasterize_ground(roads: RoadGraph, layout: Layout, style: str, tf: GridTransform,
                     paint: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(classes uint8 HxW, paint coverage uint8 HxW 0..255) on the grid `tf`."""
    classes = np.full((tf.height, tf.width), BACKGROUND[style], dtype=np.uint8)
    for a in layout.areas:
        if a.kind == "field":
            _field(classes, tf, a)
        elif a.kind == "lawn":
            _fill(classes, tf, [a.corners()], GRASS)
        elif a.kind == "paving":
            _fill(classes, tf, [a.corners()], PAVING)
        elif a.kind == "driveway":
            _fill(classes, tf, [a.corners()], GRAVEL if style == "rural" else DRIVEWAY)
    for a in layout.areas:
        if a.kind == "parking":
            _fill(classes, tf, [a.corners()], PARKING)
    cul_de_sac = style == "suburban"
    # sidewalks (or gravel shoulders), kerbs, carriageways
    for e in roads.edges:
        side = e.sidewalk_m if e.sidewalk_m > 0 else 1.2
        _fill(classes, tf, [strip_polygon(e.points_en, e.half_width_m + side, e.half_width_m + side)],
              SIDEWALK if e.sidewalk_m > 0 else GRAVEL)
    for node in range(len(roads.nodes_en)):
        inc = [roads.edges[k] for k in roads.incident[node]]
        side = max(e.half_width_m + (e.sidewalk_m if e.sidewalk_m > 0 else 1.2) for e in inc)
        if roads.is_dead_end(node) and cul_de_sac:
            side = CUL_DE_SAC_RADIUS_M + inc[0].sidewalk_m
        _circle(classes, tf, roads.nodes_en[node], side, SIDEWALK if inc[0].sidewalk_m > 0 else GRAVEL)
    for e in roads.edges:
        if e.sidewalk_m > 0:
            _fill(classes, tf, [strip_polygon(e.points_en, e.half_width_m + 0.25, e.half_width_m + 0.25)], KERB)
    for node in range(len(roads.nodes_en)):
        if roads.is_dead_end(node) and cul_de_sac:
            _circle(classes, tf, roads.nodes_en[node], CUL_DE_SAC_RADIUS_M + 0.25, KERB)
    for e in roads.edges:
        _fill(classes, tf, [strip_polygon(e.points_en, e.half_width_m, e.half_width_m)], ROAD)
    for node in range(len(roads.nodes_en)):
        inc = [roads.edges[k] for k in roads.incident[node]]
        radius = max(e.half_width_m for e in inc)
        if roads.is_dead_end(node) and cul_de_sac:
            radius = CUL_DE_SAC_RADIUS_M
        _circle(classes, tf, roads.nodes_en[node], radius, ROAD)
    _fill(classes, tf, [b.corners() for b in layout.buildings], BUILDING)
    coverage = np.zeros((tf.height, tf.width), dtype=np.uint8)
    polys = paint_polygons(roads, layout, style) if paint is None else paint
    _fill(coverage, tf, polys, 255, aa=True)
    return classes, coverage


def _field(classes: np.ndarray, tf: GridTransform, a) -> None:
    corners = a.corners()
    if not tf.visible(corners, 2.0):
        return
    px = tf.px(corners)
    x0 = max(int(np.floor(px[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(px[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(px[:, 0].max())) + 2, tf.width)
    y1 = min(int(np.ceil(px[:, 1].max())) + 2, tf.height)
    if x1 <= x0 or y1 <= y0:
        return
    local = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(local, [np.round((px - [x0, y0]) * SCALE).astype(np.int32)], 1, shift=SHIFT)
    crop = {"green": CROP_GREEN, "gold": CROP_GOLD, "soil": SOIL, "meadow": MEADOW}[a.crop]
    gap = {"green": SOIL, "gold": SOIL, "soil": SOIL_DARK, "meadow": GRASS}[a.crop]
    spacing = a.row_spacing_m if a.crop != "meadow" else 6.0
    # rows along the field's length: a stripe pattern from the distance across the rows
    cols, rows = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1))
    east, north = tf.en_of_pixels(cols, rows)
    across = (-(east - a.center_en[0]) * math.sin(a.angle_rad) + (north - a.center_en[1]) * math.cos(a.angle_rad))
    stripe = np.mod(across / spacing, 1.0) < (0.4 if a.crop != "meadow" else 0.5)
    window = classes[y0:y1, x0:x1]
    window[local > 0] = crop
    window[(local > 0) & stripe] = gap


# -- texture noise ------------------------------------------------------------------------

class NoiseField:
    """Smooth value noise anchored in the world: lattices of random values at a few cell sizes,
    bilinearly interpolated, so both views see the same stains, patches and wear."""

    CELLS_M = (24.0, 6.0, 1.5)
    WEIGHTS = (0.5, 0.3, 0.2)

    def __init__(self, rng: np.random.Generator, half_extent_m: float):
        self.half = float(half_extent_m)
        self.lattices = []
        for cell in self.CELLS_M:
            n = int(math.ceil(2 * self.half / cell)) + 3
            self.lattices.append(rng.uniform(-1.0, 1.0, (n, n)).astype(np.float32))

    def sample(self, east, north, octaves: int | None = None) -> np.ndarray:
        """Noise in about [-1, 1] at arbitrary ENU points (any shape); `octaves` limits it to
        the coarsest few lattices (cheaper, smoother)."""
        east = np.asarray(east, dtype=np.float32)
        north = np.asarray(north, dtype=np.float32)
        shape = east.shape
        if east.ndim == 2 and max(shape) < 32000:
            e, n = east, north
        else:  # OpenCV maps are at most 32767 wide: fold long vectors into rows
            size = east.size
            width = 4096
            rows = max(1, -(-size // width))
            e = np.zeros(rows * width, np.float32)
            n = np.zeros(rows * width, np.float32)
            e[:size] = east.reshape(-1)
            n[:size] = north.reshape(-1)
            e, n = e.reshape(rows, width), n.reshape(rows, width)
        out = np.zeros(e.shape, dtype=np.float32)
        k = len(self.CELLS_M) if octaves is None else max(1, min(int(octaves), len(self.CELLS_M)))
        for cell, weight, lat in zip(self.CELLS_M[:k], self.WEIGHTS[:k], self.lattices[:k]):
            if octaves is not None:
                weight = weight / sum(self.WEIGHTS[:k])
            mx = (e + np.float32(self.half)) * np.float32(1.0 / cell) + np.float32(1.0)
            my = (np.float32(self.half) - n) * np.float32(1.0 / cell) + np.float32(1.0)
            out += np.float32(weight) * cv2.remap(lat, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return out.reshape(-1)[:east.size].reshape(shape)


def hash_noise(ix, iy, salt: int) -> np.ndarray:
    """Deterministic white noise in [0, 1) from lattice coordinates (floats are floored)."""
    x = np.floor(ix).astype(np.int64).astype(np.uint32) if np.asarray(ix).dtype.kind == "f" else \
        np.asarray(ix).astype(np.int64).astype(np.uint32)
    y = np.floor(iy).astype(np.int64).astype(np.uint32) if np.asarray(iy).dtype.kind == "f" else \
        np.asarray(iy).astype(np.int64).astype(np.uint32)
    h = (x * np.uint32(0x8DA6B343)) ^ (y * np.uint32(0xD8163841)) ^ np.uint32((salt * 0x9E3779B1) & 0xFFFFFFFF)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return h.astype(np.float32) * np.float32(1.0 / 4294967296.0)
