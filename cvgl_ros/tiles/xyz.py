"""XYZ directory tile store: `ROOT/{z}/{x}/{y}.png|jpg|webp`, metadata in `ROOT/metadata.json`.

Paths are built from integers only, so no tile index can name a file outside ROOT. Each
tile is written to a temporary sibling and renamed into place, so readers in other threads
or processes never see half a tile.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from cvgl_ros.atomic import write_json
from cvgl_ros.errors import InputError
from cvgl_ros.tiles.codec import TILE_FORMATS, normalize_format, sniff_format
from cvgl_ros.tiles.store import TileStore, check_tile

METADATA_FILE = "metadata.json"
_EXTENSIONS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}


class XYZStore(TileStore):
    """A directory of `{z}/{x}/{y}.{ext}` tiles; use `XYZStore.create` or `XYZStore.open`."""

    def __init__(self, path: Path, writable: bool, image_format: str | None):
        self.path = Path(path)
        self.writable = writable
        self._format = image_format

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
        fmt = None
        meta_file = path / METADATA_FILE
        if meta_file.is_file():
            meta = cls._read_metadata(meta_file)
            if meta.get("format"):
                fmt = normalize_format(meta["format"])
        store = cls(path, writable, fmt)
        if fmt is None:
            store._format = store._guess_format()
        return store

    @staticmethod
    def _read_metadata(meta_file: Path) -> dict:
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError) as exc:
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

    def get_tile(self, z: int, x: int, y: int) -> bytes | None:
        z, x, y = check_tile(z, x, y)
        candidates = [self._format] if self._format else list(TILE_FORMATS) + ["jpeg"]
        for ext in candidates:
            try:
                return self._tile_path(z, x, y, ext).read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
        if self._format == "jpg":  # `.jpeg` spelling
            try:
                return self._tile_path(z, x, y, "jpeg").read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                pass
        return None

    def put_tile(self, z: int, x: int, y: int, data: bytes) -> None:
        self._require_writable()
        z, x, y = check_tile(z, x, y)
        if not data:
            raise InputError(f"tile {z}/{x}/{y}: tile data must be non-empty bytes")
        ext = self._format or sniff_format(bytes(data)) or "png"
        target = self._tile_path(z, x, y, ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{y}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(data))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
                    if stem.isdigit() and ext.lower() in _EXTENSIONS and f.is_file():
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
        meta_file = self.path / METADATA_FILE
        meta = self._read_metadata(meta_file) if meta_file.is_file() else {}
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
