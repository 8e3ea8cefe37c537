"""A procedural, georeferenced world: the simulator's default data and the project's test bed.

    from cvgl_ros.sim.world import World
    world = World.generate(seed=7, style="urban", size_m=1000)   # in memory, a second or two
    world.save("W")                 # atomic: W/world.json + W/tiles.mbtiles (orthophoto, z19 + overviews)
    world = World.load("W")         # InputError when world.json or tiles.mbtiles is missing or invalid
    route = world.route(seed=1, length_m=2000)      # a drive in the right-hand lane
    world.sky_openness(east, north)                 # 1 = open sky, ~0 = deep street canyon

The world is a square of `size_m` metres centred on its datum (the ENU `map` frame origin,
REP-103/105): a road graph (`roads.RoadGraph`), buildings, trees, parking, fields and paved
areas (`world_layout.Layout`), all stored in world.json. Streets, buildings and trees go on
`APRON_M` beyond the square (not in the tiles) so the ground camera never looks into a void.
The orthophoto of the square is rendered from them (`ortho.py`, sun `world.sun`) finer than
the tiles' resolution and painted into Web Mercator tiles at z19 (z20 where z19 would be
coarser than 0.2 m/px, near the equator), with overview levels down to z14.

Determinism: every random choice draws from `World.rng(*keys)`, a numpy Generator seeded
from (seed, keys); nothing depends on wall-clock time, hash randomization or dict order, so
the same seed gives the same world.json and the same tile bytes.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvgl_ros.atomic import atomic_dir, write_json
from cvgl_ros.errors import InputError, read_json
from cvgl_ros.geo.datum import Datum
from cvgl_ros.geo.mercator import ground_resolution_m_per_px, zoom_for_resolution
from cvgl_ros.sim.roads import RoadGraph, Route
from cvgl_ros.sim.world_layout import Layout, generate_layout

FORMAT = "cvgl-world/1"
GENERATOR_VERSION = "1.0"
STYLES = ("urban", "suburban", "rural")
DEFAULT_ORIGIN = (49.0069, 8.4037)   # Karlsruhe, where KITTI was recorded
ROAD_MARGIN_M = 50.0                 # drives keep this far from the world's edge
APRON_M = 60.0                       # buildings and trees go on this far beyond the tiles' edge
MIN_SIZE_M = 200.0
MAX_SIZE_M = 5000.0
MAX_TILE_MPP = 0.2                   # tiles at least this fine
ORTHO_OVERSAMPLE = 1.3               # the orthophoto is rendered this much finer than the tiles
OVERVIEW_LEVELS = 5
WORLD_JSON = "world.json"
TILES_FILE = "tiles.mbtiles"
GROUND_MPP = 0.1                     # class/paint rasters the ground camera looks up
HEIGHT_MPP = 1.0                     # building height raster for sky openness


@dataclass(frozen=True)
class Sun:
    """Sun position: compass azimuth (deg, clockwise from north) and elevation above the horizon (deg)."""

    azimuth_deg: float
    elevation_deg: float

    def direction_enu(self) -> np.ndarray:
        """Unit vector (east, north, up) pointing towards the sun."""
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])

    def shadow_offset_en(self, height_m: float) -> np.ndarray:
        """Ground displacement (east, north) of the shadow of a point `height_m` above the ground."""
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        length = height_m / math.tan(el)
        return -length * np.array([math.sin(az), math.cos(az)])

    def to_dict(self) -> dict:
        return {"azimuth_deg": round(self.azimuth_deg, 3), "elevation_deg": round(self.elevation_deg, 3)}


def stream(seed: int, *keys) -> np.random.Generator:
    """A numpy Generator for one purpose: seeded from the world seed and string/int keys."""
    words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF]
    for k in keys:
        words.append(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) & 0xFFFFFFFF)
    return np.random.default_rng(np.random.SeedSequence(words))


def check_output_path(path: Path) -> None:
    """InputError unless `path` could be created: its nearest existing ancestor is a writable directory."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {path}: {parent} is not writable")


def check_style(style: str) -> str:
    if style not in STYLES:
        raise InputError(f"unknown world style {style!r}; expected one of {', '.join(STYLES)}")
    return style


