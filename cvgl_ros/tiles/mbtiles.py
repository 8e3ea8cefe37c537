"""MBTiles 1.3 tile store (SQLite), with the TMS row flip inside.

The MBTiles 1.3 specification stores raster tiles in a table (or view)
`tiles(zoom_level, tile_column, tile_row, tile_data)` where `tile_row` counts from the
south (TMS), and key/value strings in `metadata(name, value)` (`name` and `format` are
required; `bounds`, `center`, `minzoom`, `maxzoom` recommended). This class speaks XYZ
(rows from the north) to callers and flips rows with `geo.mercator.xyz_to_tms_row`.

Concurrency: a read-only store keeps a small pool of SQLite connections, one per reader
thread at a time, so any number of threads can read. A writable store has one connection
guarded by a lock; writes accumulate in one transaction until `commit()` (or `close()`),
so each commit is atomic and a process killed at any moment leaves a valid database
holding exactly the committed tiles. In-place writable files run in WAL mode while open
(readers in other processes are not blocked) and go back to rollback-journal mode when
closed, so the file at rest opens on read-only media.

`MBTilesStore.create(path, ...)` with `atomic=True` (default) builds the whole file under a
temporary name beside `path` and renames it into place on `close()`; an exception inside
`with MBTilesStore.create(...)` leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

from cvgl_ros.atomic import atomic_path
from cvgl_ros.errors import InputError
from cvgl_ros.geo.mercator import xyz_to_tms_row
from cvgl_ros.tiles.codec import normalize_format, sniff_format
from cvgl_ros.tiles.store import MAX_TILE_BYTES, TileRefusedError, TileStore, check_tile

MBTILES_APPLICATION_ID = 0x4D504258  # "MPBX", the SQLite application_id MBTiles 1.3 suggests
BUSY_TIMEOUT_S = 30.0
_POOL_IDLE_MAX = 8

_SCHEMA = """
CREATE TABLE metadata (name TEXT, value TEXT);
CREATE UNIQUE INDEX metadata_name ON metadata (name);
CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);
"""


def _connect(path: Path, read_only: bool, immutable: bool = False) -> sqlite3.Connection:
    if read_only:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    return conn


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Raise InputError unless `conn` is an MBTiles database."""
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path} is not an SQLite database ({exc})") from None
    missing = {"tiles", "metadata"} - names
    if missing:
        raise InputError(f"{path} is an SQLite file but not MBTiles (no {' or '.join(sorted(missing))} table)")
    try:
        conn.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles LIMIT 0")
        conn.execute("SELECT name, value FROM metadata LIMIT 0")
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path} is not MBTiles: its tiles/metadata tables lack the MBTiles columns ({exc})") from None


