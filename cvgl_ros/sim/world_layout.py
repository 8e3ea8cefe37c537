"""What stands in a synthetic world besides its roads: buildings, trees, parking, fields, paved
areas and driveways, placed by style around a `RoadGraph`.

Everything is a small record of floats (ENU metres, radians) so that a world is fully described
by world.json. Placement is sequential and seeded: candidates are tested against an occupancy
raster (0.5 m cells) of what is already there, so nothing overlaps roads or other buildings.

Styles (building heights 4-60 m in all):
  urban     contiguous street walls of 4-8 storey blocks, some 12-17 storey towers, courtyard
            buildings, paved courtyards, parking lots, street trees, kerbside parking
  suburban  detached 1-2 storey gable-roofed houses with gardens and driveways, a few
            apartment and commercial buildings with parking lots, many garden and street trees
  rural     farmsteads (house, barns, sheds) along country roads, crop fields with rows,
            meadows, hedgerows and small woods
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from cvgl_ros.sim.roads import RoadGraph, arc_lengths, point_at

OCC_MPP = 0.5

ROOF_COLOURS = {  # satellite-look roof colours (RGB)
    "tile_red": (150, 78, 58), "tile_brown": (120, 80, 62), "slate": (78, 80, 88), "tile_dark": (95, 70, 60),
    "gravel": (135, 130, 120), "membrane": (190, 190, 186), "tar": (70, 70, 72), "metal": (150, 158, 162),
    "green_roof": (98, 118, 72),
}
FACADE_COLOURS = [
    (196, 186, 166), (180, 160, 130), (160, 90, 70), (210, 205, 195), (150, 150, 150),
    (190, 175, 150), (170, 120, 90), (120, 130, 140), (220, 210, 180), (140, 110, 90),
]
CAR_COLOURS = [
    (230, 230, 228), (30, 30, 32), (160, 162, 165), (110, 112, 116), (150, 30, 30),
    (30, 50, 120), (200, 200, 205), (60, 70, 60), (180, 150, 60), (90, 20, 20),
]


@dataclass
class Building:
    """An extruded rectangle: `length_m` along `angle_rad`, `depth_m` across it."""

    center_en: tuple[float, float]
    length_m: float
    depth_m: float
    angle_rad: float
    wall_height_m: float
    roof: str                 # "flat" or "gable" (ridge along the length)
    roof_height_m: float      # ridge above the eaves (0 for flat)
    roof_colour: str
    facade_rgb: tuple[int, int, int]
    floor_height_m: float
    window_spacing_m: float
    kind: str

    @property
    def height_m(self) -> float:
        return self.wall_height_m + self.roof_height_m

    def corners(self, grow_m: float = 0.0) -> np.ndarray:
        return rect_corners(self.center_en, self.length_m + 2 * grow_m, self.depth_m + 2 * grow_m, self.angle_rad)


@dataclass
class Tree:
    east_m: float
    north_m: float
    canopy_radius_m: float
    canopy_base_m: float
    canopy_top_m: float
    trunk_radius_m: float
    conifer: bool
    tint: float               # -1..1 colour variation of the foliage


@dataclass
class Area:
    """A rotated rectangle of ground cover (field, paving, driveway, parking lot, lawn)."""

    kind: str                 # "field", "paving", "driveway", "parking", "lawn", "wood"
    center_en: tuple[float, float]
    length_m: float
    width_m: float
    angle_rad: float
    crop: str = ""            # fields: "green", "gold", "soil", "meadow"
    row_spacing_m: float = 0.0

    def corners(self) -> np.ndarray:
        return rect_corners(self.center_en, self.length_m, self.width_m, self.angle_rad)


@dataclass
class ParkingSpot:
    east_m: float
    north_m: float
    angle_rad: float


def rect_corners(center, length, width, angle) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    u = np.array([c, s]) * (length / 2.0)
    v = np.array([-s, c]) * (width / 2.0)
    p = np.asarray(center, dtype=float)
    return np.array([p - u - v, p + u - v, p + u + v, p - u + v])


class Occupancy:
    """A coarse raster of taken ground, for rejection sampling of new objects."""

    def __init__(self, size_m: float, mpp: float = OCC_MPP):
        self.mpp = mpp
        self.half = size_m / 2.0
        self.n = int(math.ceil(size_m / mpp))
        self.grid = np.zeros((self.n, self.n), dtype=np.uint8)

    def _px(self, pts: np.ndarray) -> np.ndarray:
        col = (pts[:, 0] + self.half) / self.mpp - 0.5
        row = (self.half - pts[:, 1]) / self.mpp - 0.5
        return np.stack([col, row], axis=1)

    def _window(self, poly_px: np.ndarray):
        x0, y0 = np.floor(poly_px.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(poly_px.max(axis=0)).astype(int) + 2
        return x0, y0, x1, y1

    def inside(self, poly_en: np.ndarray, border_m: float = 0.0) -> bool:
        lo, hi = -self.half + border_m, self.half - border_m
        return bool(np.all((poly_en >= lo) & (poly_en <= hi)))

    def free(self, poly_en: np.ndarray) -> bool:
        """Whether no taken cell lies under the polygon (cells beyond the grid count as free)."""
        px = self._px(poly_en)
        x0, y0, x1, y1 = self._window(px)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.n), min(y1, self.n)
        if x1 <= x0 or y1 <= y0:
            return True
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        cv2.fillPoly(mask, [np.round((px - [x0, y0]) * 16).astype(np.int32)], 1, shift=4)
        return not np.any(self.grid[y0:y1, x0:x1][mask > 0])

    def mark_poly(self, poly_en: np.ndarray, value: int = 1) -> None:
        px = self._px(poly_en)
        cv2.fillPoly(self.grid, [np.round(px * 16).astype(np.int32)], value, shift=4)

    def mark_polyline(self, pts_en: np.ndarray, width_m: float, value: int = 1) -> None:
        px = self._px(pts_en)
        thick = max(1, int(round(width_m / self.mpp)))
        cv2.polylines(self.grid, [np.round(px * 16).astype(np.int32)], False, value, thickness=thick,
                      lineType=cv2.LINE_8, shift=4)

    def mark_circle(self, center_en, radius_m: float, value: int = 1) -> None:
        px = self._px(np.asarray(center_en, dtype=float).reshape(1, 2))[0]
        cv2.circle(self.grid, tuple(np.round(px * 16).astype(int)), int(round(radius_m / self.mpp * 16)), value,
                   thickness=-1, shift=4)


@dataclass
class Layout:
    buildings: list[Building]
    trees: list[Tree]
    areas: list[Area]
    parking_spots: list[ParkingSpot]

    def to_dict(self) -> dict:
        r = lambda v: round(float(v), 3)  # noqa: E731
        return {
            "buildings": [
                {"center_en": [r(b.center_en[0]), r(b.center_en[1])], "length_m": r(b.length_m),
                 "depth_m": r(b.depth_m), "angle_rad": round(float(b.angle_rad), 5),
                 "wall_height_m": r(b.wall_height_m), "roof": b.roof, "roof_height_m": r(b.roof_height_m),
                 "roof_colour": b.roof_colour, "facade_rgb": [int(c) for c in b.facade_rgb],
                 "floor_height_m": r(b.floor_height_m), "window_spacing_m": r(b.window_spacing_m), "kind": b.kind}
                for b in self.buildings],
            "trees": [[r(t.east_m), r(t.north_m), r(t.canopy_radius_m), r(t.canopy_base_m), r(t.canopy_top_m),
                       r(t.trunk_radius_m), int(t.conifer), r(t.tint)] for t in self.trees],
            "tree_fields": ["east_m", "north_m", "canopy_radius_m", "canopy_base_m", "canopy_top_m",
                            "trunk_radius_m", "conifer", "tint"],
            "areas": [
                {"kind": a.kind, "center_en": [r(a.center_en[0]), r(a.center_en[1])], "length_m": r(a.length_m),
                 "width_m": r(a.width_m), "angle_rad": round(float(a.angle_rad), 5), "crop": a.crop,
                 "row_spacing_m": r(a.row_spacing_m)}
                for a in self.areas],
            "parking_spots": [[r(p.east_m), r(p.north_m), round(float(p.angle_rad), 5)] for p in self.parking_spots],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        buildings = [Building((float(b["center_en"][0]), float(b["center_en"][1])), float(b["length_m"]),
                              float(b["depth_m"]), float(b["angle_rad"]), float(b["wall_height_m"]), str(b["roof"]),
                              float(b["roof_height_m"]), str(b["roof_colour"]),
                              tuple(int(c) for c in b["facade_rgb"]), float(b["floor_height_m"]),
                              float(b["window_spacing_m"]), str(b["kind"])) for b in d["buildings"]]
        trees = [Tree(float(t[0]), float(t[1]), float(t[2]), float(t[3]), float(t[4]), float(t[5]), bool(t[6]),
                      float(t[7])) for t in d["trees"]]
        areas = [Area(str(a["kind"]), (float(a["center_en"][0]), float(a["center_en"][1])), float(a["length_m"]),
                      float(a["width_m"]), float(a["angle_rad"]), str(a.get("crop", "")),
                      float(a.get("row_spacing_m", 0.0))) for a in d["areas"]]
        spots = [ParkingSpot(float(p[0]), float(p[1]), float(p[2])) for p in d["parking_spots"]]
        return cls(buildings, trees, areas, spots)


# -- generation --------------------------------------------------------------------------

def generate_layout(rng: np.random.Generator, style: str, size_m: float, roads: RoadGraph) -> Layout:
    """Place everything of a style around `roads` (see the module docstring)."""
    placer = _Placer(rng, style, size_m, roads)
    if style == "urban":
        placer.street_buildings(_urban_frontage, vacant=0.03)
        placer.parking_lots(count=max(1, int(size_m**2 / 120_000)), size=(25, 45), setback=1.0)
        placer.interior_buildings(density=1 / 1500.0, maker=_urban_courtyard_building)
        placer.street_trees(prob=0.5, spacing=(8.0, 13.0), in_sidewalk=True)
        placer.kerb_parking()
        placer.areas_fill("paving", count=int(size_m**2 / 8000), size=(10, 30))
        placer.areas_fill("lawn", count=int(size_m**2 / 20000), size=(15, 40), trees_per_100m2=1.0)
    elif style == "suburban":
        placer.street_buildings(_suburban_house, driveways=True)
        placer.parking_lots(count=max(1, int(size_m**2 / 150_000)), size=(30, 60), setback=4.0,
                            with_building=True)
        placer.street_trees(prob=0.7, spacing=(9.0, 16.0), in_sidewalk=False)
        placer.garden_trees(density=1 / 450.0)
        placer.kerb_parking()
    else:
        placer.farmsteads()
        placer.fields()
        placer.woods(count=max(1, int(size_m**2 / 400_000)))
        placer.hedgerows()
        placer.garden_trees(density=1 / 6000.0)
    return Layout(placer.buildings, placer.trees, placer.areas, placer.spots)


def _urban_frontage(rng) -> dict:
    tower = rng.random() < 0.12
    floors = int(rng.integers(12, 18)) if tower else int(rng.integers(4, 9))
    floor_h = rng.uniform(3.0, 3.4)
    gable = (not tower) and rng.random() < 0.1
    return dict(
        length=rng.uniform(20, 34) if tower else rng.uniform(12, 30), depth=rng.uniform(14, 22),
        gap=0.0 if rng.random() < 0.8 else rng.uniform(2.0, 6.0), setback=rng.uniform(0.0, 1.0),
        wall_height=min(60.0 - 3.0, 4.2 + (floors - 1) * floor_h), floor_height=floor_h,
        roof="gable" if gable else "flat", roof_height=rng.uniform(3.0, 5.0) if gable else 0.0,
        roof_colour=(str(rng.choice(["tile_red", "slate", "tile_dark"])) if gable
                     else str(rng.choice(["gravel", "membrane", "tar", "gravel", "gravel", "membrane", "green_roof"]))),
        kind="tower" if tower else "apartment", window_spacing=rng.uniform(2.6, 3.6),
    )


def _urban_courtyard_building(rng) -> dict:
    floors = int(rng.integers(1, 5))
    floor_h = rng.uniform(3.0, 3.4)
    return dict(length=rng.uniform(8, 22), depth=rng.uniform(6, 14), wall_height=max(4.0, 0.8 + floors * floor_h),
                floor_height=floor_h, roof="flat", roof_height=0.0,
                roof_colour=str(rng.choice(["gravel", "membrane", "tar", "metal"])), kind="commercial",
                window_spacing=rng.uniform(2.8, 4.0))


def _suburban_house(rng) -> dict:
    r = rng.random()
    if r < 0.08:
        floors = int(rng.integers(3, 5))
        return dict(length=rng.uniform(16, 26), depth=rng.uniform(11, 14), gap=rng.uniform(8, 16),
                    setback=rng.uniform(4, 8), wall_height=floors * 3.0 + 0.5, floor_height=3.0, roof="flat",
                    roof_height=0.0, roof_colour=str(rng.choice(["gravel", "membrane"])), kind="apartment",
                    window_spacing=rng.uniform(2.8, 3.4))
    floors = 1 if rng.random() < 0.35 else 2
    return dict(length=rng.uniform(9, 15), depth=rng.uniform(8, 11), gap=rng.uniform(5, 14),
                setback=rng.uniform(5, 9), wall_height=floors * 2.9 + 0.4, floor_height=2.9, roof="gable",
                roof_height=rng.uniform(2.5, 4.5), roof_colour=str(rng.choice(["tile_red", "tile_brown", "slate",
                                                                                 "tile_dark", "tile_red"])),
                kind="house", window_spacing=rng.uniform(2.6, 3.4))


class _Placer:
    def __init__(self, rng, style, size_m, roads: RoadGraph):
        self.rng = rng
        self.style = style
        self.size_m = size_m
        self.roads = roads
        self.occ = Occupancy(size_m)          # anything taken (roads, buildings, lots, fields)
        self.occ_build = Occupancy(size_m)    # buildings only (trees may overhang paving)
        self.buildings: list[Building] = []
        self.trees: list[Tree] = []
        self.areas: list[Area] = []
        self.spots: list[ParkingSpot] = []
        for k, e in enumerate(roads.edges):
            self.occ.mark_polyline(e.points_en, 2 * (e.half_width_m + max(e.sidewalk_m, 1.0)) + 1.0)
        for node in range(len(roads.nodes_en)):
            r = roads.node_clearance_m(node)
            if roads.is_dead_end(node) and style == "suburban":
                r = 11.0
            self.occ.mark_circle(roads.nodes_en[node], r)
        samples, tangents = [], []
        for e in roads.edges:
            s = arc_lengths(e.points_en)
            q = np.arange(0.0, s[-1], 2.0)
            p, t = point_at(e.points_en, q, s)
            samples.append(p)
            tangents.append(t)
        self.road_pts = np.concatenate(samples)
        self.road_tan = np.concatenate(tangents)
        self.road_tree = cKDTree(self.road_pts)

    # -- helpers
    def _add_building(self, center, length, depth, angle, spec, margin: float,
                      margin_across: float | None = None) -> bool:
        """Place a building unless it overlaps what is there, grown by `margin` along its length
        and `margin_across` (default: `margin`) across it."""
        b = Building((float(center[0]), float(center[1])), float(length), float(depth), float(angle),
                     float(spec["wall_height"]), spec["roof"], float(spec["roof_height"]), spec["roof_colour"],
                     tuple(int(c) for c in FACADE_COLOURS[int(self.rng.integers(len(FACADE_COLOURS)))]),
                     float(spec["floor_height"]), float(spec["window_spacing"]), spec["kind"])
        across = margin if margin_across is None else margin_across
        test = rect_corners(b.center_en, b.length_m + 2 * margin, b.depth_m + 2 * across, b.angle_rad)
        if not self.occ.inside(np.asarray(b.center_en)[None], 0.0) or not self.occ.free(test):
            return False
        self.occ.mark_poly(b.corners())
        self.occ_build.mark_poly(b.corners())
        self.buildings.append(b)
        return True

    def _road_angle(self, p) -> float:
        _, k = self.road_tree.query(p)
        t = self.road_tan[k]
        return math.atan2(t[1], t[0])

    def _add_tree(self, e, n, radius, base, top, conifer=False) -> bool:
        if not self.occ.inside(np.array([[e, n]]), 1.0):
            return False
        trunk = rect_corners((e, n), 1.2, 1.2, 0.0)
        if not self.occ_build.free(trunk):
            return False
        rng = self.rng
        self.trees.append(Tree(float(e), float(n), float(radius), float(base), float(top),
                               float(rng.uniform(0.12, 0.25)), bool(conifer), float(rng.uniform(-1, 1))))
        self.occ_build.mark_circle((e, n), 0.6)
        return True

    # -- street-front buildings
    def street_buildings(self, maker, driveways: bool = False, vacant: float = 0.08) -> None:
        """Buildings fronting every street on both sides; a lot that does not fit is tried
        again at half the frontage, then left as a gap of a few metres."""
        rng = self.rng
        for e in self.roads.edges:
            s_all = arc_lengths(e.points_en)
            length = s_all[-1]
            start = self.roads.node_clearance_m(e.a) + 1.0
            end = length - self.roads.node_clearance_m(e.b) - 1.0
            for side in (1.0, -1.0):  # 1: right of a->b, -1: left
                s = start + rng.uniform(0.0, 3.0)
                while s < end - 7.0:
                    spec = maker(rng)
                    w = min(spec["length"], end - s)
                    if rng.random() < vacant:
                        s += w + spec["gap"]
                        continue
                    placed = False
                    while w >= 7.0 and not placed:
                        p, t = point_at(e.points_en, s + w / 2.0, s_all)
                        right = np.array([t[1], -t[0]]) * side
                        front = e.half_width_m + e.sidewalk_m + (0.5 if e.sidewalk_m else 3.0) + spec["setback"]
                        centre = p + right * (front + spec["depth"] / 2.0)
                        angle = math.atan2(t[1], t[0])
                        margin = -0.6 if spec["gap"] == 0.0 else 1.0
                        placed = self._add_building(centre, w, spec["depth"], angle, spec, margin, -0.6)
                        if not placed:
                            w *= 0.5
                    if placed:
                        if driveways:
                            self._driveway(p, right, t, e, front, w)
                        s += w + spec["gap"]
                    else:
                        s += 3.0

    def _driveway(self, road_p, right, tangent, edge, front, house_len) -> None:
        rng = self.rng
        along = (house_len / 2.0 + 2.0) * (1 if rng.random() < 0.5 else -1)
        base = road_p + tangent * along
        inner = edge.half_width_m + edge.sidewalk_m
        length = front - inner + 5.0
        centre = base + right * (inner + length / 2.0)
        area = Area("driveway", (float(centre[0]), float(centre[1])), float(length), 3.2,
                    math.atan2(right[1], right[0]))
        if self.occ.free(area.corners()):
            self.areas.append(area)
            self.occ.mark_poly(area.corners())
            if rng.random() < 0.6:  # a car on the driveway
                car = base + right * (front - 2.0)
                self.spots.append(ParkingSpot(float(car[0]), float(car[1]), math.atan2(right[1], right[0])))

    def interior_buildings(self, density: float, maker) -> None:
        rng = self.rng
        n = int(self.size_m**2 * density)
        half = self.size_m / 2.0
        for _ in range(n):
            p = rng.uniform(-half, half, 2)
            spec = maker(rng)
            angle = self._road_angle(p) + rng.normal(0.0, 0.05)
            self._add_building(p, spec["length"], spec["depth"], angle, spec, margin=2.5)

    def parking_lots(self, count: int, size, setback: float, with_building: bool = False) -> None:
        rng = self.rng
        edges = self.roads.edges
        lengths = np.array([e.length_m for e in edges])
        for _ in range(count * 6):
            if count <= 0:
                break
            e = edges[int(rng.choice(len(edges), p=lengths / lengths.sum()))]
            s_all = arc_lengths(e.points_en)
            if s_all[-1] < 60:
                continue
            s = rng.uniform(0.3, 0.7) * s_all[-1]
            p, t = point_at(e.points_en, s, s_all)
            side = 1.0 if rng.random() < 0.5 else -1.0
            right = np.array([t[1], -t[0]]) * side
            rows = int(rng.integers(1, 3)) * 2
            depth = rows / 2 * (2 * 5.0 + 6.0)
            length = rng.uniform(*size)
            front = e.half_width_m + e.sidewalk_m + setback
            centre = p + right * (front + depth / 2.0)
            angle = math.atan2(t[1], t[0])
            lot = Area("parking", (float(centre[0]), float(centre[1])), float(length), float(depth), angle)
            if not self.occ.inside(lot.corners(), 2.0) or not self.occ.free(lot.corners()):
                continue
            self.areas.append(lot)
            self.occ.mark_poly(lot.corners())
            self._lot_spots(lot, rows)
            count -= 1
            if with_building:
                spec = dict(wall_height=rng.uniform(5.0, 9.0), floor_height=rng.uniform(4.0, 5.0), roof="flat",
                            roof_height=0.0, roof_colour=str(rng.choice(["membrane", "metal", "gravel"])),
                            kind="commercial", window_spacing=rng.uniform(3.0, 5.0))
                bdepth = rng.uniform(18, 30)
                bc = centre + right * (depth / 2.0 + 3.0 + bdepth / 2.0)
                self._add_building(bc, length * rng.uniform(0.8, 1.1), bdepth, angle, spec, margin=1.0)

    def _lot_spots(self, lot: Area, rows: int) -> None:
        c = np.asarray(lot.center_en)
        u = np.array([math.cos(lot.angle_rad), math.sin(lot.angle_rad)])
        v = np.array([-u[1], u[0]])
        n_stalls = int(lot.length_m // 2.6)
        xs = (np.arange(n_stalls) - (n_stalls - 1) / 2.0) * 2.6
        module = 2 * 5.0 + 6.0
        for r in range(rows):
            pair, inner = divmod(r, 2)
            y0 = -lot.width_m / 2.0 + pair * module + (2.5 if inner == 0 else module - 2.5)
            for x in xs:
                p = c + u * x + v * y0
                self.spots.append(ParkingSpot(float(p[0]), float(p[1]), lot.angle_rad + math.pi / 2.0))

    def kerb_parking(self) -> None:
        for e in self.roads.edges:
            if e.parking_lane_m <= 0:
                continue
            s_all = arc_lengths(e.points_en)
            start = self.roads.node_clearance_m(e.a) + 4.0
            end = s_all[-1] - self.roads.node_clearance_m(e.b) - 4.0
            avoid = np.array(e.crossings_s_m + [-1e9])
            offset = e.lanes_per_direction * e.lane_width_m + e.parking_lane_m / 2.0
            for side in (1.0, -1.0):
                for s in np.arange(start, end, 6.0):
                    if np.min(np.abs(avoid - s)) < 6.0:
                        continue
                    p, t = point_at(e.points_en, s, s_all)
                    q = p + np.array([t[1], -t[0]]) * side * offset
                    yaw = math.atan2(t[1], t[0]) + (0.0 if side > 0 else math.pi)
                    self.spots.append(ParkingSpot(float(q[0]), float(q[1]), yaw))

    # -- vegetation and ground cover
    def street_trees(self, prob: float, spacing, in_sidewalk: bool) -> None:
        rng = self.rng
        for e in self.roads.edges:
            s_all = arc_lengths(e.points_en)
            start = self.roads.node_clearance_m(e.a) + 3.0
            end = s_all[-1] - self.roads.node_clearance_m(e.b) - 3.0
            avoid = np.array(e.crossings_s_m + [-1e9])
            for side in (1.0, -1.0):
                if rng.random() > prob:
                    continue
                radius = rng.uniform(2.5, 4.5)
                offset = e.half_width_m + (0.9 if in_sidewalk else e.sidewalk_m + 1.5)
                s = start + rng.uniform(0.0, spacing[0])
                while s < end:
                    if np.min(np.abs(avoid - s)) > 4.0:
                        p, t = point_at(e.points_en, s, s_all)
                        q = p + np.array([t[1], -t[0]]) * side * offset
                        top = rng.uniform(7.0, 13.0)
                        self._add_tree(q[0], q[1], radius * rng.uniform(0.85, 1.15), rng.uniform(2.5, 3.5), top)
                    s += rng.uniform(*spacing)

    def garden_trees(self, density: float) -> None:
        rng = self.rng
        half = self.size_m / 2.0
        for _ in range(int(self.size_m**2 * density)):
            p = rng.uniform(-half, half, 2)
            radius = rng.uniform(1.8, 4.5)
            if not self.occ.free(rect_corners(p, 1.5, 1.5, 0.0)):
                continue
            conifer = rng.random() < 0.2
            top = rng.uniform(5.0, 14.0)
            self._add_tree(p[0], p[1], radius * (0.6 if conifer else 1.0), rng.uniform(1.0, 2.5) if conifer
                           else rng.uniform(1.8, 3.5), top, conifer)

    def areas_fill(self, kind: str, count: int, size, trees_per_100m2: float = 0.0) -> None:
        rng = self.rng
        half = self.size_m / 2.0
        for _ in range(count * 3):
            if count <= 0:
                break
            p = rng.uniform(-half, half, 2)
            a = Area(kind, (float(p[0]), float(p[1])), float(rng.uniform(*size)), float(rng.uniform(*size)),
                     self._road_angle(p))
            if not self.occ.inside(a.corners(), 1.0) or not self.occ.free(a.corners()):
                continue
            self.areas.append(a)
            self.occ.mark_poly(a.corners())
            count -= 1
            for _ in range(int(a.length_m * a.width_m / 100.0 * trees_per_100m2)):
                q = np.asarray(a.center_en) + rng.uniform(-0.4, 0.4, 2) * min(a.length_m, a.width_m)
                self._add_tree(q[0], q[1], rng.uniform(2.5, 4.5), rng.uniform(2.0, 3.0), rng.uniform(7, 14))

    def farmsteads(self) -> None:
        rng = self.rng
        for e in self.roads.edges:
            s_all = arc_lengths(e.points_en)
            n = int(s_all[-1] // 250.0) + (1 if rng.random() < 0.5 else 0)
            for _ in range(n):
                if s_all[-1] < 60:
                    break
                s = rng.uniform(25.0, s_all[-1] - 25.0)
                p, t = point_at(e.points_en, s, s_all)
                side = 1.0 if rng.random() < 0.5 else -1.0
                right = np.array([t[1], -t[0]]) * side
                angle = math.atan2(t[1], t[0])
                base = p + right * (e.half_width_m + rng.uniform(10.0, 18.0))
                specs = [
                    dict(length=rng.uniform(10, 15), depth=rng.uniform(9, 12), wall_height=rng.uniform(4.5, 6.5),
                         floor_height=2.9, roof="gable", roof_height=rng.uniform(3.0, 5.0),
                         roof_colour=str(rng.choice(["tile_red", "tile_brown", "slate"])), kind="house",
                         window_spacing=rng.uniform(2.6, 3.4)),
                    dict(length=rng.uniform(22, 40), depth=rng.uniform(12, 20), wall_height=rng.uniform(5.0, 8.0),
                         floor_height=5.0, roof="gable", roof_height=rng.uniform(3.0, 5.0),
                         roof_colour=str(rng.choice(["metal", "tile_dark", "slate", "tile_brown"])), kind="barn",
                         window_spacing=rng.uniform(5.0, 8.0)),
                    dict(length=rng.uniform(8, 14), depth=rng.uniform(6, 9), wall_height=rng.uniform(3.5, 4.5),
                         floor_height=3.5, roof="gable", roof_height=rng.uniform(1.0, 2.0),
                         roof_colour=str(rng.choice(["metal", "tile_dark"])), kind="shed", window_spacing=6.0),
                ]
                offsets = [(0.0, 0.0), (rng.uniform(18, 30), rng.uniform(8, 20)), (rng.uniform(-25, -12),
                                                                                  rng.uniform(12, 24))]
                placed = 0
                for spec, (du, dv) in zip(specs, offsets):
                    c = base + t * du + right * (dv + spec["depth"] / 2.0)
                    turn = 0.0 if rng.random() < 0.7 else math.pi / 2.0
                    placed += self._add_building(c, spec["length"], spec["depth"], angle + turn, spec, margin=3.0)
                if placed:
                    yard = Area("paving", (float(base[0] + right[0] * 10), float(base[1] + right[1] * 10)), 26.0,
                                14.0, angle)
                    if self.occ.free(yard.corners()):
                        self.areas.append(Area("driveway", yard.center_en, yard.length_m, yard.width_m, angle))
                        self.occ.mark_poly(yard.corners())
                    for _ in range(int(rng.integers(2, 6))):
                        q = base + right * rng.uniform(-5, 35) + t * rng.uniform(-30, 30)
                        self._add_tree(q[0], q[1], rng.uniform(3, 5), rng.uniform(2, 3), rng.uniform(8, 15))

    def fields(self) -> None:
        rng = self.rng
        half = self.size_m / 2.0
        n = int(self.size_m**2 / 6000.0)
        crops = ["green", "gold", "soil", "meadow", "green", "gold"]
        for _ in range(n):
            p = rng.uniform(-half, half, 2)
            length, width = rng.uniform(60, 220), rng.uniform(40, 140)
            a = Area("field", (float(p[0]), float(p[1])), float(length), float(width),
                     self._road_angle(p) + (0.0 if rng.random() < 0.7 else math.pi / 2.0),
                     crop=str(rng.choice(crops)), row_spacing_m=float(rng.uniform(0.8, 2.0)))
            grown = rect_corners(a.center_en, length + 6.0, width + 6.0, a.angle_rad)
            if not self.occ.inside(a.corners(), 0.0) or not self.occ.free(grown):
                # shrink once before giving up
                a.length_m *= 0.5
                a.width_m *= 0.6
                grown = rect_corners(a.center_en, a.length_m + 6.0, a.width_m + 6.0, a.angle_rad)
                if not self.occ.inside(a.corners(), 0.0) or not self.occ.free(grown):
                    continue
            self.areas.append(a)
            self.occ.mark_poly(a.corners())

    def woods(self, count: int) -> None:
        rng = self.rng
        half = self.size_m / 2.0
        for _ in range(count):
            c = rng.uniform(-half * 0.8, half * 0.8, 2)
            radius = rng.uniform(35.0, 80.0)
            n = int(math.pi * radius**2 / 30.0)
            for _ in range(n):
                r = radius * math.sqrt(rng.random())
                phi = rng.uniform(0, 2 * math.pi)
                q = c + r * np.array([math.cos(phi), math.sin(phi)])
                if not self.occ.free(rect_corners(q, 1.0, 1.0, 0.0)):
                    continue
                conifer = rng.random() < 0.4
                top = rng.uniform(12.0, 22.0)
                self._add_tree(q[0], q[1], rng.uniform(2.0, 3.0) if conifer else rng.uniform(3.0, 5.0),
                               rng.uniform(2.0, 5.0), top, conifer)

    def hedgerows(self) -> None:
        rng = self.rng
        for a in [a for a in self.areas if a.kind == "field"]:
            if rng.random() > 0.35:
                continue
            corners = rect_corners(a.center_en, a.length_m + 4.0, a.width_m + 4.0, a.angle_rad)
            k = int(rng.integers(4))
            p0, p1 = corners[k], corners[(k + 1) % 4]
            d = np.linalg.norm(p1 - p0)
            for x in np.arange(3.0, d - 3.0, rng.uniform(5.0, 8.0)):
                q = p0 + (p1 - p0) * (x / d)
                self._add_tree(q[0], q[1], rng.uniform(2.0, 3.5), rng.uniform(1.0, 2.0), rng.uniform(6.0, 11.0))