class World:
    """See the module docstring. Attributes: seed, style, size_m, datum, sun, roads, layout,
    tile_zoom, ortho_mpp, path (the directory it was loaded from, or None)."""

    def __init__(self, seed: int, style: str, size_m: float, datum: Datum, sun: Sun, roads: RoadGraph,
                 layout: Layout, tile_format: str = "png"):
        self.seed = int(seed)
        self.style = check_style(style)
        self.size_m = float(size_m)
        self.datum = datum
        self.sun = sun
        self.roads = roads
        self.layout = layout
        self.tile_format = tile_format
        self.path: Path | None = None
        tile_zoom = max(19, zoom_for_resolution(MAX_TILE_MPP, datum.lat_deg))
        self.tile_zoom = int(tile_zoom)
        self.tile_mpp = float(ground_resolution_m_per_px(datum.lat_deg, self.tile_zoom))
        self.ortho_mpp = round(self.tile_mpp / ORTHO_OVERSAMPLE, 4)
        self._cache: dict = {}
        # streets are cut 10 m inside the margin: lane offsets and turning loops stay within it
        self.route_graph = roads.clipped(self.size_m / 2.0 - ROAD_MARGIN_M - 10.0)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def generate(cls, seed: int, style: str, size_m: float, origin_lat_lon=None, tile_format: str = "png") -> "World":
        """Generate a world in memory (no orthophoto yet: `save` renders it)."""
        check_style(style)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"world seed must be a non-negative integer, got {seed!r}")
        if not (isinstance(size_m, (int, float, np.integer, np.floating)) and math.isfinite(size_m)
                and MIN_SIZE_M <= size_m <= MAX_SIZE_M):
            raise InputError(f"world size must be between {MIN_SIZE_M:g} and {MAX_SIZE_M:g} m, got {size_m}")
        lat, lon = DEFAULT_ORIGIN if origin_lat_lon is None else (float(origin_lat_lon[0]), float(origin_lat_lon[1]))
        datum = Datum(lat, lon, 0.0)
        if abs(lat) > 80.0:
            raise InputError(f"world origin latitude {lat:g} deg is too far from the equator for Web Mercator tiles")
        rng_sun = stream(seed, "sun")
        # a satellite passes mid-morning: sun in the south-east to south-west, fairly high
        sun = Sun(float(rng_sun.uniform(115.0, 235.0)), float(rng_sun.uniform(32.0, 62.0)))
        roads = RoadGraph.generate(stream(seed, "roads"), style, float(size_m))
        layout = generate_layout(stream(seed, "layout"), style, float(size_m) + 2.0 * APRON_M, roads)
        world = cls(seed, style, float(size_m), datum, sun, roads, layout, tile_format)
        # what is in memory is exactly what world.json will hold (rounded floats)
        return cls.from_dict(world.to_dict())

    def to_dict(self) -> dict:
        half = self.size_m / 2.0
        lat, lon, _ = self.datum.to_wgs84(np.array([-half, half]), np.array([-half, half]))
        return {
            "format": FORMAT,
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "style": self.style,
            "size_m": self.size_m,
            "datum": self.datum.to_dict(),
            "bounds_en_m": [-half, -half, half, half],
            "bounds_wgs84": [round(float(lon[0]), 9), round(float(lat[0]), 9), round(float(lon[1]), 9),
                             round(float(lat[1]), 9)],
            "sun": self.sun.to_dict(),
            "tiles": {"file": TILES_FILE, "format": self.tile_format, "zoom": self.tile_zoom,
                      "min_zoom": self.tile_zoom - OVERVIEW_LEVELS, "ortho_mpp": self.ortho_mpp},
            "road_graph": self.roads.to_dict(),
            **self.layout.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "World":
        try:
            if d.get("format") != FORMAT:
                raise InputError(f"unsupported world format {d.get('format')!r}, expected {FORMAT}")
            sun = Sun(float(d["sun"]["azimuth_deg"]), float(d["sun"]["elevation_deg"]))
            world = cls(int(d["seed"]), str(d["style"]), float(d["size_m"]), Datum.from_dict(d["datum"]), sun,
                        RoadGraph.from_dict(d["road_graph"]), Layout.from_dict(d),
                        str(d.get("tiles", {}).get("format", "png")))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"world description is incomplete or malformed "
                             f"({exc.__class__.__name__}: {exc})") from None
        return world

    @classmethod
    def load(cls, world_dir: str | Path) -> "World":
        """Load a saved world; InputError when world.json or tiles.mbtiles is missing or invalid."""
        world_dir = Path(world_dir)
        if not world_dir.is_dir():
            raise InputError(f"no such world directory: {world_dir}")
        meta = world_dir / WORLD_JSON
        if not meta.is_file():
            raise InputError(f"{world_dir} is not a world directory (no {WORLD_JSON})")
        tiles = world_dir / TILES_FILE
        if not tiles.is_file():
            raise InputError(f"world {world_dir} has no {TILES_FILE} (generate it with `cvgl sim world`)")
        d = read_json(meta)
        if not isinstance(d, dict):
            raise InputError(f"{meta} does not hold a world description")
        world = cls.from_dict(d)
        from cvgl_ros.tiles import MBTilesStore

        store = MBTilesStore.open(tiles)
        try:
            zooms = store.zoom_levels()
        finally:
            store.close()
        if world.tile_zoom not in zooms:
            raise InputError(f"{tiles} holds no tiles at zoom {world.tile_zoom} (zooms: {zooms or 'none'})")
        world.path = world_dir
        return world

    @property
    def tiles_path(self) -> Path:
        if self.path is None:
            raise InputError("this world is not saved yet: call world.save(DIR) first")
        return self.path / TILES_FILE

    def rng(self, *keys) -> np.random.Generator:
        return stream(self.seed, *keys)

    # -- output ---------------------------------------------------------------------------

    def save(self, out_dir: str | Path, progress: bool = False) -> Path:
        """Render the orthophoto and write world.json + tiles.mbtiles into `out_dir`, atomically."""
        from cvgl_ros.sim.ortho import write_tiles

        out_dir = Path(out_dir)
        check_output_path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"output {out_dir} exists and is not a directory")
        with atomic_dir(out_dir) as tmp:
            write_json(tmp / WORLD_JSON, self.to_dict(), indent=None)
            write_tiles(self, tmp / TILES_FILE, progress=progress)
        self.path = out_dir
        return out_dir

    # -- queries --------------------------------------------------------------------------

    def route(self, seed: int, length_m: float, turn_rich: bool = False) -> Route:
        """A random drive of `length_m` metres along the road graph, in the right-hand lane
        (`turn_rich`: turns and U-turns preferred, see `RoadGraph.route`)."""
        return self.route_graph.route(self.rng("route", int(seed)), float(length_m), turn_rich=turn_rich)

    def contains(self, east, north, margin_m: float = 0.0) -> np.ndarray:
        half = self.size_m / 2.0 - margin_m
        return (np.abs(np.asarray(east)) <= half) & (np.abs(np.asarray(north)) <= half)

    def height_raster(self):
        """(heights float32 HxW metres, GridTransform) of the tallest building over each 1 m cell."""
        if "height" not in self._cache:
            import cv2

            from cvgl_ros.sim.world_raster import SHIFT, GridTransform

            n = int(math.ceil(self.size_m / HEIGHT_MPP))
            tf = GridTransform(0.0, 0.0, n, n, HEIGHT_MPP)
            heights = np.zeros((n, n), dtype=np.float32)
            for b in sorted(self.layout.buildings, key=lambda b: b.height_m):
                cv2.fillPoly(heights, [tf.fixed(b.corners())], float(b.height_m), shift=SHIFT)
            self._cache["height"] = (heights, tf)
        return self._cache["height"]

    def sky_openness(self, east, north, antenna_height_m: float = 1.8, n_azimuths: int = 36,
                     max_range_m: float = 200.0) -> np.ndarray:
        """Fraction of the sky hemisphere's solid angle not hidden by buildings, in [0, 1].

        For each of `n_azimuths` directions the horizon elevation theta is the highest building
        top seen from the antenna (marching a 1 m building-height raster out to `max_range_m`);
        the visible fraction of the hemisphere above a horizon at theta is 1 - sin(theta), and
        the openness is its mean over azimuths: 1 in the open, about 0.3-0.5 in a street
        between 20 m blocks, near 0 in a narrow canyon of towers.
        """
        east = np.asarray(east, dtype=float)
        north = np.asarray(north, dtype=float)
        shape = np.broadcast(east, north).shape
        e = np.broadcast_to(east, shape).reshape(-1)
        n = np.broadcast_to(north, shape).reshape(-1)
        if not (np.all(np.isfinite(e)) and np.all(np.isfinite(n))):
            raise InputError("sky_openness needs finite east/north positions")
        heights, tf = self.height_raster()
        az = np.arange(n_azimuths) * (2 * math.pi / n_azimuths)
        dist = np.concatenate([np.arange(1.0, 30.0, 1.0), np.arange(30.0, max_range_m + 1e-9, 2.5)])
        out = np.empty(len(e))
        chunk = 256
        for i in range(0, len(e), chunk):
            pe, pn = e[i:i + chunk, None, None], n[i:i + chunk, None, None]
            se = pe + np.cos(az)[None, :, None] * dist[None, None, :]
            sn = pn + np.sin(az)[None, :, None] * dist[None, None, :]
            col = np.round((se - tf.center_e) / tf.mpp + (tf.width - 1) / 2.0).astype(np.int64)
            row = np.round((tf.center_n - sn) / tf.mpp + (tf.height - 1) / 2.0).astype(np.int64)
            inside = (col >= 0) & (col < tf.width) & (row >= 0) & (row < tf.height)
            h = np.where(inside, heights[np.clip(row, 0, tf.height - 1), np.clip(col, 0, tf.width - 1)], 0.0)
            elev = np.arctan2(h - antenna_height_m, dist[None, None, :])
            horizon = np.clip(elev.max(axis=2), 0.0, math.pi / 2)
            out[i:i + chunk] = np.mean(1.0 - np.sin(horizon), axis=1)
        return out.reshape(shape)
