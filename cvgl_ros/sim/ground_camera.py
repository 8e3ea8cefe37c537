"""The ground camera: a pinhole camera on a car, rendering a world's 3-D scene by ray casting.

    from cvgl_ros.sim.ground_camera import default_camera, GroundRenderer
    cam = default_camera(width=512, height=128)      # KITTI colour camera, scaled; 1.65 m high
    renderer = GroundRenderer(world, cam, appearance_seed=3)
    rgb = renderer.render(east_m, north_m, yaw_enu_rad, time_s=0.0)   # HxWx3 uint8

Camera. `default_camera` scales the intrinsics of KITTI's rectified colour camera (image_02,
P_rect_02 of the 2011_09_26 calibration: fx = fy = 721.5377, cx = 609.5593, cy = 172.854
for 1242 x 375 px) to the chosen size, as the cross-view methods of "Learning Dense Flow
Field for Highly-accurate Cross-view Camera Localization" and its KITTI protocol resize the
images; the camera looks straight ahead (optical axis horizontal, along the vehicle's yaw),
1.65 m above the ground (KITTI's camera height, the fixed height their BEV projection uses).
Camera frame: x right, y down, z forward (REP-103 optical frame); pixel centres at integer
coordinates, as in ROS `CameraInfo`.

Rendering. Primary rays are cast with Embree (embreex) against one triangle mesh of the
ground, buildings, trees and the parked cars of this appearance (`world_mesh`); moving
traffic at `time_s` is cast against a small second scene restricted to the pixels it can
cover. Shading is numpy: the ground looks up the world's material/paint rasters (0.1 m, the
same geometry the orthophoto was painted from) and a cast-shadow raster of this appearance's
sun; facades get floors of windows and doors in wall coordinates; crowns, trunks and cars
are lit by the sun (Lambert) and the sky; the sky is a gradient with the sun's glow and
clouds; distance adds haze; the camera applies white balance, exposure, vignetting, a slight
blur and noise.

The cross-view gap is real: an `Appearance` (seeded) differs from the satellite's: another
time of day (sun azimuth at least 50 deg away, lower or higher), another season (grass,
crops, leaves), other parked cars and moving traffic, and what only the ground sees
(facades, windows, doors, trunks, occlusion by buildings, trees and cars).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.pinhole import scale_intrinsics
from cvgl_ros.sim.world_cars import TrafficModel, parked_cars
from cvgl_ros.sim.world_mesh import (
    MAT_CAR, MAT_CROWN, MAT_GROUND, MAT_ROOF, MAT_TRUNK, MAT_WALL, Mesh, building_mesh, car_mesh, car_mesh_arrays,
    ground_mesh, tree_mesh,
)
from cvgl_ros.sim.world_layout import ROOF_COLOURS
from cvgl_ros.sim.world_raster import (
    BACKGROUND, CROP_GOLD, CROP_GREEN, DRIVEWAY, GRASS, GRAVEL, KERB, MEADOW, N_CLASSES, PARKING, PAVING, ROAD,
    SIDEWALK, SOIL, SOIL_DARK, BUILDING, SHIFT, GridTransform, hash_noise, rasterize_ground,
)

KITTI_IMAGE_SIZE = (1242, 375)
KITTI_K = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
KITTI_CAMERA_HEIGHT_M = 1.65
SHADOW_MPP = 0.2
TRAFFIC_RANGE_M = 150.0
CLOUD_HEIGHT_M = 1500.0
TONE_SCALE = 255.0 / (1.0 - math.exp(-255.0 / 200.0))


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera: intrinsics `k` (3x3), image size, mount height above the ground (m)
    and pitch (REP-103 in base_link: > 0 looks down, deg; the renderer tilts its rays by it)."""

    k: np.ndarray
    width: int
    height: int
    height_m: float = KITTI_CAMERA_HEIGHT_M
    frame_id: str = "camera"
    pitch_deg: float = 0.0

    def __post_init__(self):
        k = np.asarray(self.k, dtype=np.float64).reshape(3, 3)
        if not (isinstance(self.width, (int, np.integer)) and isinstance(self.height, (int, np.integer))
                and 8 <= self.width <= 8192 and 8 <= self.height <= 8192):
            raise InputError(f"camera image size {self.width}x{self.height} must be integers in [8, 8192]")
        if not (np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0):
            raise InputError("camera intrinsics must be finite with positive focal lengths")
        if not (math.isfinite(self.height_m) and 0.2 <= self.height_m <= 10.0):
            raise InputError(f"camera height {self.height_m} m must be between 0.2 and 10 m")
        if not (math.isfinite(self.pitch_deg) and abs(self.pitch_deg) <= 30.0):
            raise InputError(f"camera pitch {self.pitch_deg} deg must be within +-30 deg (a road-facing camera)")
        object.__setattr__(self, "k", k)

    def camera_info_fields(self) -> dict:
        """What a sensor_msgs/CameraInfo holds: k (row-major 9), width, height, plumb_bob with zero distortion."""
        return {"k": self.k.reshape(-1).tolist(), "width": int(self.width), "height": int(self.height),
                "distortion_model": "plumb_bob", "d": [0.0] * 5, "frame_id": self.frame_id}

    def to_camera_info(self, stamp_ns: int):
        """A sensor_msgs/msg/CameraInfo (rosbags typestore) of this camera."""
        from cvgl_ros.datasets.bag import camera_info_msg

        return camera_info_msg(self.k, self.width, self.height, stamp_ns, frame_id=self.frame_id)

    def ray_directions(self) -> np.ndarray:
        """(H*W, 3) unit rays in the camera frame (x right, y down, z forward), row-major pixels."""
        cols, rows = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        pix = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)], axis=0)
        d = (np.linalg.inv(self.k) @ pix).T
        return d / np.linalg.norm(d, axis=1, keepdims=True)


