"""The tile-store interface shared by MBTiles files and XYZ directories, and `open_store`.

Every store addresses tiles in the XYZ convention (z, x, y with y growing south, as
`cvgl_ros.geo.mercator` and web maps use it); an MBTiles store flips rows to TMS inside.
Stores are read-only unless opened writable; a writable store takes one writer and any
number of reader threads at once.

`get_tile` answers None both for a tile the store lacks and for one it refuses to read (an
XYZ file that resolves outside the cache root, a FIFO or device, a file over
`MAX_TILE_BYTES`), so a patch reader treats a refused tile as missing; `read_tile` raises
`TileRefusedError` for the latter, for callers that must say why (the tile server, `verify`).
"""
from __future__ import annotations

import abc
from pathlib import Path

from cvgl_ros.errors import InputError
from cvgl_ros.geo.mercator import check_zoom

# No tile is this large: a 512 px RGBA PNG of pure noise is ~1 MiB. Larger blobs or files are
# refused instead of read (a 20 MB junk "tile", an endless /dev/zero).
MAX_TILE_BYTES = 4 * 2**20


class TileRefusedError(InputError):
    """A stored tile that the store will not read: outside its root, not a regular file, too large."""


def check_tile(z: int, x: int, y: int) -> tuple[int, int, int]:
    """Validate XYZ tile indices: zoom in range and 0 <= x, y < 2**z."""
    z = check_zoom(int(z))
    n = 1 << z
    x, y = int(x), int(y)
    if not (0 <= x < n and 0 <= y < n):
        raise InputError(f"tile {z}/{x}/{y} is outside the {n}x{n} grid of zoom {z}")
    return z, x, y


class TileStore(abc.ABC):
    """Read (and optionally write) encoded tiles by XYZ index."""

    path: Path
    writable: bool

    @property
    @abc.abstractmethod
    def image_format(self) -> str:
        """'png' | 'jpg' | 'webp'."""

    @abc.abstractmethod
    def get_tile(self, z: int, x: int, y: int) -> bytes | None:
        """The encoded tile, or None when the store does not hold it."""

    def read_tile(self, z: int, x: int, y: int) -> bytes | None:
        """Like `get_tile`, but a tile the store refuses to read raises `TileRefusedError`."""
        return self.get_tile(z, x, y)

    @abc.abstractmethod
    def put_tile(self, z: int, x: int, y: int, data: bytes) -> None:
        """Store (or replace) one encoded tile; writable stores only."""

    @abc.abstractmethod
    def delete_tile(self, z: int, x: int, y: int) -> None:
        """Remove one tile (nothing happens when it is not stored); writable stores only."""

    @abc.abstractmethod
    def tile_keys(self, zoom: int | None = None) -> list[tuple[int, int, int]]:
        """Sorted (z, x, y) of every stored tile (of one zoom when given)."""

    @abc.abstractmethod
    def zoom_levels(self) -> list[int]:
        """Sorted zoom levels holding at least one tile."""

    @property
    @abc.abstractmethod
    def metadata(self) -> dict:
        """Metadata as a dict of strings."""

    @abc.abstractmethod
    def set_metadata(self, **kv) -> None:
        """Set metadata entries (values stored as strings); writable stores only."""

    def has_tile(self, z: int, x: int, y: int) -> bool:
        return self.get_tile(z, x, y) is not None

    def tile_count(self, zoom: int | None = None) -> int:
        return len(self.tile_keys(zoom))

    def commit(self) -> None:
        """Make every write so far durable (a no-op for stores that write immediately)."""

    def close(self) -> None:
        """Release the store (commits a writable store)."""

    def abort(self) -> None:
        """Close after a failure; stores created atomically leave nothing behind."""
        self.close()

    def _require_writable(self) -> None:
        if not self.writable:
            raise InputError(f"tile store {self.path} is open read-only")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def open_store(path: str | Path, writable: bool = False) -> TileStore:
    """Open a tile cache by its path: a directory is an XYZ store, a file an MBTiles store."""
    from cvgl_ros.tiles.mbtiles import MBTilesStore
    from cvgl_ros.tiles.xyz import XYZStore

    path = Path(path)
    if path.is_dir():
        return XYZStore.open(path, writable=writable)
    if path.is_file():
        return MBTilesStore.open(path, writable=writable)
    raise InputError(f"no such tile cache: {path} (expected an .mbtiles file or an XYZ directory)")