class MBTilesStore(TileStore):
    """An MBTiles 1.3 file; use `MBTilesStore.create` or `MBTilesStore.open`, not the constructor.

    >>> with MBTilesStore.create("c.mbtiles", name="demo", image_format="png") as store:
    ...     store.put_tile(19, 271000, 180000, png_bytes)          # XYZ indices
    >>> MBTilesStore.open("c.mbtiles").get_tile(19, 271000, 180000) == png_bytes
    """

    def __init__(self, path: Path, db_path: Path, writable: bool, atomic_ctx=None, wal: bool = False):
        self.path = Path(path)
        self._db_path = Path(db_path)
        self.writable = writable
        self._atomic_ctx = atomic_ctx
        self._wal = wal
        self._lock = threading.RLock()
        self._pool: list[sqlite3.Connection] = []
        self._all_readers: list[sqlite3.Connection] = []
        self._immutable = False
        self._writer: sqlite3.Connection | None = None
        self._closed = False
        self._format: str | None = None
        if writable:
            self._writer = _connect(self._db_path, read_only=False)
            if atomic_ctx is not None:
                # A temporary file that only becomes the cache on success: no on-disk journal
                # or per-commit fsync needed; close() fsyncs once before the rename.
                self._writer.execute("PRAGMA journal_mode=MEMORY")
                self._writer.execute("PRAGMA synchronous=OFF")
            else:
                if wal:
                    self._writer.execute("PRAGMA journal_mode=WAL")
                self._writer.execute("PRAGMA synchronous=FULL")

    # -- construction ---------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, name: str, image_format: str = "png", description: str = "",
               atomic: bool = True, **metadata) -> "MBTilesStore":
        """A new, writable MBTiles file with the 1.3 schema and metadata name/format/type/version.

        atomic=True: everything is written to a temporary sibling that replaces `path` (an
        existing file included) on `close()`. atomic=False: the empty database appears at
        `path` at once (which must not exist) and each `commit()` makes tiles durable there
        (what `cvgl tiles prefetch` needs to resume).
        """
        path = Path(path)
        fmt = normalize_format(image_format)
        if not atomic and path.exists():
            raise InputError(f"{path} exists already; open it writable to add tiles")
        meta = {"name": name, "format": fmt, "type": "baselayer", "version": "1.3", "description": description}
        meta.update({k: str(v) for k, v in metadata.items()})
        ctx = atomic_path(path)
        tmp = ctx.__enter__()
        try:
            conn = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                conn.execute(f"PRAGMA application_id={MBTILES_APPLICATION_ID}")
                conn.execute("BEGIN")
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.executemany("INSERT INTO metadata (name, value) VALUES (?, ?)", sorted(meta.items()))
                conn.execute("COMMIT")
            finally:
                conn.close()
        except BaseException as exc:
            ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if atomic:
            store = cls(path, tmp, writable=True, atomic_ctx=ctx, wal=False)
        else:
            ctx.__exit__(None, None, None)
            store = cls(path, path, writable=True, wal=True)
        store._format = fmt
        return store

    @classmethod
    def open(cls, path: str | os.PathLike, writable: bool = False) -> "MBTilesStore":
        """Open an existing MBTiles file; InputError for a missing file or a non-MBTiles one."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"no such MBTiles file: {path}")
        if not path.is_file():
            raise InputError(f"{path} is not a file (an MBTiles cache is one SQLite file)")
        if writable and not os.access(path, os.W_OK):
            raise InputError(f"MBTiles file {path} is not writable")
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        if head != b"SQLite format 3\x00":
            raise InputError(f"{path} is not an SQLite database, so not MBTiles")
        store = cls(path, path, writable=writable, wal=writable)
        try:
            with store._reader() as conn:
                _check_schema(conn, path)
            if writable:
                kind = store._writer.execute("SELECT type FROM sqlite_master WHERE name='tiles'").fetchone()[0]
                if kind != "table":
                    raise InputError(f"{path} stores tiles in a view; it can be read but not written")
        except BaseException:
            store.close()
            raise
        return store

    # -- connections ----------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self):
        """A connection for one read: the writer's (under its lock) or one from the pool."""
        if self._closed:
            raise InputError(f"MBTiles store {self.path} is closed")
        if self.writable:
            with self._lock:
                yield self._writer
            return
        with self._lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._new_reader()
        try:
            yield conn
        finally:
            with self._lock:
                if len(self._pool) < _POOL_IDLE_MAX and not self._closed:
                    self._pool.append(conn)
                    conn = None
            if conn is not None:
                self._forget(conn)

    def _new_reader(self) -> sqlite3.Connection:
        conn = _connect(self._db_path, read_only=True, immutable=self._immutable)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            # A WAL database on a read-only directory: read it as an immutable snapshot.
            conn.close()
            self._immutable = True
            conn = _connect(self._db_path, read_only=True, immutable=True)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise InputError(f"{self.path} is not an SQLite database ({exc})") from None
        with self._lock:
            self._all_readers.append(conn)
        return conn

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if conn in self._all_readers:
                self._all_readers.remove(conn)
        conn.close()

    def _begin(self) -> None:
        if not self._writer.in_transaction:
            self._writer.execute("BEGIN IMMEDIATE")

    # -- reading --------------------------------------------------------------------

    @property
    def image_format(self) -> str:
        if self._format is None:
            fmt = self.metadata.get("format")
            if fmt is None:
                with self._reader() as conn:
                    row = conn.execute("SELECT tile_data FROM tiles LIMIT 1").fetchone()
                fmt = (sniff_format(bytes(row[0])) if row and row[0] else None) or "png"
            try:
                self._format = normalize_format(fmt)
            except InputError:
                raise InputError(f"{self.path}: metadata format {fmt!r} is not a raster tile format "
                                 "(png, jpg, webp)") from None
        return self._format

    def get_tile(self, z: int, x: int, y: int) -> bytes | None:
        z, x, y = check_tile(z, x, y)
        with self._reader() as conn:
            row = conn.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                (z, x, xyz_to_tms_row(y, z)),
            ).fetchone()
        if row is None or row[0] is None:
            return None
        return bytes(row[0])

    def read_tile(self, z: int, x: int, y: int) -> bytes | None:
        """`get_tile`, but a blob over `MAX_TILE_BYTES` (no real tile is) raises TileRefusedError."""
        data = self.get_tile(z, x, y)
        if data is not None and len(data) > MAX_TILE_BYTES:
            raise TileRefusedError(f"tile {z}/{x}/{y} is {len(data)} bytes, over the {MAX_TILE_BYTES} cap")
        return data

    def has_tile(self, z: int, x: int, y: int) -> bool:
        z, x, y = check_tile(z, x, y)
        with self._reader() as conn:
            row = conn.execute(
                "SELECT 1 FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                (z, x, xyz_to_tms_row(y, z)),
            ).fetchone()
        return row is not None

    def tile_keys(self, zoom: int | None = None) -> list[tuple[int, int, int]]:
        with self._reader() as conn:
            if zoom is None:
                rows = conn.execute("SELECT zoom_level, tile_column, tile_row FROM tiles").fetchall()
            else:
                rows = conn.execute("SELECT zoom_level, tile_column, tile_row FROM tiles WHERE zoom_level=?",
                                    (int(zoom),)).fetchall()
        return sorted((int(z), int(x), xyz_to_tms_row(int(r), int(z))) for z, x, r in rows)

    def tile_count(self, zoom: int | None = None) -> int:
        with self._reader() as conn:
            if zoom is None:
                return int(conn.execute("SELECT COUNT(*) FROM tiles").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM tiles WHERE zoom_level=?", (int(zoom),)).fetchone()[0])

    def zoom_levels(self) -> list[int]:
        with self._reader() as conn:
            rows = conn.execute("SELECT DISTINCT zoom_level FROM tiles ORDER BY zoom_level").fetchall()
        return [int(r[0]) for r in rows]

    def integrity_problems(self) -> list[str]:
        """What SQLite's `PRAGMA quick_check` finds wrong with the file ([] when sound)."""
        try:
            with self._reader() as conn:
                rows = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [str(r[0]) for r in rows if str(r[0]) != "ok"]

    @property
    def metadata(self) -> dict:
        with self._reader() as conn:
            rows = conn.execute("SELECT name, value FROM metadata").fetchall()
        return {str(k): ("" if v is None else str(v)) for k, v in rows}

    # -- writing --------------------------------------------------------------------

    def put_tile(self, z: int, x: int, y: int, data: bytes) -> None:
        self._require_writable()
        z, x, y = check_tile(z, x, y)
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            raise InputError(f"tile {z}/{x}/{y}: tile data must be non-empty bytes")
        with self._lock:
            self._begin()
            self._writer.execute(
                "INSERT OR REPLACE INTO tiles (zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)",
                (z, x, xyz_to_tms_row(y, z), sqlite3.Binary(bytes(data))),
            )

    def delete_tile(self, z: int, x: int, y: int) -> None:
        self._require_writable()
        z, x, y = check_tile(z, x, y)
        with self._lock:
            self._begin()
            self._writer.execute("DELETE FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                                 (z, x, xyz_to_tms_row(y, z)))

    def set_metadata(self, **kv) -> None:
        self._require_writable()
        with self._lock:
            self._begin()
            for name, value in sorted(kv.items()):
                self._writer.execute("DELETE FROM metadata WHERE name=?", (name,))
                self._writer.execute("INSERT INTO metadata (name, value) VALUES (?, ?)", (name, str(value)))
            if "format" in kv:
                self._format = normalize_format(kv["format"])

    @contextlib.contextmanager
    def transaction(self):
        """`with store.transaction():` writes inside commit together or not at all."""
        self._require_writable()
        with self._lock:
            self._begin()
            try:
                yield self
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")

    def commit(self) -> None:
        if self.writable and self._writer is not None:
            with self._lock:
                if self._writer.in_transaction:
                    self._writer.execute("COMMIT")

    # -- closing --------------------------------------------------------------------

    def _close_connections(self, commit: bool) -> None:
        with self._lock:
            self._closed = True
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
            self._pool.clear()
            if self._writer is not None:
                if self._writer.in_transaction:
                    self._writer.execute("COMMIT" if commit else "ROLLBACK")
                if self._wal:
                    try:  # at rest: rollback journal, readable on read-only media
                        self._writer.execute("PRAGMA busy_timeout=0")
                        self._writer.execute("PRAGMA journal_mode=DELETE")
                    except sqlite3.OperationalError:
                        pass  # another process still has it open; it stays in WAL mode
                self._writer.close()
                self._writer = None

    def close(self) -> None:
        """Commit and close; an atomic `create` renames its temporary file into place now."""
        if self._closed:
            return
        self._close_connections(commit=True)
        if self._atomic_ctx is not None:
            ctx, self._atomic_ctx = self._atomic_ctx, None
            with open(self._db_path, "rb+") as f:
                os.fsync(f.fileno())
            ctx.__exit__(None, None, None)

    def abort(self) -> None:
        """Roll back uncommitted writes and close; an atomic `create` leaves no file."""
        if self._closed:
            return
        self._close_connections(commit=False)
        if self._atomic_ctx is not None:
            ctx, self._atomic_ctx = self._atomic_ctx, None
            err = RuntimeError("aborted")
            ctx.__exit__(RuntimeError, err, None)