def default_camera(width: int = 512, height: int = 128, height_m: float = KITTI_CAMERA_HEIGHT_M) -> CameraModel:
    """KITTI's colour camera intrinsics scaled to width x height (each axis by its own factor,
    pixel centres as `cvgl_ros.geo.pinhole` says)."""
    if not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer)) and width > 0
            and height > 0):
        raise InputError(f"camera size must be positive integers, got {width}x{height}")
    k = scale_intrinsics(KITTI_K, width / KITTI_IMAGE_SIZE[0], height / KITTI_IMAGE_SIZE[1])
    return CameraModel(k, int(width), int(height), float(height_m))


# -- appearance ------------------------------------------------------------------------------

SEASONS = ("spring", "summer", "autumn", "late_autumn")

GROUND_RGB = np.zeros((N_CLASSES, 3), np.float32)
GROUND_NOISE = np.zeros(N_CLASSES, np.float32)
for _cls, _rgb, _amp in [
    (GRASS, (88, 112, 58), 0.22), (MEADOW, (112, 124, 70), 0.25), (SOIL, (120, 102, 80), 0.16),
    (SOIL_DARK, (92, 78, 62), 0.16), (CROP_GREEN, (80, 116, 52), 0.16), (CROP_GOLD, (176, 156, 98), 0.14),
    (ROAD, (92, 93, 96), 0.10), (SIDEWALK, (150, 146, 138), 0.08), (PARKING, (100, 101, 103), 0.09),
    (KERB, (168, 165, 158), 0.05), (BUILDING, (110, 105, 100), 0.05), (GRAVEL, (146, 136, 118), 0.14),
    (PAVING, (140, 132, 122), 0.10), (DRIVEWAY, (132, 126, 118), 0.10),
]:
    GROUND_RGB[_cls] = _rgb
    GROUND_NOISE[_cls] = _amp
VEGETATION_CLASSES = [GRASS, MEADOW, CROP_GREEN]
SEASON_VEGETATION = {  # multiplier for grass/meadow/green crops
    "spring": (0.95, 1.12, 0.9), "summer": (1.0, 1.0, 1.0), "autumn": (1.22, 0.98, 0.82),
    "late_autumn": (1.18, 0.92, 0.85),
}
SEASON_CROWN = {
    "spring": (92, 132, 58), "summer": (58, 90, 42), "autumn": (150, 104, 46), "late_autumn": (112, 88, 62),
}
CONIFER_RGB = (42, 66, 44)
PAINT_RGB = np.array([205, 205, 198], np.float32)
BARK_RGB = np.array([88, 74, 60], np.float32)
GLASS_RGB = np.array([52, 62, 76], np.float32)
DOOR_RGB = np.array([74, 56, 44], np.float32)
TYRE_RGB = np.array([24, 24, 26], np.float32)


@dataclass(frozen=True)
class Appearance:
    """The conditions of one drive: sun, season, sky, haze, camera colour response, and which
    parked cars and traffic are there. Drawn from (world seed, "appearance", seed)."""

    seed: int
    sun_azimuth_deg: float
    sun_elevation_deg: float
    season: str
    cloud_cover: float
    visibility_m: float
    white_balance: tuple[float, float, float]
    exposure: float
    sky_zenith_rgb: tuple[float, float, float] = field(default=(70.0, 118.0, 196.0))
    sky_horizon_rgb: tuple[float, float, float] = field(default=(196.0, 210.0, 226.0))
    wind_en_mps: tuple[float, float] = field(default=(6.0, 0.0))   # clouds (and their shadows) drift

    @classmethod
    def draw(cls, world, seed: int) -> "Appearance":
        rng = world.rng("appearance", int(seed))
        ortho_az = world.sun.azimuth_deg
        while True:
            az = float(rng.uniform(60.0, 300.0))
            if abs((az - ortho_az + 180.0) % 360.0 - 180.0) >= 50.0:
                break
        el = float(rng.uniform(14.0, 58.0))
        season = SEASONS[int(rng.choice(len(SEASONS), p=[0.25, 0.35, 0.25, 0.15]))]
        low_sun = max(0.0, (25.0 - el) / 11.0)
        wb = (1.0 + rng.uniform(-0.05, 0.08) + 0.06 * low_sun, 1.0 + rng.uniform(-0.04, 0.04),
              1.0 + rng.uniform(-0.08, 0.05) - 0.08 * low_sun)
        zen = np.array([70.0, 118.0, 196.0]) * rng.uniform(0.85, 1.1)
        hor = np.array([196.0, 210.0, 226.0]) + low_sun * np.array([30.0, 5.0, -25.0])
        wind_dir = rng.uniform(0.0, 2 * math.pi)
        wind = rng.uniform(3.0, 15.0) * np.array([math.cos(wind_dir), math.sin(wind_dir)])
        return cls(int(seed), az, el, season, float(rng.uniform(0.0, 0.7)), float(rng.uniform(500.0, 1600.0)),
                   tuple(float(x) for x in wb), float(rng.uniform(0.9, 1.12)),
                   tuple(float(x) for x in zen), tuple(float(np.clip(x, 0, 255)) for x in hor),
                   (float(wind[0]), float(wind[1])))

    @property
    def sun_direction(self) -> np.ndarray:
        az, el = math.radians(self.sun_azimuth_deg), math.radians(self.sun_elevation_deg)
        return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])

    def shadow_offset_en(self, height_m: float) -> np.ndarray:
        az, el = math.radians(self.sun_azimuth_deg), math.radians(self.sun_elevation_deg)
        return -(height_m / math.tan(el)) * np.array([math.sin(az), math.cos(az)])


# -- the renderer ----------------------------------------------------------------------------

