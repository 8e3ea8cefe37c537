"""The orthophoto of a world with a satellite look, and its MBTiles pyramid.

Rendered north-up (grid convention of `cvgl_ros.geo.grid`) in bands of rows so memory stays
bounded, at `world.ortho_mpp` (about 1.3x finer than the z19 tiles). Per band:

1. ground materials and road paint from `world_raster.rasterize_ground`, coloured with a
   summer palette, modulated by world-anchored value noise (patches, wear, dry grass) and
   per-pixel grain; paint is worn where the noise is high;
2. cars parked and driving at the moment of the satellite pass (their own seeded draw);
3. cast shadows for the satellite's sun (`world.sun`): buildings (hull of the footprint and
   the footprint displaced by height / tan(elevation)), tree crowns with trunks, cars;
   softened by a blur, tinted blue by skylight;
4. roofs: flat (gravel, membrane, tar, metal or green, with parapets and rooftop units) or
   gable (two slopes lit by the sun, ridge line);
5. tree crowns, shaded as hemispheres towards the sun with leafy texture and ragged edges;
6. atmosphere (slight haze) and the sensor (blur of ~0.6 px, grain).

`write_tiles` paints the orthophoto into the world's zoom (z19) with
`cvgl_ros.tiles.add_enu_raster` and builds `OVERVIEW_LEVELS` overview levels.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from tqdm import tqdm

from cvgl_ros.sim.world_cars import Car, TrafficModel, parked_cars
from cvgl_ros.sim.world_layout import ROOF_COLOURS, rect_corners
from cvgl_ros.sim.world_raster import (
    BUILDING, CROP_GOLD, CROP_GREEN, DRIVEWAY, GRASS, GRAVEL, KERB, MEADOW, N_CLASSES, PARKING, PAVING, ROAD,
    SIDEWALK, SOIL, SOIL_DARK, SCALE, SHIFT, GridTransform, NoiseField, hash_noise, paint_polygons, rasterize_ground,
)

BAND_PX = 512
PAD_PX = 8

ORTHO_RGB = np.zeros((N_CLASSES, 3), np.float32)
ORTHO_NOISE = np.zeros(N_CLASSES, np.float32)
for _cls, _rgb, _amp in [
    (GRASS, (92, 114, 62), 0.20), (MEADOW, (116, 128, 74), 0.22), (SOIL, (132, 112, 88), 0.14),
    (SOIL_DARK, (100, 84, 66), 0.14), (CROP_GREEN, (86, 120, 58), 0.14), (CROP_GOLD, (180, 162, 104), 0.12),
    (ROAD, (80, 82, 86), 0.08), (SIDEWALK, (160, 156, 148), 0.07), (PARKING, (94, 96, 98), 0.08),
    (KERB, (178, 175, 168), 0.05), (BUILDING, (90, 88, 86), 0.0), (GRAVEL, (152, 142, 124), 0.10),
    (PAVING, (152, 144, 132), 0.09), (DRIVEWAY, (142, 134, 126), 0.08),
]:
    ORTHO_RGB[_cls] = _rgb
    ORTHO_NOISE[_cls] = _amp
VEGETATION = np.zeros(N_CLASSES, np.float32)
VEGETATION[[GRASS, MEADOW, CROP_GREEN, CROP_GOLD]] = 1.0
PAINT_RGB = np.array([218, 218, 210], np.float32)
SHADOW_TINT = np.array([0.36, 0.40, 0.50], np.float32)   # what skylight leaves in a shadow
HAZE_RGB = np.array([172, 180, 192], np.float32)
HAZE = 0.07
TREE_SUMMER = np.array([62, 92, 44], np.float32)
CONIFER = np.array([40, 64, 42], np.float32)


def _sun_shade(normal: np.ndarray, sun_dir: np.ndarray) -> float:
    """Brightness of a surface with a unit normal under the sun plus sky light (1 for flat at 45 deg)."""
    return 0.45 + 0.78 * max(0.0, float(np.dot(normal, sun_dir)))


class _OrthoPlan:
    """Everything drawn per band, precomputed once per orthophoto (polygons in ENU metres)."""

    def __init__(self, world):
        self.world = world
        self.sun_dir = world.sun.direction_enu()
        self.noise = world_noise(world)
        self.paint = world_paint(world)
        rng = world.rng("ortho", "cars")
        cars = parked_cars(world.layout.parking_spots, rng, occupancy=0.55)
        cars += TrafficModel(world.roads, world.rng("ortho", "traffic"), world.style).cars_at(0.0)
        self.cars = cars
        self.shadows: list[np.ndarray] = []
        self.shadow_lines: list[tuple[np.ndarray, float]] = []
        for b in world.layout.buildings:
            base = b.corners()
            top = base + world.sun.shadow_offset_en(b.height_m)
            self.shadows.append(cv2.convexHull(np.concatenate([base, top]).astype(np.float32)).reshape(-1, 2))
        trees = world.layout.trees
        ang = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        ring = np.stack([np.cos(ang), np.sin(ang)], axis=1)
        for t in trees:
            mid = 0.5 * (t.canopy_base_m + t.canopy_top_m)
            half_h = 0.5 * (t.canopy_top_m - t.canopy_base_m)
            pts = []
            top_scale = 0.7 if not t.conifer else 0.2
            for z, scale in ((mid - 0.8 * half_h, 0.7), (mid, 1.0), (mid + 0.8 * half_h, top_scale)):
                r = t.canopy_radius_m * scale
                pts.append(np.array([t.east_m, t.north_m]) + r * ring + world.sun.shadow_offset_en(z))
            self.shadows.append(cv2.convexHull(np.concatenate(pts).astype(np.float32)).reshape(-1, 2))
            trunk_top = np.array([t.east_m, t.north_m]) + world.sun.shadow_offset_en(t.canopy_base_m + 0.5)
            self.shadow_lines.append((np.array([[t.east_m, t.north_m], trunk_top]), 2 * t.trunk_radius_m))
        for c in cars:
            base = c.corners()
            top = c.corners(grow_m=-0.2) + world.sun.shadow_offset_en(c.height_m)
            self.shadows.append(cv2.convexHull(np.concatenate([base, top]).astype(np.float32)).reshape(-1, 2))
        self.shadow_n = _north_range(self.shadows)
        self.roofs = [self._roof(i, b) for i, b in enumerate(world.layout.buildings)]
        self.roof_n = _north_range([b.corners() for b in world.layout.buildings])
        self.car_parts = [_car_parts(c) for c in cars]
        self.car_n = _north_range([c.corners() for c in cars])
        # trees, drawn from the lowest crown to the highest
        order = sorted(range(len(trees)), key=lambda i: trees[i].canopy_top_m)
        self.tree_order = np.array(order, dtype=np.int64)
        self.tree_e = np.array([t.east_m for t in trees], np.float64)
        self.tree_n = np.array([t.north_m for t in trees], np.float64)
        self.tree_r = np.array([t.canopy_radius_m for t in trees], np.float64)
        tint = np.array([t.tint for t in trees], np.float32)
        conifer = np.array([t.conifer for t in trees], bool)
        colours = TREE_SUMMER[None, :] * (1.0 + 0.18 * tint[:, None]) + np.array([8, 4, -6], np.float32) * tint[:, None]
        colours[conifer] = CONIFER * (1.0 + 0.1 * tint[conifer, None])
        self.tree_rgb = colours.astype(np.float32) if len(trees) else np.zeros((0, 3), np.float32)
        self.tree_conifer = conifer

    def _roof(self, index: int, b) -> list[tuple[np.ndarray, tuple]]:
        """Roof parts: (polygon, rgb) pairs, drawn in order, and parapet/ridge lines."""
        rng = self.world.rng("roof", index)
        base = np.array(ROOF_COLOURS[b.roof_colour], np.float32) * rng.uniform(0.88, 1.12)
        c = np.asarray(b.center_en)
        u = np.array([math.cos(b.angle_rad), math.sin(b.angle_rad)])
        v = np.array([-u[1], u[0]])
        parts = []
        if b.roof == "gable":
            pitch = math.atan2(b.roof_height_m, b.depth_m / 2.0)
            for side in (1.0, -1.0):
                normal = np.array([*(side * v * math.sin(pitch)), math.cos(pitch)])
                shade = _sun_shade(normal, self.sun_dir)
                poly = np.array([c - u * b.length_m / 2, c + u * b.length_m / 2,
                                 c + u * b.length_m / 2 + side * v * b.depth_m / 2,
                                 c - u * b.length_m / 2 + side * v * b.depth_m / 2])
                parts.append((poly, tuple(float(x) for x in base * shade), None))
            ridge = np.array([c - u * b.length_m / 2, c + u * b.length_m / 2])
            parts.append((ridge, tuple(float(x) for x in base * 1.25), 0.3))
        else:
            flat = _sun_shade(np.array([0.0, 0.0, 1.0]), self.sun_dir)
            parts.append((b.corners(), tuple(float(x) for x in base * flat), None))
            parts.append((np.concatenate([b.corners(), b.corners()[:1]]), tuple(float(x) for x in base * flat * 1.22),
                          0.45))
            for _ in range(int(rng.integers(0, 5)) if b.kind != "house" else 0):
                w, d = rng.uniform(1.2, 3.5), rng.uniform(1.2, 3.0)
                du = rng.uniform(-0.35, 0.35) * max(b.length_m - w, 0.0)
                dv = rng.uniform(-0.35, 0.35) * max(b.depth_m - d, 0.0)
                box_c = c + u * du + v * dv
                poly = rect_corners(box_c, w, d, b.angle_rad)
                shadow = poly + self.world.sun.shadow_offset_en(1.2)
                parts.append((shadow, tuple(float(x) for x in base * flat * 0.55), None))
                grey = float(rng.uniform(150, 205))
                parts.append((poly, (grey, grey, grey * 1.02), None))
        return parts

    # -- one band
    def render_band(self, tf: GridTransform) -> np.ndarray:
        world = self.world
        h, w = tf.height, tf.width
        classes, paint = rasterize_ground(world.roads, world.layout, world.style, tf, self.paint)
        east_1d, _ = tf.en_of_pixels(np.arange(w), 0)
        _, north_1d = tf.en_of_pixels(0, np.arange(h))
        east = np.broadcast_to(east_1d[None, :].astype(np.float32), (h, w))
        north = np.broadcast_to(north_1d[:, None].astype(np.float32), (h, w))
        noise = self.noise.sample(east, north)
        noise2 = self.noise.sample(east + 517.3, north - 211.9)
        ix = np.round(east_1d / tf.mpp).astype(np.int64)[None, :]
        iy = np.round(north_1d / tf.mpp).astype(np.int64)[:, None]
        grain = hash_noise(ix, iy, world.seed) - 0.5

        rgb = ORTHO_RGB[classes]
        rgb *= (1.0 + ORTHO_NOISE[classes] * noise + 0.10 * grain)[..., None]
        rgb += (VEGETATION[classes] * noise2)[..., None] * np.array([20, 12, -4], np.float32)
        alpha = (paint.astype(np.float32) / 255.0) * (0.88 - 0.3 * np.clip(noise, 0, 1))
        rgb += alpha[..., None] * (PAINT_RGB - rgb)

        for k in _in_band(self.car_n, tf):
            for poly, colour in self.car_parts[k]:
                cv2.fillPoly(rgb, [tf.fixed(poly)], colour, lineType=cv2.LINE_AA, shift=SHIFT)

        shadow = np.zeros((h, w), np.float32)
        polys = [tf.fixed(self.shadows[k]) for k in _in_band(self.shadow_n, tf)]
        if polys:
            for p in polys:  # one call per polygon: overlapping shadows must not cancel
                cv2.fillPoly(shadow, [p], 1.0, shift=SHIFT)
        for line, width in self.shadow_lines:
            if tf.visible(line, 2.0):
                cv2.polylines(shadow, [tf.fixed(line)], False, 1.0, thickness=max(1, int(round(width / tf.mpp))),
                              shift=SHIFT)
        shadow = cv2.GaussianBlur(shadow, (0, 0), max(0.5, 0.2 / tf.mpp))
        rgb *= 1.0 - shadow[..., None] * (1.0 - SHADOW_TINT)

        roof_mask = np.zeros((h, w), np.uint8)
        for k in _in_band(self.roof_n, tf):
            for poly, colour, line_w in self.roofs[k]:
                if line_w is None:
                    cv2.fillPoly(rgb, [tf.fixed(poly)], colour, lineType=cv2.LINE_AA, shift=SHIFT)
                    cv2.fillPoly(roof_mask, [tf.fixed(poly)], 1, shift=SHIFT)
                else:
                    cv2.polylines(rgb, [tf.fixed(poly)], False, colour,
                                  thickness=max(1, int(round(line_w / tf.mpp))), lineType=cv2.LINE_AA, shift=SHIFT)
        roof = roof_mask > 0
        rgb[roof] *= (1.0 + 0.06 * noise[roof] + 0.12 * grain[roof])[:, None]

        self._trees(rgb, tf, east_1d, north_1d, grain)

        rgb = rgb * (1.0 - HAZE) + HAZE * HAZE_RGB
        rgb = cv2.GaussianBlur(rgb, (0, 0), 0.6)
        rgb += (grain * 6.0)[..., None]
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    def _trees(self, rgb, tf: GridTransform, east_1d, north_1d, grain) -> None:
        if not len(self.tree_order):
            return
        half_h = tf.height * tf.mpp / 2.0
        near = np.abs(self.tree_n - tf.center_n) <= half_h + self.tree_r + 1.0
        order = self.tree_order[near[self.tree_order]]
        if not len(order):
            return
        index = np.full((tf.height, tf.width), -1, np.int32)
        centres = tf.fixed(np.stack([self.tree_e[order], self.tree_n[order]], axis=1))
        radii = np.round(self.tree_r[order] / tf.mpp * SCALE).astype(int)
        for k, (cx, cy), r in zip(order, centres, radii):
            cv2.circle(index, (int(cx), int(cy)), int(r), int(k), thickness=-1, shift=SHIFT)
        rows, cols = np.nonzero(index >= 0)
        k = index[rows, cols]
        dx = (east_1d[cols] - self.tree_e[k]) / self.tree_r[k]
        dy = (north_1d[rows] - self.tree_n[k]) / self.tree_r[k]
        d2 = dx * dx + dy * dy
        # ragged crowns: clumps of leaves ~0.4 m
        clump = hash_noise(np.floor(east_1d[cols] / 0.4), np.floor(north_1d[rows] / 0.4), 77)
        keep = d2 < 1.0 - 0.45 * clump * np.clip(d2 * 1.6 - 0.4, 0, 1)
        rows, cols, k, dx, dy, d2, clump = rows[keep], cols[keep], k[keep], dx[keep], dy[keep], d2[keep], clump[keep]
        dz = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
        sun = self.sun_dir
        lambert = np.clip(dx * sun[0] + dy * sun[1] + dz * sun[2], 0.0, 1.0)
        shade = 0.38 + 0.75 * lambert
        shade *= 0.78 + 0.4 * clump
        shade[self.tree_conifer[k]] *= 0.9
        rgb[rows, cols] = self.tree_rgb[k] * shade[:, None].astype(np.float32)


def _north_range(polys: list[np.ndarray]) -> np.ndarray:
    if not polys:
        return np.zeros((0, 2))
    return np.array([[p[:, 1].min(), p[:, 1].max()] for p in polys])


def _in_band(north_range: np.ndarray, tf: GridTransform) -> np.ndarray:
    if not len(north_range):
        return np.zeros(0, np.int64)
    half = tf.height * tf.mpp / 2.0 + 1.0
    return np.nonzero((north_range[:, 1] >= tf.center_n - half) & (north_range[:, 0] <= tf.center_n + half))[0]


def _car_parts(c: Car) -> list[tuple[np.ndarray, tuple]]:
    body = np.array(c.rgb, np.float32)
    u = np.array([math.cos(c.yaw_enu_rad), math.sin(c.yaw_enu_rad)])
    centre = np.array([c.east_m, c.north_m])
    glass = (34.0, 38.0, 46.0)
    return [
        (c.corners(), tuple(float(x) for x in body * 0.92)),
        (rect_corners(centre + u * 0.05 * c.length_m, c.length_m * 0.58, c.width_m * 0.84, c.yaw_enu_rad), glass),
        (rect_corners(centre - u * 0.04 * c.length_m, c.length_m * 0.34, c.width_m * 0.76, c.yaw_enu_rad),
         tuple(float(min(255.0, x)) for x in body * 1.08 + 6)),
    ]


def world_noise(world) -> NoiseField:
    if "noise" not in world._cache:
        world._cache["noise"] = NoiseField(world.rng("noise"), world.size_m / 2.0 + 500.0)
    return world._cache["noise"]


def world_paint(world) -> list[np.ndarray]:
    if "paint" not in world._cache:
        world._cache["paint"] = paint_polygons(world.roads, world.layout, world.style)
    return world._cache["paint"]


def render_orthophoto(world, mpp: float | None = None, progress: bool = False):
    """The world's orthophoto: (rgb HxWx3 uint8, GridTransform) centred on the datum."""
    mpp = float(world.ortho_mpp if mpp is None else mpp)
    n = int(math.ceil(world.size_m / mpp))
    full = GridTransform(0.0, 0.0, n, n, mpp)
    out = np.empty((n, n, 3), np.uint8)
    plan = _OrthoPlan(world)
    bands = range(0, n, BAND_PX)
    for r0 in tqdm(bands, desc="orthophoto", unit="band", disable=not progress, leave=False):
        r1 = min(n, r0 + BAND_PX)
        p0, p1 = r0 - PAD_PX, r1 + PAD_PX
        centre_row = (p0 + p1 - 1) / 2.0
        tf = GridTransform(0.0, full.center_n - (centre_row - (n - 1) / 2.0) * mpp, n, p1 - p0, mpp)
        out[r0:r1] = plan.render_band(tf)[PAD_PX:PAD_PX + (r1 - r0)]
    return out, full


def write_tiles(world, path, progress: bool = False) -> int:
    """Render the orthophoto and write it as MBTiles at `world.tile_zoom` plus overviews."""
    from cvgl_ros.sim.world import OVERVIEW_LEVELS
    from cvgl_ros.tiles import EnuRaster, MBTilesStore, add_enu_raster, build_overviews

    rgb, tf = render_orthophoto(world, progress=progress)
    raster = EnuRaster(rgb, world.datum, tf.center_e, tf.center_n, tf.mpp)
    description = (f"cvgl_ros synthetic {world.style} world, seed {world.seed}, {world.size_m:g} m, "
                   f"orthophoto {tf.mpp:g} m/px")
    with MBTilesStore.create(path, name=f"cvgl-sim-{world.style}-{world.seed}", image_format=world.tile_format,
                             description=description) as store:
        written = add_enu_raster(store, raster, zoom=world.tile_zoom)
        del rgb, raster
        written += build_overviews(store, world.tile_zoom - OVERVIEW_LEVELS)
    return written
