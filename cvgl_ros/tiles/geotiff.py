"""Import a georeferenced raster (GeoTIFF, any CRS) into an MBTiles pyramid.

The raster is reprojected to Web Mercator (EPSG:3857) by GDAL's warper through a rasterio
`WarpedVRT` whose grid is exactly the tile pixel grid of the target zoom, so every tile
pixel is resampled once (bilinear; `average` when the source is more than 1.5x finer than
the tiles). Source nodata, masks and alpha become transparent tile pixels; tiles without
any data are not stored. Overviews down to `min_zoom` are built by 2x averaging.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.mercator import EARTH_RADIUS_M, TILE_SIZE_PX, check_zoom
from cvgl_ros.tiles.codec import encode_tile, normalize_format
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.raster import build_overviews, write_extent_metadata

MAX_IMPORT_TILES = 2_000_000
_ORIGIN_M = math.pi * EARTH_RADIUS_M  # half the Web Mercator world width


def _open_raster(path: Path):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    if not path.is_file():
        raise InputError(f"no such raster file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(f"{path} is not a raster GDAL can read ({exc})") from None
    if src.crs is None:
        src.close()
        raise InputError(f"{path} has no CRS; a GeoTIFF must be georeferenced to be placed on the map")
    if src.transform.is_identity and not src.gcps[0]:
        src.close()
        raise InputError(f"{path} has a CRS but no geotransform; cannot place its pixels on the map")
    if any(dt != "uint8" for dt in src.dtypes):
        src.close()
        raise InputError(f"{path} has {src.dtypes[0]} bands; expected 8-bit (uint8) imagery")
    return src


# How far (degrees) a raster may lie outside its CRS's area of use (a UTM zone is 6 degrees
# wide; its projection is still accurate to centimetres a few degrees beyond it).
MAX_DEG_OUTSIDE_AREA_OF_USE = 3.0


def _check_placement(src, src_path: Path, mercator_bounds) -> None:
    """InputError unless the raster lands on Earth within reach of its CRS's area of use.

    A raster whose coordinates are far outside its CRS (an easting of 40 000 km in a UTM
    zone, northings beyond the pole) projects to infinities or to a wrong place."""
    if not all(math.isfinite(v) for v in mercator_bounds):
        raise InputError(f"{src_path} does not project onto the map: its bounds {tuple(src.bounds)} are far "
                         f"outside the area of its CRS {src.crs}")
    from pyproj import CRS, Transformer

    epsg = src.crs.to_epsg()      # GDAL's WKT1 has no area of use; the EPSG entry has
    crs = CRS.from_epsg(epsg) if epsg else CRS.from_user_input(src.crs.to_wkt())
    area = crs.area_of_use
    x = (src.bounds.left + src.bounds.right) / 2.0
    y = (src.bounds.bottom + src.bounds.top) / 2.0
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    back_x, back_y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    if not (math.isfinite(lon) and math.isfinite(lat) and -90.0 <= lat <= 90.0
            and math.hypot(back_x - x, back_y - y) < 1.0):   # the inverse wraps far outside the zone
        raise InputError(f"{src_path}: its centre {x:.1f},{y:.1f} is not a place on Earth in {crs.name} "
                         "(far outside its area of use)")
    if area is not None:
        margin = MAX_DEG_OUTSIDE_AREA_OF_USE
        lon_out = max(area.west - lon, lon - area.east, 0.0) if area.west <= area.east else 0.0
        lat_out = max(area.south - lat, lat - area.north, 0.0)
        if lon_out > margin or lat_out > margin:
            raise InputError(f"{src_path} lies at {lat:.3f},{lon:.3f}, {max(lon_out, lat_out):.1f} degrees outside "
                             f"the area of use of {crs.name} ({area.west:g}..{area.east:g} E, "
                             f"{area.south:g}..{area.north:g} N): wrong CRS or coordinates")


def import_geotiff(src_path: str | Path, out_path: str | Path, zoom: int = 19, min_zoom: int | None = None,
                   image_format: str = "png", name: str | None = None, progress: bool = True) -> dict:
    """Tile `src_path` at `zoom` (and overviews down to `min_zoom`) into a new MBTiles file.

    The output is written atomically. Returns counts: {"tiles": n at zoom, "overview_tiles": m}.
    """
    import rasterio  # noqa: F401 - imported here: GDAL is heavy
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.errors import RasterioIOError
    from rasterio.transform import Affine
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window
    from tqdm import tqdm

    zoom = check_zoom(zoom)
    min_zoom = zoom if min_zoom is None else check_zoom(min_zoom)
    if min_zoom > zoom:
        raise InputError(f"min zoom {min_zoom} is above zoom {zoom}")
    fmt = normalize_format(image_format)
    src_path = Path(src_path)
    src = _open_raster(src_path)
    try:
        try:
            west, south, east, north = transform_bounds(src.crs, "EPSG:3857", *src.bounds, densify_pts=21)
        except Exception as exc:  # PROJ errors for rasters outside their CRS's area
            raise InputError(f"{src_path}: cannot transform its bounds to Web Mercator ({exc})") from None
        _check_placement(src, src_path, (west, south, east, north))
        world_px = TILE_SIZE_PX * 2**zoom
        res_m = 2 * _ORIGIN_M / world_px  # Mercator metres per tile pixel
        tx0 = max(0, int(math.floor((west + _ORIGIN_M) / res_m / TILE_SIZE_PX)))
        tx1 = min(2**zoom - 1, int(math.floor((east + _ORIGIN_M) / res_m / TILE_SIZE_PX)))
        ty0 = max(0, int(math.floor((_ORIGIN_M - north) / res_m / TILE_SIZE_PX)))
        ty1 = min(2**zoom - 1, int(math.floor((_ORIGIN_M - south) / res_m / TILE_SIZE_PX)))
        n_tiles = (tx1 - tx0 + 1) * (ty1 - ty0 + 1)
        if n_tiles > MAX_IMPORT_TILES:
            raise InputError(f"{src_path} covers {n_tiles} tiles at zoom {zoom}; that is more than "
                             f"{MAX_IMPORT_TILES}: use a lower zoom")
        # Source resolution in Mercator metres, to pick the resampling kernel.
        src_res_m = min((east - west) / src.width, (north - south) / src.height)
        resampling = Resampling.average if src_res_m * 1.5 < res_m else Resampling.bilinear
        interp = list(src.colorinterp)
        alpha_band = interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None
        colour_bands = [i + 1 for i in range(src.count) if i + 1 != alpha_band][:3]
        transform = Affine(res_m, 0.0, -_ORIGIN_M + tx0 * TILE_SIZE_PX * res_m,
                           0.0, -res_m, _ORIGIN_M - ty0 * TILE_SIZE_PX * res_m)
        width = (tx1 - tx0 + 1) * TILE_SIZE_PX
        height = (ty1 - ty0 + 1) * TILE_SIZE_PX
        written = 0
        with WarpedVRT(src, crs="EPSG:3857", transform=transform, width=width, height=height,
                       resampling=resampling, add_alpha=alpha_band is None) as vrt:
            vrt_alpha = alpha_band if alpha_band is not None else vrt.count
            with MBTilesStore.create(Path(out_path), name=name or src_path.stem, image_format=fmt,
                                     description=f"imported from {src_path.name}") as store:
                keys = [(tx, ty) for tx in range(tx0, tx1 + 1) for ty in range(ty0, ty1 + 1)]
                for tx, ty in tqdm(keys, desc="import", unit="tile", disable=not progress):
                    window = Window((tx - tx0) * TILE_SIZE_PX, (ty - ty0) * TILE_SIZE_PX, TILE_SIZE_PX, TILE_SIZE_PX)
                    try:
                        bands = vrt.read(colour_bands + [vrt_alpha], window=window)
                    except RasterioIOError as exc:
                        raise InputError(f"{src_path} is truncated or damaged: reading its pixels failed "
                                         f"({' '.join(str(exc).split())[:200]})") from None
                    alpha = np.where(bands[-1] > 127, 255, 0).astype(np.uint8)
                    if not alpha.any():
                        continue
                    colour = bands[:-1]
                    if colour.shape[0] == 1:
                        colour = np.repeat(colour, 3, axis=0)
                    rgb = np.moveaxis(colour[:3], 0, -1)
                    pixels = rgb if alpha.min() == 255 else np.dstack([rgb, alpha])
                    store.put_tile(zoom, tx, ty, encode_tile(pixels, fmt))
                    written += 1
                if written == 0:
                    raise InputError(f"{src_path} holds no valid pixels to tile")
                overview = build_overviews(store, min_zoom) if min_zoom < zoom else 0
                write_extent_metadata(store)
        return {"tiles": written, "overview_tiles": overview, "zoom": zoom, "min_zoom": min_zoom}
    finally:
        src.close()