def world_ground_raster(world):
    """(classes, paint, GridTransform) at 0.1 m over the whole world, cached on the world."""
    if "ground" not in world._cache:
        from cvgl_ros.sim.ortho import world_paint
        from cvgl_ros.sim.world import APRON_M, GROUND_MPP

        n = int(math.ceil((world.size_m + 2 * APRON_M) / GROUND_MPP))
        tf = GridTransform(0.0, 0.0, n, n, GROUND_MPP)
        classes, paint = rasterize_ground(world.roads, world.layout, world.style, tf, world_paint(world))
        world._cache["ground"] = (classes, paint, tf)
    return world._cache["ground"]


def world_static_mesh(world):
    if "mesh" not in world._cache:
        buildings, walls = building_mesh(world.layout.buildings, world.rng("mesh", "buildings"))
        trees = tree_mesh(world.layout.trees, world.rng("mesh", "trees"))
        world._cache["mesh"] = (Mesh.concat([ground_mesh(world.size_m / 2.0), buildings, trees]), walls)
    return world._cache["mesh"]


class GroundRenderer:
    """Renders `camera` views of `world` under one seeded `Appearance` (see the module docstring)."""

    def __init__(self, world, camera: CameraModel, appearance_seed: int = 0, threads: int | None = None):
        import os
        from concurrent.futures import ThreadPoolExecutor

        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        self.world = world
        self.camera = camera
        self.appearance = Appearance.draw(world, appearance_seed)
        app = self.appearance
        self.sun = app.sun_direction.astype(np.float32)
        self.classes, self.paint, self.ground_tf = world_ground_raster(world)
        static, self.walls = world_static_mesh(world)
        self.parked = parked_cars(world.layout.parking_spots, world.rng("appearance", app.seed, "parked"), 0.55)
        self.car_rgb = np.array([c.rgb for c in self.parked] or np.zeros((0, 3)), np.float32).reshape(-1, 3)
        self.car_height = np.array([c.height_m for c in self.parked] or np.zeros(0), np.float32)
        self.mesh = Mesh.concat([static, car_mesh(self.parked)])
        self.scene = rtcore_scene.EmbreeScene()
        TriangleMesh(self.scene, self.mesh.tris)
        self._TriangleMesh, self._EmbreeScene = TriangleMesh, rtcore_scene.EmbreeScene
        self.traffic = TrafficModel(world.roads, world.rng("appearance", app.seed, "traffic"), world.style)
        self.rays_cam = camera.ray_directions().astype(np.float32)
        self.threads = max(1, min(4, os.cpu_count() or 1)) if threads is None else max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="raycast") if self.threads > 1 else None
        self._make_fill_plan()
        self.origins = np.zeros((len(self.rays_cam), 3), np.float32)
        self._origin, self._time = np.zeros(3, np.float32), 0.0   # of the frame being shaded
        self._palette(world)
        self._shadow_raster(world)
        rng = world.rng("appearance", app.seed, "camera")
        self.noise_salt = int(rng.integers(1 << 30))
        h, w = camera.height, camera.width
        yy, xx = np.mgrid[0:h, 0:w]
        r2 = ((xx - camera.k[0, 2]) / (0.5 * w)) ** 2 + ((yy - camera.k[1, 2]) / (0.5 * w)) ** 2
        self.vignette = (1.0 - 0.18 * r2).astype(np.float32).reshape(-1)
        self._grain = [((hash_noise(xx + k * 7919, yy, self.noise_salt) - 0.5) * np.float32(5.0))[..., None]
                       for k in range(8)]

    def close(self) -> None:
        """Stop the ray-casting threads (also done when the renderer is garbage collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> "GroundRenderer":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    # -- set-up
    def _palette(self, world) -> None:
        app = self.appearance
        rgb = GROUND_RGB.copy()
        veg = np.array(SEASON_VEGETATION[app.season], np.float32)
        for c in VEGETATION_CLASSES:
            rgb[c] *= veg
        if app.season in ("autumn", "late_autumn"):
            rgb[CROP_GREEN] = GROUND_RGB[SOIL] * 1.05
        self.ground_rgb = rgb
        rng = world.rng("appearance", app.seed, "trees")
        trees = world.layout.trees
        tint = np.array([t.tint for t in trees], np.float32).reshape(-1, 1)
        crown = np.array(SEASON_CROWN[app.season], np.float32)
        if app.season in ("autumn",):
            # mixed autumn colours: some trees still green, some red
            mix = rng.uniform(0, 1, (len(trees), 1)).astype(np.float32)
            crown = crown[None] * (1 - 0.5 * mix) + np.array([70, 92, 44], np.float32) * 0.5 * mix
        crowns = np.broadcast_to(crown, (len(trees), 3)) * (1.0 + 0.15 * tint)
        conifer = np.array([t.conifer for t in trees], bool)
        crowns = np.where(conifer[:, None], np.array(CONIFER_RGB, np.float32), crowns)
        self.crown_rgb = crowns.astype(np.float32).reshape(-1, 3)
        self.crown_centre = np.array([[t.east_m, t.north_m, 0.5 * (t.canopy_base_m + t.canopy_top_m)] for t in trees],
                                     np.float32).reshape(-1, 3)
        self.crown_radii = np.array([[t.canopy_radius_m, t.canopy_radius_m, 0.5 * (t.canopy_top_m - t.canopy_base_m)]
                                     for t in trees], np.float32).reshape(-1, 3)
        bl = world.layout.buildings
        self.facade_rgb = np.array([b.facade_rgb for b in bl], np.float32).reshape(-1, 3)
        self.roof_rgb = np.array([ROOF_COLOURS[b.roof_colour] for b in bl], np.float32).reshape(-1, 3)
        self.floor_h = np.array([b.floor_height_m for b in bl], np.float32)
        self.win_spacing = np.array([b.window_spacing_m for b in bl], np.float32)
        self.wall_h = np.array([b.wall_height_m for b in bl], np.float32)
        kinds = {"house": 0, "apartment": 1, "tower": 2, "commercial": 3, "barn": 4, "shed": 5}
        self.kind = np.array([kinds.get(b.kind, 1) for b in bl], np.int32)
        # one row per wall: origin, direction, length, door, 1/floor height, 1/window spacing, kind,
        # eaves height, ground floor height
        wt = self.walls
        owner = wt.building
        ground_floor = np.where(self.kind[owner] == 0, 0.0, np.maximum(self.floor_h[owner], 3.6))
        self.wall_table = np.column_stack([
            wt.origin_en, wt.direction_en, wt.length_m, wt.door_u_m, 1.0 / self.floor_h[owner],
            1.0 / self.win_spacing[owner], self.kind[owner], self.wall_h[owner], ground_floor,
        ]).astype(np.float32) if len(owner) else np.zeros((0, 11), np.float32)
        self.wall_rgb = self.facade_rgb[owner] if len(owner) else np.zeros((0, 3), np.float32)

    def _shadow_raster(self, world) -> None:
        """Cast shadows of buildings, crowns, trunks and parked cars on the ground for this sun."""
        app = self.appearance
        from cvgl_ros.sim.world import APRON_M

        n = int(math.ceil((world.size_m + 2 * APRON_M + 40.0) / SHADOW_MPP))
        tf = GridTransform(0.0, 0.0, n, n, SHADOW_MPP)
        mask = np.zeros((n, n), np.uint8)
        for b in world.layout.buildings:
            base = b.corners()
            top = base + app.shadow_offset_en(b.height_m)
            hull = cv2.convexHull(np.concatenate([base, top]).astype(np.float32)).reshape(-1, 2)
            cv2.fillPoly(mask, [tf.fixed(hull)], 255, shift=SHIFT)
        ang = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        ring = np.stack([np.cos(ang), np.sin(ang)], axis=1)
        for t in world.layout.trees:
            mid = 0.5 * (t.canopy_base_m + t.canopy_top_m)
            half = 0.5 * (t.canopy_top_m - t.canopy_base_m)
            pts = [np.array([t.east_m, t.north_m]) + t.canopy_radius_m * s * ring + app.shadow_offset_en(z)
                   for z, s in ((mid - 0.8 * half, 0.7), (mid, 1.0), (mid + 0.8 * half, 0.7 if not t.conifer else 0.2))]
            hull = cv2.convexHull(np.concatenate(pts).astype(np.float32)).reshape(-1, 2)
            cv2.fillPoly(mask, [tf.fixed(hull)], 200, shift=SHIFT)  # crowns let some light through
            line = np.array([[t.east_m, t.north_m], [t.east_m, t.north_m] + app.shadow_offset_en(mid)])
            cv2.polylines(mask, [tf.fixed(line)], False, 255, thickness=max(1, int(2 * t.trunk_radius_m / SHADOW_MPP)),
                          shift=SHIFT)
        for c in self.parked:
            base = c.corners()
            top = c.corners(grow_m=-0.2) + app.shadow_offset_en(c.height_m)
            hull = cv2.convexHull(np.concatenate([base, top]).astype(np.float32)).reshape(-1, 2)
            cv2.fillPoly(mask, [tf.fixed(hull)], 255, shift=SHIFT)
        self.shadow = cv2.GaussianBlur(mask, (0, 0), 0.8)
        self.shadow_tf = tf

    # -- rendering
    def _cast(self, east_m: float, north_m: float, yaw_enu_rad: float, time_s: float):
        for name, v in (("east_m", east_m), ("north_m", north_m), ("yaw_enu_rad", yaw_enu_rad), ("time_s", time_s)):
            if not math.isfinite(float(v)):
                raise InputError(f"render pose {name} must be finite, got {v}")
        cy, sy = math.cos(yaw_enu_rad), math.sin(yaw_enu_rad)
        ct, st = math.cos(math.radians(self.camera.pitch_deg)), math.sin(math.radians(self.camera.pitch_deg))
        # camera -> ENU (columns): x (right) = (sin, -cos, 0); level, y (down) = (0, 0, -1) and
        # z (forward) = (cos, sin, 0); pitched down by theta, y = cos theta down - sin theta forward
        # and z = cos theta forward + sin theta down (+ 0.0: no negative zeros when level)
        rot = np.array([[sy, -st * cy, ct * cy], [-cy, -st * sy, ct * sy], [0.0, -ct, -st]], np.float32) + 0.0
        dirs = _mat3(self.rays_cam, rot)
        origin = np.array([east_m, north_m, self.camera.height_m], np.float32)
        self.origins[:] = origin
        hits = _Hits(self._run(dirs), self.mesh)
        parked = np.flatnonzero(hits.material == MAT_CAR)
        hits.car_rgb[parked] = self.car_rgb[hits.obj[parked]]
        hits.car_h[parked] = self.car_height[hits.obj[parked]]
        self._traffic(time_s, origin, rot, dirs, hits)
        return origin, dirs, hits

    def _run_rays(self, idx, dirs) -> dict:
        """Embree's nearest hits for the rays `idx`; split over threads (Embree releases the GIL)."""
        o = self.origins[: len(idx)]
        d = _rows(dirs, idx)
        if self._pool is None or len(idx) < 4096:
            return self.scene.run(o, d, output=1)
        cuts = np.linspace(0, len(idx), self.threads + 1).astype(int)
        parts = list(self._pool.map(lambda ab: self.scene.run(o[ab[0]:ab[1]], d[ab[0]:ab[1]], output=1),
                                    zip(cuts[:-1], cuts[1:])))
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in ("tfar", "primID", "Ng")}

    def _run(self, dirs) -> dict:
        """Nearest hits of every pixel's ray, cast adaptively: rays of every other row and
        column first; a pixel between samples that all hit the same triangle (or all miss)
        takes that triangle, its distance computed exactly on the triangle's plane (rays
        between rays that hit a convex triangle hit it too); the others are cast."""
        n = len(dirs)
        prim = np.full(n, -2, np.int64)
        tfar = np.zeros(n, np.float32)
        ng = np.zeros((n, 3), np.float32)
        coarse = self._coarse_idx
        res = self._run_rays(coarse, dirs)
        prim[coarse] = res["primID"]
        tfar[coarse] = res["tfar"]
        ng[coarse] = res["Ng"]
        todo = []
        for target, neighbours in self._fill_plan:
            ref = prim[neighbours[0]]
            same = ref >= -1
            for nb in neighbours[1:]:
                same &= prim[nb] == ref
            k = np.flatnonzero(same)
            tgt, ref = target[k], ref[k]
            prim[tgt] = ref
            hit = ref >= 0
            tfar[tgt[~hit]] = np.float32(1e37)
            tgt, src = tgt[hit], neighbours[0][k[hit]]
            n0 = _rows(ng, src)
            _put_rows(ng, tgt, n0)
            # distance on the plane through the neighbour's hit point, normal n0
            num = tfar[src] * _rowdot(_rows(dirs, src), n0)
            den = _rowdot(_rows(dirs, tgt), n0)
            tfar[tgt] = num / np.where(np.abs(den) > 1e-12, den, np.float32(1e-12))
            todo.append(target[~same])
        rest = np.concatenate(todo)
        if len(rest):
            res = self._run_rays(rest, dirs)
            prim[rest] = res["primID"]
            tfar[rest] = res["tfar"]
            ng[rest] = res["Ng"]
        return {"tfar": tfar, "primID": prim, "Ng": ng}

    def _make_fill_plan(self) -> None:
        h, w = self.camera.height, self.camera.width
        rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        is_coarse = (rr % 2 == 0) & (cc % 2 == 0)
        if (h - 1) % 2 == 1:
            is_coarse[h - 1, :] = True   # an even height leaves the last row without a lower neighbour
        if (w - 1) % 2 == 1:
            is_coarse[:, w - 1] = True
        self._coarse_idx = np.flatnonzero(is_coarse)
        plan = []
        for offsets, sel in (
            (((0, -1), (0, 1)), (rr % 2 == 0) & (cc % 2 == 1)),
            (((-1, 0), (1, 0)), (rr % 2 == 1) & (cc % 2 == 0)),
            (((-1, -1), (-1, 1), (1, -1), (1, 1)), (rr % 2 == 1) & (cc % 2 == 1)),
        ):
            sel = sel & ~is_coarse
            rows, cols = rr[sel], cc[sel]
            plan.append((rows * w + cols, [(rows + dr) * w + (cols + dc) for dr, dc in offsets]))
        self._fill_plan = plan

    def cast(self, east_m: float, north_m: float, yaw_enu_rad: float, time_s: float = 0.0):
        """Geometry of a view: (distance m HxW, inf for sky; material HxW, MAT_* or 255 for sky;
        hit points HxWx3 in ENU metres, NaN for sky)."""
        origin, dirs, hits = self._cast(east_m, north_m, yaw_enu_rad, time_s)
        h, w = self.camera.height, self.camera.width
        sky = hits.material == 255
        depth = np.where(sky, np.inf, hits.t).astype(np.float32)
        points = origin[None, :] + dirs * hits.t[:, None]
        points[sky] = np.nan
        return depth.reshape(h, w), hits.material.reshape(h, w), points.reshape(h, w, 3)

    def render(self, east_m: float, north_m: float, yaw_enu_rad: float, time_s: float = 0.0) -> np.ndarray:
        """The camera image (HxWx3 uint8) at an ENU pose; `time_s` moves the traffic and the
        clouds (whose shadows drift over the ground)."""
        origin, dirs, hits = self._cast(east_m, north_m, yaw_enu_rad, time_s)
        self._origin, self._time = origin, float(time_s)
        rgb = np.empty((len(dirs), 3), np.float32)
        groups = {m: np.flatnonzero(hits.material == m) for m in (MAT_GROUND, MAT_WALL, MAT_ROOF, MAT_TRUNK,
                                                                   MAT_CROWN, MAT_CAR, 255)}

        def at(idx):
            d = _rows(dirs, idx)
            return origin[None, :] + d * hits.t[idx, None], _facing(_rows(hits.normal, idx), d)

        idx = groups[MAT_GROUND]
        if len(idx):
            _put_rows(rgb, idx, self._shade_ground(origin[None, :] + _rows(dirs, idx) * hits.t[idx, None], hits.t[idx]))
        idx = groups[MAT_WALL]
        if len(idx):
            p, nrm = at(idx)
            _put_rows(rgb, idx, self._shade_walls(p, nrm, hits.obj[idx], hits.prim[idx]))
        idx = groups[MAT_ROOF]
        if len(idx):
            p, nrm = at(idx)
            light = self._light(_dot3(nrm, self.sun), 0.0)
            _put_rows(rgb, idx, _rows(self.roof_rgb, hits.obj[idx]) * (0.85 * light)[:, None])
        idx = groups[MAT_TRUNK]
        if len(idx):
            p, nrm = at(idx)
            _put_rows(rgb, idx, BARK_RGB[None, :] * self._light(_dot3(nrm, self.sun), 0.0)[:, None])
        idx = groups[MAT_CROWN]
        if len(idx):
            p, _ = at(idx)
            _put_rows(rgb, idx, self._shade_crowns(p, hits.obj[idx]))
        idx = groups[MAT_CAR]
        if len(idx):
            p, nrm = at(idx)
            _put_rows(rgb, idx, self._shade_cars(p, nrm, _rows(hits.car_rgb, idx), hits.car_h[idx]))
        sky = groups[255]
        if len(sky):
            _put_rows(rgb, sky, self._shade_sky(_rows(dirs, sky)))
        # aerial perspective
        app = self.appearance
        fog = (1.0 - np.exp(-hits.t / np.float32(app.visibility_m))).astype(np.float32)
        fog[sky] = 0.0
        horizon = np.array(app.sky_horizon_rgb, np.float32)
        rgb += fog[:, None] * (horizon[None, :] - rgb)
        return self._sensor(rgb, time_s)

    def _traffic(self, time_s, origin, rot, dirs, hits: "_Hits") -> None:
        cars, rgbs = self.traffic.snapshot(time_s, near_en=origin[:2], radius_m=TRAFFIC_RANGE_M)
        if not len(cars):
            return
        rel = cars[:, :2] - origin[None, :2].astype(float)
        along = rel @ rot[:2, 2].astype(float)
        side = rel @ rot[:2, 0].astype(float)
        # not behind the camera, and not in our own lane on top of us
        keep = (along > -8.0) & ~((np.abs(side) < 2.4) & (along < 9.0))
        cars, rgbs = cars[keep], rgbs[keep]
        if not len(cars):
            return
        mesh = car_mesh_arrays(cars)
        cam = self.camera
        cam_pts = _mat3(mesh.tris.reshape(-1, 3) - origin[None, :], rot.T)  # world -> camera frame
        # cars reaching behind the image plane are beside us, outside the field of view but
        # for a sliver at the image border: leave them out rather than cast every pixel
        per_car = cam_pts.reshape(len(cars), -1, 3)
        in_front = np.all(per_car[:, :, 2] > 0.3, axis=1)
        if not in_front.any():
            return
        if not in_front.all():
            cars, rgbs = cars[in_front], rgbs[in_front]
            mesh = car_mesh_arrays(cars)
            cam_pts = per_car[in_front].reshape(-1, 3)
        # each car's pixel box; cars hidden behind nearer geometry over all of it are dropped
        uv = _mat3(cam_pts, cam.k.astype(np.float32)).reshape(len(cars), -1, 3)
        u = uv[:, :, 0] / uv[:, :, 2]
        v = uv[:, :, 1] / uv[:, :, 2]
        near = np.min(np.linalg.norm(cam_pts.reshape(len(cars), -1, 3), axis=2), axis=1)
        t_img = hits.t.reshape(cam.height, cam.width)
        boxes = []
        for k in range(len(cars)):
            x0, x1 = int(max(0, np.floor(u[k].min()))), int(min(cam.width, np.ceil(u[k].max()) + 1))
            y0, y1 = int(max(0, np.floor(v[k].min()))), int(min(cam.height, np.ceil(v[k].max()) + 1))
            if x1 <= x0 or y1 <= y0 or t_img[y0:y1, x0:x1].max() < near[k]:
                continue
            boxes.append((np.arange(y0, y1)[:, None] * cam.width + np.arange(x0, x1)[None, :]).reshape(-1))
        if not boxes:
            return
        idx = np.unique(np.concatenate(boxes))
        scene = self._EmbreeScene()
        self._TriangleMesh(scene, mesh.tris)
        res = scene.run(self.origins[: len(idx)], _rows(dirs, idx), output=1)
        tc = np.asarray(res["tfar"], np.float32)
        pc = np.asarray(res["primID"], np.int64)
        closer = (pc >= 0) & ((hits.material[idx] == 255) | (tc < hits.t[idx]))
        sel = idx[closer]
        which = mesh.obj[pc[closer]]
        heights = cars[:, 5].astype(np.float32)
        hits.t[sel] = tc[closer]
        hits.normal[sel] = np.asarray(res["Ng"], np.float32)[closer]
        hits.material[sel] = MAT_CAR
        hits.car_rgb[sel] = rgbs[which]
        hits.car_h[sel] = heights[which]

    def _light(self, normal_dot_sun, shadowed) -> np.ndarray:
        """Irradiance factor: direct sun (unless shadowed) plus sky light."""
        app = self.appearance
        sun = np.clip(normal_dot_sun, 0.0, 1.0) * (1.0 - shadowed)
        sky = 0.42 - 0.1 * app.cloud_cover
        return (np.float32(1.05 * (1.0 - 0.5 * app.cloud_cover)) * sun + np.float32(sky)).astype(np.float32)

    def _clouds(self, ce, cn, octaves: int | None = None) -> np.ndarray:
        """Cloud density in [0, 1] at points of the cloud layer (ENU metres, 1500 m up), drifting."""
        app = self.appearance
        if app.cloud_cover <= 0.02:
            return np.zeros(np.shape(ce), np.float32)
        ce = ce - np.float32(app.wind_en_mps[0] * self._time)
        cn = cn - np.float32(app.wind_en_mps[1] * self._time)
        cloud = _world_noise(self.world).sample(ce * 0.08 + 3000.0, cn * 0.08 - 3000.0, octaves)
        return np.clip((cloud + 0.55 * app.cloud_cover - 0.3) * 3.0, 0.0, 1.0).astype(np.float32)

    def _cloud_shadow(self, p, shadowed) -> np.ndarray:
        """Combine cast shadows with the shadows of clouds between a point and the sun."""
        if self.appearance.cloud_cover <= 0.02:
            return shadowed
        reach = (CLOUD_HEIGHT_M - p[:, 2]) / max(float(self.sun[2]), 0.05)
        cloud = self._clouds(p[:, 0] + self.sun[0] * reach, p[:, 1] + self.sun[1] * reach, octaves=2)
        return 1.0 - (1.0 - shadowed) * (1.0 - 0.85 * cloud)

    def _lookup(self, raster, tf: GridTransform, e, n, outside):
        col = np.rint((e - tf.center_e) * (1.0 / tf.mpp) + (tf.width - 1) / 2.0).astype(np.int64)
        row = np.rint((tf.center_n - n) * (1.0 / tf.mpp) + (tf.height - 1) / 2.0).astype(np.int64)
        inside = (col >= 0) & (col < tf.width) & (row >= 0) & (row < tf.height)
        vals = raster[np.clip(row, 0, tf.height - 1), np.clip(col, 0, tf.width - 1)]
        return np.where(inside, vals, outside)

    def _shade_ground(self, p, t) -> np.ndarray:
        e, n = p[:, 0], p[:, 1]
        fine = hash_noise(e * 25.0, n * 25.0, 11) - 0.5
        # material edges dithered by +-5 cm: ragged like real kerbs and verges, not 0.1 m stairs
        je, jn = e + 0.1 * fine, n + 0.1 * (hash_noise(e * 25.0, n * 25.0, 12) - 0.5)
        cls = self._lookup(self.classes, self.ground_tf, je, jn, BACKGROUND[self.world.style])
        paint = self._lookup(self.paint, self.ground_tf, je, jn, 0).astype(np.float32) * np.float32(1 / 255.0)
        noise = _world_noise(self.world).sample(e, n)
        near = np.clip(1.0 - t * np.float32(1 / 25.0), 0.0, 1.0)
        albedo = _rows(self.ground_rgb, cls) * (1.0 + GROUND_NOISE[cls] * noise + 0.16 * fine * near)[:, None]
        alpha = paint * (0.85 - 0.3 * np.clip(noise, 0, 1))
        albedo += alpha[:, None] * (PAINT_RGB[None, :] - albedo)
        shadow = self._lookup(self.shadow, self.shadow_tf, e, n, 0).astype(np.float32) * np.float32(1 / 255.0)
        return albedo * self._light(np.float32(self.sun[2]), self._cloud_shadow(p, shadow))[:, None]

    def _shade_walls(self, p, normal, b, prim) -> np.ndarray:
        """Facades in wall coordinates (u along the wall, z up): floors of framed windows,
        shop windows or house windows on the ground floor, doors, towers in glass."""
        w = self.mesh.wall[prim]
        P = _rows(self.wall_table, w)
        u = (p[:, 0] - P[:, 0]) * P[:, 2] + (p[:, 1] - P[:, 1]) * P[:, 3]
        z = p[:, 2]
        kind = P[:, 8]
        fu = u * P[:, 7]
        col_index = np.floor(fu)
        fu -= col_index
        zr = z - P[:, 10]
        fz = zr * P[:, 6]
        row_index = np.floor(fz)
        fz -= row_index
        in_span = (u > 0.7) & (u < P[:, 4] - 0.7) & (z < P[:, 9] - 0.4)
        upper = in_span & (zr > 0) & (kind < 3.5)
        frame = upper & (fu > 0.27) & (fu < 0.73) & (fz > 0.3) & (fz < 0.8)
        glassy = upper & (fu > 0.31) & (fu < 0.69) & (fz > 0.34) & (fz < 0.76)
        glassy |= (kind == 2) & in_span & (zr > 0) & (fz > 0.12) & (np.abs(fu - 0.5) > 0.03)   # towers
        glassy |= in_span & (kind >= 1) & (kind <= 3) & (z > 0.5) & (zr < -0.6) & (fu > 0.08) & (fu < 0.92)  # shops
        glassy |= in_span & (kind == 0) & (fu > 0.3) & (fu < 0.7) & (z > 0.9) & (z < 2.1)     # house ground floor
        barn = kind == 4
        door = (np.abs(u - P[:, 5]) < np.where(barn, 2.5, 0.6)) & (z < np.where(barn, 4.0, 2.15))
        grain = hash_noise(u * 3.3, z * 3.3, 5)
        # darker plinth at the foot, a cornice band under the eaves
        band = np.where(z < 0.5, 0.8, 1.0) * np.where(z > P[:, 9] - 0.45, 0.78, 1.0)
        albedo = _rows(self.wall_rgb, w) * ((0.97 + 0.06 * grain) * band)[:, None]
        frame &= ~glassy
        albedo[frame] = np.float32(0.5) * albedo[frame] + np.float32(100.0)
        # each pane reflects a bit differently (curtains, sky, lit rooms)
        pane = hash_noise(col_index[glassy] + 131 * w[glassy], row_index[glassy], 9)
        sky_reflection = np.clip(0.75 + 0.035 * z[glassy], 0.75, 1.6) * (0.7 + 0.6 * pane)
        albedo[glassy] = GLASS_RGB[None, :] * sky_reflection[:, None]
        albedo[door] = DOOR_RGB
        return albedo * self._light(_dot3(normal, self.sun), self._cloud_shadow(p, self._wall_shadow(p)))[:, None]

    def _wall_shadow(self, p) -> np.ndarray:
        """Cast shadow on a wall point, approximated from the ground shadow just in front of the
        wall (towards the sun): if something shades the ground there, it shades the wall's
        lower part too (fading out over 25 m of height)."""
        step = np.asarray(self.appearance.shadow_offset_en(1.0), np.float32)
        toward_sun = -step / max(float(np.linalg.norm(step)), 1e-6)
        e = p[:, 0] + toward_sun[0] * 0.6
        n = p[:, 1] + toward_sun[1] * 0.6
        shade = self._lookup(self.shadow, self.shadow_tf, e, n, 0).astype(np.float32) * np.float32(1 / 255.0)
        return shade * np.clip(1.2 - p[:, 2] / 25.0, 0.0, 1.0)

    def _shade_crowns(self, p, k) -> np.ndarray:
        rel = (p - _rows(self.crown_centre, k)) / _rows(self.crown_radii, k)
        nrm = rel / np.maximum(np.linalg.norm(rel, axis=1, keepdims=True), 1e-6)
        leaf = hash_noise(np.floor(p[:, 0] * 4.5) + 7 * np.floor(p[:, 2] * 4.5), np.floor(p[:, 1] * 4.5), 3)
        lambert = np.clip(_dot3(nrm, self.sun), 0.0, 1.0)
        occl = np.clip(0.65 + 0.45 * rel[:, 2], 0.35, 1.1)
        shade = (0.3 + 0.85 * lambert) * occl * (0.65 + 0.6 * leaf)
        return _rows(self.crown_rgb, k) * shade[:, None]

    def _shade_cars(self, p, normal, car_rgb, car_h) -> np.ndarray:
        z = p[:, 2]
        glass = (z > 0.6 * car_h) & (z < 0.96 * car_h) & (np.abs(normal[:, 2]) < 0.5)
        albedo = np.where(glass[:, None], GLASS_RGB[None, :] * 0.8, car_rgb)
        albedo = np.where((z < 0.42)[:, None], TYRE_RGB[None, :], albedo)
        spec = np.clip(normal[:, 2], 0, 1) * 0.25
        return albedo * (self._light(_dot3(normal, self.sun), 0.0) + spec)[:, None]

    def _shade_sky(self, d) -> np.ndarray:
        app = self.appearance
        el = np.clip(d[:, 2], 0.0, 1.0)
        tt = np.sqrt(el)[:, None]
        zen = np.array(app.sky_zenith_rgb, np.float32)
        hor = np.array(app.sky_horizon_rgb, np.float32)
        sky = hor[None, :] * (1 - tt) + zen[None, :] * tt
        glow = np.exp((_dot3(d, self.sun) - 1.0) / 0.02)[:, None] * np.array([70, 60, 40], np.float32)
        sky += glow
        if app.cloud_cover > 0.02:
            h = (CLOUD_HEIGHT_M - self._origin[2]) / np.maximum(d[:, 2], 0.02)
            amount = self._clouds(self._origin[0] + d[:, 0] * h, self._origin[1] + d[:, 1] * h)
            amount *= np.clip(d[:, 2] * 8.0, 0.0, 1.0)
            cloud_rgb = np.array([232, 234, 238], np.float32)[None, :] * (0.85 + 0.15 * el[:, None])
            sky += amount[:, None] * (cloud_rgb - sky)
        return sky.astype(np.float32)

    def _sensor(self, rgb, time_s: float) -> np.ndarray:
        """White balance, exposure, vignetting, optics blur, a soft shoulder at white, grain."""
        app = self.appearance
        cam = self.camera
        rgb *= (np.array(app.white_balance, np.float32) * np.float32(app.exposure))[None, :] * self.vignette[:, None]
        img = cv2.GaussianBlur(rgb.reshape(cam.height, cam.width, 3), (0, 0), 0.55)
        # tone curve 255 (1 - exp(-x / 200)) / (1 - exp(-255 / 200)): a soft shoulder, not hard clipping
        img = cv2.exp(img * np.float32(-1.0 / 200.0))
        img = np.float32(TONE_SCALE) - np.float32(TONE_SCALE) * img
        # sensor grain: one of a few fixed patterns per frame (deterministic in time_s)
        img += self._grain[int(round(time_s * 100.0)) % len(self._grain)]
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)


