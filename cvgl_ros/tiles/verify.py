"""Check every tile of a cache, and mend the bad ones (`cvgl tiles verify CACHE [--repair]`).

A tile is good when `validate.validate_tile` passes: a whole PNG/JPEG/WebP container of the
cache's tile size that decodes. The cache's tile size is that of its first readable tiles
(256 px when none is readable). A tile the store refuses to read (an XYZ symlink out of the
root, a FIFO, a device, a file over the size cap) is bad too. For MBTiles, SQLite's
`quick_check` is run as well; a damaged database is reported but cannot be mended here.

Repair deletes the bad tiles (committed at once, so the next `prefetch` run fetches them
again) and, when a tile URL is given, fetches them again right away through
`download.fetch_into`, which stores only tiles that pass the same check.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from cvgl_ros.tiles.codec import CorruptTileError
from cvgl_ros.tiles.download import DEFAULT_MAX_CONNECTION_FAILURES, DEFAULT_SUBDOMAINS, fetch_into
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.store import TileRefusedError, TileStore
from cvgl_ros.tiles.validate import cache_tile_size, validate_tile


@dataclass
class VerifyReport:
    checked: int = 0
    tile_size: int = 256
    bad: list[tuple[int, int, int, str]] = field(default_factory=list)  # (z, x, y, reason)
    database_problems: list[str] = field(default_factory=list)


@dataclass
class RepairReport:
    deleted: int = 0
    refetched: int = 0
    not_refetched: list[tuple[int, int, int, str]] = field(default_factory=list)  # deleted, fetch failed
    undeletable: list[tuple[int, int, int, str]] = field(default_factory=list)
    stopped: str = ""


def verify_store(store: TileStore, tile_size: int | None = None, progress: bool = False) -> VerifyReport:
    """Decode every tile of `store`; the bad ones with their reasons."""
    from tqdm import tqdm

    keys = store.tile_keys()
    report = VerifyReport(tile_size=tile_size or cache_tile_size(store, keys) or 256)
    if isinstance(store, MBTilesStore):
        report.database_problems = store.integrity_problems()
    for key in tqdm(keys, desc="verify", unit="tile", disable=not progress):
        report.checked += 1
        try:
            data = store.read_tile(*key)
            if data is None:
                raise CorruptTileError("listed but not readable (removed meanwhile?)")
            validate_tile(data, report.tile_size)
        except (CorruptTileError, TileRefusedError) as exc:
            report.bad.append((*key, str(exc)))
    return report


def repair_store(store: TileStore, bad: list[tuple[int, int, int, str]], tile_size: int, url_template: str | None = None,
                 *, subdomains: str = DEFAULT_SUBDOMAINS, workers: int = 4, retries: int = 4, timeout_s: float = 10.0,
                 backoff_s: float = 0.5, max_connection_failures: int = DEFAULT_MAX_CONNECTION_FAILURES,
                 progress: bool = False) -> RepairReport:
    """Delete the `bad` tiles from the writable `store`; re-fetch them from `url_template` if given."""
    report = RepairReport()
    by_zoom: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for z, x, y, reason in bad:
        try:
            store.delete_tile(z, x, y)
        except TileRefusedError as exc:
            report.undeletable.append((z, x, y, str(exc)))
            continue
        report.deleted += 1
        by_zoom[z].append((x, y))
    store.commit()
    if url_template is None:
        return report
    reasons: dict[tuple[int, int, int], str] = {}
    for z, keys in sorted(by_zoom.items()):
        if report.stopped:
            break
        stats = fetch_into(store, url_template, z, sorted(keys), tile_size=tile_size, subdomains=subdomains,
                           workers=workers, retries=retries, timeout_s=timeout_s, backoff_s=backoff_s,
                           max_connection_failures=max_connection_failures, progress=progress)
        report.refetched += stats.downloaded
        reasons.update({(fz, x, y): reason for fz, x, y, reason in stats.failures})
        report.stopped = stats.stopped
    for z, keys in sorted(by_zoom.items()):
        stored = {(x, y) for _, x, y in store.tile_keys(z)}
        for x, y in sorted(set(keys) - stored):
            report.not_refetched.append((z, x, y, reasons.get((z, x, y), report.stopped or "not on the server")))
    return report
