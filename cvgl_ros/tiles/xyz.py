"""XYZ directory tile store: `ROOT/{z}/{x}/{y}.png|jpg|webp`, metadata in `ROOT/metadata.json`.

Paths are built from integers only, but a directory or file inside ROOT may be a symlink,
so every read is confined: the tile's real path (all symlinks resolved) must lie inside
ROOT's real path, the resolved file is opened with O_NOFOLLOW | O_NONBLOCK (a FIFO does not
block the open), it must be a regular file of at most `MAX_TILE_BYTES` by fstat, and, where
/proc exists, the opened descriptor's path is checked again (a symlink swapped in between
the check and the open is caught). Anything else raises `TileRefusedError` from `read_tile`
and reads as missing through `get_tile`. Symlinks that stay inside ROOT are followed.
`metadata.json` is read the same way (a refused one is an InputError when the store opens).

Each tile is written to a temporary sibling and renamed into place, so readers in other
threads or processes never see half a tile.
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from cvgl_ros.atomic import write_json
from cvgl_ros.errors import InputError
from cvgl_ros.tiles.codec import TILE_FORMATS, normalize_format, sniff_format
from cvgl_ros.tiles.store import MAX_TILE_BYTES, TileRefusedError, TileStore, check_tile

METADATA_FILE = "metadata.json"
_EXTENSIONS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}


class XYZStore(TileStore):
    """A directory of `{z}/{x}/{y}.{ext}` tiles; use `XYZStore.create` or `XYZStore.open`."""

    def __init__(self, path: Path, writable: bool, image_format: str | None):
        self.path = Path(path)
        self.writable = writable
        self._format = image_format
        self._real_root = os.path.realpath(self.path)
        self.max_tile_bytes = MAX_TILE_BYTES

    @classmethod
    def create(cls, path: str | os.PathLike, name: str = "", image_format: str = "png",
               description: str = "") -> "XYZStore":
        """A new writable XYZ directory (it may exist if empty)."""
        path = Path(path)
        fmt = normalize_format(image_format)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise InputError(f"{path} exists and is not an empty directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create tile directory {path}: {exc.strerror}") from None
        store = cls(path, True, fmt)
        store.set_metadata(name=name, format=fmt, description=description)
        return store

    @classmethod
    def open(cls, path: str | os.PathLike, writable: bool = False) -> "XYZStore":
        path = Path(path)
        if not path.is_dir():
            raise InputError(f"no such XYZ tile directory: {path}")
        if writable and not os.access(path, os.W_OK):
            raise InputError(f"XYZ tile directory {path} is not writable")
        store = cls(path, writable, None)
        meta = store._read_metadata()
        if meta.get("format"):
            store._format = normalize_format(meta["format"])
        else:
            store._format = store._guess_format()
        return store

    def _read_metadata(self) -> dict:
        """metadata.json as a dict of strings ({} when absent), read as confined as a tile: a
        link to a JSON file outside the root would otherwise be served as /metadata.json."""
        meta_file = self.path / METADATA_FILE
        raw = self._read_confined(meta_file)
        if raw is None:
            return {}
        try:
            meta = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise InputError(f"{meta_file} is not valid JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise InputError(f"{meta_file} must hold a JSON object")
        return {str(k): str(v) for k, v in meta.items()}

    def _guess_format(self) -> str | None:
        for z in self.zoom_levels():
            for xdir in sorted((self.path / str(z)).iterdir()):
                for f in sorted(xdir.iterdir()) if xdir.is_dir() else []:
                    ext = _EXTENSIONS.get(f.suffix.lstrip(".").lower())
                    if ext:
                        return ext
        return None

    @property
    def image_format(self) -> str:
        return self._format or "png"

    def _tile_path(self, z: int, x: int, y: int, ext: str) -> Path:
        return self.path / str(z) / str(x) / f"{y}.{ext}"

    def _candidate_paths(self, z: int, x: int, y: int) -> list[Path]:
        exts = [self._format] if self._format else list(TILE_FORMATS)
        if "jpg" in exts:
            exts.append("jpeg")  # the `.jpeg` spelling
        return [self._tile_path(z, x, y, ext) for ext in exts]

    def _inside_root(self, real: str) -> bool:
        return real == self._real_root or real.startswith(self._real_root.rstrip(os.sep) + os.sep)

    def _read_confined(self, path: Path) -> bytes | None:
        """The bytes of one file of the cache, None when absent; TileRefusedError when it must not be read."""
        rel = path.relative_to(self.path)
        try:
            os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        real = os.path.realpath(path)
        if not self._inside_root(real):
            raise TileRefusedError(f"cache file {rel} resolves to {real}, outside the cache root {self._real_root}")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None  # a dangling link inside the root, or removed meanwhile
        except OSError as exc:
            raise TileRefusedError(f"cache file {rel} cannot be opened safely: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise TileRefusedError(f"cache file {rel} is not a regular file (a FIFO, device or directory)")
            if st.st_size > self.max_tile_bytes:
                raise TileRefusedError(f"cache file {rel} is {st.st_size} bytes, over the {self.max_tile_bytes} cap")
            try:
                opened = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                opened = None  # no /proc: the lstat/realpath/O_NOFOLLOW checks above stand
            if opened is not None and not self._inside_root(opened):
                raise TileRefusedError(f"cache file {rel} was swapped for {opened}, outside the cache root")
            chunks, size = [], 0
            while size <= self.max_tile_bytes:
                chunk = os.read(fd, min(1 << 20, self.max_tile_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > self.max_tile_bytes:
                raise TileRefusedError(f"cache file {rel} grew over the {self.max_tile_bytes}-byte cap while read")
            return b"".join(chunks)
        except IsADirectoryError:
            raise TileRefusedError(f"cache file {rel} is a directory") from None
        finally:
            os.close(fd)

    def read_tile(self, z: int, x: int, y: int) -> bytes | None:
        z, x, y = check_tile(z, x, y)
        for path in self._candidate_paths(z, x, y):
            data = self._read_confined(path)
            if data is not None:
                return data
        return None

    def get_tile(self, z: int, x: int, y: int) -> bytes | None:
        """The tile's bytes; None when absent or refused (see `read_tile` for why)."""
        try:
            return self.read_tile(z, x, y)
        except TileRefusedError:
            return None

    def put_tile(self, z: int, x: int, y: int, data: bytes) -> None:
        self._require_writable()
        z, x, y = check_tile(z, x, y)
        if not data:
            raise InputError(f"tile {z}/{x}/{y}: tile data must be non-empty bytes")
        ext = self._format or sniff_format(bytes(data)) or "png"
        target = self._tile_path(z, x, y, ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self._inside_root(os.path.realpath(target.parent)):
            raise TileRefusedError(f"will not write {target.relative_to(self.path)}: its directory resolves "
                                   "outside the cache root")
        fd, tmp = tempfile.mkstemp(prefix=f".{y}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(data))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete_tile(self, z: int, x: int, y: int) -> None:
        """Unlink the tile's file(s) (a symlink itself, never its target); refused when the
        file's directory resolves outside the root (that would delete someone else's file)."""
        self._require_writable()
        z, x, y = check_tile(z, x, y)
        for path in self._candidate_paths(z, x, y):
            if not os.path.lexists(path):
                continue
            if not self._inside_root(os.path.realpath(path.parent)):
                raise TileRefusedError(f"will not delete {path.relative_to(self.path)}: its directory resolves "
                                       "outside the cache root")
            try:
                path.unlink()
            except IsADirectoryError:
                raise TileRefusedError(f"will not delete {path.relative_to(self.path)}: it is a directory") from None
            except FileNotFoundError:
                pass

    def tile_keys(self, zoom: int | None = None) -> list[tuple[int, int, int]]:
        zooms = self.zoom_levels() if zoom is None else [int(zoom)]
        keys = []
        for z in zooms:
            zdir = self.path / str(z)
            if not zdir.is_dir():
                continue
            for xdir in zdir.iterdir():
                if not (xdir.is_dir() and xdir.name.isdigit()):
                    continue
                for f in xdir.iterdir():
                    stem, _, ext = f.name.partition(".")
                    # Not only regular files: a FIFO or device named like a tile is listed
                    # too, so that `verify` reports it (reading it is refused).
                    if stem.isdigit() and ext.lower() in _EXTENSIONS and not f.is_dir():
                        keys.append((z, int(xdir.name), int(stem)))
        return sorted(set(keys))

    def zoom_levels(self) -> list[int]:
        zooms = []
        for d in self.path.iterdir():
            if d.is_dir() and d.name.isdigit() and 0 <= int(d.name) <= 24 and any(d.iterdir()):
                zooms.append(int(d.name))
        return sorted(zooms)

    @property
    def metadata(self) -> dict:
        meta = self._read_metadata()
        if self._format and "format" not in meta:
            meta["format"] = self._format
        return meta

    def set_metadata(self, **kv) -> None:
        self._require_writable()
        meta = self.metadata
        meta.update({k: str(v) for k, v in kv.items()})
        if "format" in kv:
            self._format = normalize_format(kv["format"])
        write_json(self.path / METADATA_FILE, dict(sorted(meta.items())))