class _Hits:
    """Per-ray results of the primary cast: distance, triangle, normal, material, object."""

    def __init__(self, res, mesh: Mesh):
        self.t = np.asarray(res["tfar"], np.float32).copy()
        self.prim = np.asarray(res["primID"], np.int64)
        self.normal = np.asarray(res["Ng"], np.float32).copy()
        hit = self.prim >= 0
        safe = np.where(hit, self.prim, 0)
        self.material = np.where(hit, mesh.material[safe], 255).astype(np.uint8)
        self.obj = np.where(hit, mesh.obj[safe], -1)
        self.t[~hit] = 1e5
        n = len(self.t)
        self.car_rgb = np.zeros((n, 3), np.float32)
        self.car_h = np.ones(n, np.float32)


def _mat3(points, m) -> np.ndarray:
    """(N,3) points times a 3x3 matrix: m @ p for each row (no BLAS: skinny products are slow there)."""
    m = np.asarray(m, np.float32)
    return np.stack([points[:, 0] * m[r, 0] + points[:, 1] * m[r, 1] + points[:, 2] * m[r, 2] for r in range(3)],
                    axis=1)


def _dot3(points, v) -> np.ndarray:
    return points[:, 0] * v[0] + points[:, 1] * v[1] + points[:, 2] * v[2]


_ROW = np.dtype((np.void, 12))


def _rows(a, idx) -> np.ndarray:
    """a[idx] for the rows of a 2-D array (np.take is several times faster than fancy indexing)."""
    return np.take(a, idx, axis=0)


def _put_rows(a, idx, values) -> None:
    """a[idx] = values for an (N,3) float32 array, scattering whole rows at once."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    a.view(_ROW).reshape(-1)[idx] = v.view(_ROW).reshape(-1)


def _rowdot(a, b) -> np.ndarray:
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def _facing(normal, dirs) -> np.ndarray:
    """Unit normals turned towards the viewer."""
    length = np.sqrt(_rowdot(normal, normal))
    sign = np.where(_rowdot(normal, dirs) > 0, -1.0, 1.0).astype(np.float32) / np.maximum(length, 1e-9)
    return normal * sign[:, None]


def _world_noise(world):
    from cvgl_ros.sim.ortho import world_noise

    return world_noise(world)
