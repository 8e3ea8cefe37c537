"""Local satellite tile cache: MBTiles and XYZ stores, metric north-up patches, tile import.

- `mbtiles.MBTilesStore`, `xyz.XYZStore`, `store.open_store`: tile stores (XYZ indices).
- `raster.EnuRaster`, `raster.add_enu_raster`, `raster.build_overviews`: paint ENU rasters into tiles.
- `patch.PatchSampler`, `patch.Patch`: north-up metric patches with a validity mask.
- `geotiff`, `serve`, `prefetch`: GeoTIFF import, a confined loopback tile server, a resumable downloader.
- `validate`, `download`, `verify`: is a tile blob whole and of the cache's size; fetching validated
  tiles (URL templates with {s}, retries, a circuit breaker); checking and mending a whole cache.
"""
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.patch import Patch, PatchSampler
from cvgl_ros.tiles.raster import EnuRaster, add_enu_raster, build_overviews
from cvgl_ros.tiles.store import TileStore, open_store
from cvgl_ros.tiles.xyz import XYZStore

__all__ = ["MBTilesStore", "XYZStore", "TileStore", "open_store", "EnuRaster", "add_enu_raster",
           "build_overviews", "Patch", "PatchSampler"]
