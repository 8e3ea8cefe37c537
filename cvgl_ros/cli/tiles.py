"""`cvgl tiles`: inspect, cut patches from, import into, serve and prefetch tile caches."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cvgl_ros.cli.args import (add_force, claim_out, existing_path, float_list, latitude, longitude,
                               non_negative_float, positive_float, positive_int)
from cvgl_ros.errors import InputError


def _zoom(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"zoom {text!r} is not an integer") from None
    if not 0 <= value <= 24:
        raise argparse.ArgumentTypeError(f"zoom {value} is outside [0, 24]")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} is not an integer") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside [0, 65535]")
    return value


def _retries(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"retries {text!r} is not an integer") from None
    if not 0 <= value <= 20:
        raise argparse.ArgumentTypeError(f"retries {value} is outside [0, 20]")
    return value


def _info(args) -> int:
    from cvgl_ros.tiles.store import open_store
    from cvgl_ros.tiles.mbtiles import MBTilesStore

    with open_store(args.cache) as store:
        kind = "MBTiles" if isinstance(store, MBTilesStore) else "XYZ directory"
        zooms = {z: store.tile_count(z) for z in store.zoom_levels()}
        meta = store.metadata
        info = {"path": str(args.cache), "kind": kind, "format": store.image_format,
                "zoom_tiles": zooms, "tiles": sum(zooms.values()), "metadata": meta}
        if args.cache.is_file():
            info["size_mb"] = round(args.cache.stat().st_size / 2**20, 3)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"{info['path']}: {kind}, {store.image_format} tiles, {info['tiles']} in all"
          + (f", {info['size_mb']} MB" if "size_mb" in info else ""))
    for z, n in zooms.items():
        print(f"  zoom {z:2d}: {n} tiles")
    for key in ("name", "description", "bounds", "center", "minzoom", "maxzoom"):
        if meta.get(key):
            print(f"  {key}: {meta[key]}")
    return 0


def _patch(args) -> int:
    import cv2
    import numpy as np

    from cvgl_ros import atomic
    from cvgl_ros.tiles.patch import PatchSampler

    claim_out(args, "tiles patch", "file", inputs=[args.cache])
    with PatchSampler(args.cache, cache_mb=args.cache_mb, zoom=args.zoom) as sampler:
        patch = sampler.patch_wgs84(args.lat, args.lon, args.size_px, args.mpp)
    if not patch.valid.any():
        raise InputError(f"lat/lon {args.lat:.7f},{args.lon:.7f} is outside the cache {args.cache}: "
                         f"none of the {patch.missing_tiles + patch.corrupt_tiles} zoom-{patch.zoom} tiles "
                         "around it is stored")
    if patch.valid.all():
        pixels = cv2.cvtColor(patch.rgb, cv2.COLOR_RGB2BGR)
    else:
        pixels = cv2.cvtColor(np.dstack([patch.rgb, np.where(patch.valid, 255, 0).astype(np.uint8)]),
                              cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", pixels)
    if not ok:
        raise InputError("PNG encoding of the patch failed")
    atomic.write_bytes(args.out, buf.tobytes())
    print(f"wrote {args.out}: {args.size_px}x{args.size_px} px at {args.mpp:g} m/px from zoom {patch.zoom}, "
          f"valid {100 * patch.valid_fraction:.1f} %, missing tiles {patch.missing_tiles}, "
          f"corrupt tiles {patch.corrupt_tiles}")
    return 0


def _import_geotiff(args) -> int:
    from cvgl_ros.tiles.geotiff import import_geotiff

    if not args.out.name.endswith(".mbtiles"):
        raise InputError(f"output {args.out} must be an .mbtiles file")
    claim_out(args, "tiles import-geotiff", "file", inputs=[args.file])
    min_zoom = args.zoom if args.min_zoom is None else args.min_zoom
    result = import_geotiff(args.file, args.out, zoom=args.zoom, min_zoom=min_zoom, image_format=args.format,
                            name=args.name, progress=not args.quiet)
    print(f"wrote {args.out}: {result['tiles']} tiles at zoom {result['zoom']}"
          + (f", {result['overview_tiles']} overview tiles down to zoom {min_zoom}" if result["overview_tiles"] else ""))
    return 0


def _is_mbtiles(path: Path) -> bool:
    """An SQLite file with the MBTiles `metadata` and `tiles` tables."""
    import sqlite3

    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            return False
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    except sqlite3.DatabaseError:
        return False
    finally:
        con.close()
    return {"metadata", "tiles"} <= names


def _serve(args) -> int:
    from cvgl_ros.tiles.serve import is_loopback_host, make_server
    from cvgl_ros.tiles.store import open_store

    remote = not is_loopback_host(args.host)
    if remote and not args.allow_remote:
        raise InputError(f"--host {args.host} is not a loopback address: anyone who can reach it could read the "
                         "cache and hold its connections; add --allow-remote to serve it anyway")
    store = open_store(args.cache)
    if not store.zoom_levels():
        raise InputError(f"tile cache {args.cache} holds no tiles")
    try:
        server = make_server(store, args.host, args.port, quiet=not args.verbose, allow_remote=args.allow_remote,
                             workers=args.workers, max_connections=args.max_connections,
                             read_timeout_s=args.read_timeout_s, write_timeout_s=args.write_timeout_s)
    except OSError as exc:
        store.close()
        raise InputError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = server.server_address[:2]
    if remote:
        print(f"cvgl: WARNING: serving {args.cache} on {host}:{port}, NOT loopback: every host that can reach "
              "this port can read the whole cache, with no authentication and no TLS", file=sys.stderr, flush=True)
    print(f"serving {args.cache} on http://{host}:{port}/{{z}}/{{x}}/{{y}}.{store.image_format}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()
    return 0


def _prefetch(args) -> int:
    from cvgl_ros.tiles import prefetch as pf

    pf.check_url_template(args.url, args.subdomains)
    if not args.out.name.endswith(".mbtiles"):
        raise InputError(f"output {args.out} must be an .mbtiles file")
    # An existing MBTiles file is resumed (tiles are only added), so any MBTiles counts as
    # prefetch's own; another kind of file there is refused (prefetch has no --force).
    claim_out(args, "tiles prefetch", "file", inputs=[args.bag], sidecar=False, recognize=_is_mbtiles)
    if args.bag is not None:
        lat, lon = pf.positions_from_bag(args.bag)
        tiles = pf.tiles_near_points(lat, lon, args.radius_m, args.zoom)
    else:
        tiles = pf.tiles_in_bbox(*args.bbox, radius_m=args.radius_m, zoom=args.zoom)
    stats = pf.prefetch(args.url, tiles, args.out, args.zoom, workers=args.workers, retries=args.retries,
                        timeout_s=args.timeout_s, batch=args.batch, image_format=args.format, tile_size=args.tile_size,
                        subdomains=args.subdomains, max_connection_failures=args.max_connection_failures,
                        progress=not args.quiet)
    print(f"{args.out}: {stats.wanted} tiles wanted, {stats.already_cached} already cached, "
          f"{stats.downloaded} downloaded, {stats.absent_at_source} not on the server, {stats.failed} failed "
          f"({stats.retries} retries)"
          + (f", {stats.cached_invalid} cached tiles failed the check and were fetched again"
             if stats.cached_invalid else ""))
    if stats.stopped:
        print(f"cvgl: stopped: {stats.stopped}; {stats.not_attempted} tiles not attempted, is the server up? "
              "Rerun the same command to resume", file=sys.stderr)
        return 1
    if stats.failed:
        for line in stats.errors[:10]:
            print(f"  {line}", file=sys.stderr)
        if len(stats.errors) > 10:
            print(f"  ... and {len(stats.errors) - 10} more", file=sys.stderr)
        print(f"cvgl: {stats.failed} tiles failed; rerun the same command to resume", file=sys.stderr)
        return 1
    return 0


def _verify(args) -> int:
    from cvgl_ros.tiles import download
    from cvgl_ros.tiles.store import open_store
    from cvgl_ros.tiles.verify import repair_store, verify_store

    if args.url is not None:
        if not args.repair:
            raise InputError("--url re-fetches bad tiles and needs --repair")
        download.check_url_template(args.url, args.subdomains)
    with open_store(args.cache) as store:
        report = verify_store(store, tile_size=args.tile_size, progress=not args.quiet)
    for problem in report.database_problems:
        print(f"database: {problem}")
    for z, x, y, reason in report.bad:
        print(f"bad {z}/{x}/{y}: {reason}")
    print(f"{args.cache}: {report.checked} tiles checked ({report.tile_size} px), {len(report.bad)} bad"
          + (f", database damaged ({len(report.database_problems)} problems)" if report.database_problems else ""))
    remaining = len(report.bad)
    if args.repair and report.bad:
        with open_store(args.cache, writable=True) as store:
            fixed = repair_store(store, report.bad, report.tile_size, args.url, subdomains=args.subdomains,
                                 retries=args.retries, timeout_s=args.timeout_s, progress=not args.quiet)
        for z, x, y, reason in fixed.undeletable:
            print(f"kept {z}/{x}/{y}: {reason}")
        for z, x, y, reason in fixed.not_refetched:
            print(f"deleted, not fetched again {z}/{x}/{y}: {reason}")
        print(f"repair: {fixed.deleted} deleted, {fixed.refetched} fetched again"
              + ("" if args.url else "; the next `cvgl tiles prefetch` fetches them")
              + (f"; stopped: {fixed.stopped}" if fixed.stopped else ""))
        remaining = len(fixed.undeletable) + len(fixed.not_refetched)
    if report.database_problems:
        print(f"cvgl: {args.cache} is a damaged SQLite database; rebuild it (prefetch or import again)",
              file=sys.stderr)
        return 1
    if remaining:
        print(f"cvgl: {remaining} bad or missing tiles remain in {args.cache}"
              + ("" if args.repair else "; --repair deletes them"), file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("tiles", help="satellite tile caches: info, patch, import-geotiff, serve, prefetch, "
                                            "verify")
    sub = p.add_subparsers(dest="tiles_command", metavar="TILES_COMMAND", required=True)
    for add in (_add_info, _add_patch, _add_import_geotiff, _add_serve, _add_prefetch, _add_verify):
        add(sub)


def _add_info(sub) -> None:
    info = sub.add_parser("info", help="zoom levels, tile counts and metadata of a cache")
    info.add_argument("cache", type=existing_path, metavar="CACHE", help=".mbtiles file or XYZ directory")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)


def _add_patch(sub) -> None:
    patch = sub.add_parser("patch", help="cut a north-up metric patch around a WGS84 point into a PNG")
    patch.add_argument("--cache", type=existing_path, required=True, help=".mbtiles file or XYZ directory")
    patch.add_argument("--lat", type=latitude, required=True)
    patch.add_argument("--lon", type=longitude, required=True)
    patch.add_argument("--size-px", type=positive_int, default=512)
    patch.add_argument("--mpp", type=positive_float, default=0.2, help="metres per pixel (default 0.2)")
    patch.add_argument("--zoom", type=_zoom, default=None, help="tile zoom to cut from (default: the highest)")
    patch.add_argument("--cache-mb", type=positive_float, default=64)
    patch.add_argument("--out", type=Path, required=True, help="PNG (RGBA with alpha 0 where no tile data)")
    add_force(patch, "the PNG at --out")
    patch.set_defaults(func=_patch)


def _add_import_geotiff(sub) -> None:
    imp = sub.add_parser("import-geotiff", help="reproject a GeoTIFF (any CRS) to Web Mercator tiles in MBTiles")
    imp.add_argument("file", type=Path, metavar="FILE.tif")
    imp.add_argument("--out", type=Path, required=True, metavar="C.mbtiles")
    imp.add_argument("--zoom", type=_zoom, default=19)
    imp.add_argument("--min-zoom", type=_zoom, default=None, help="build overviews down to this zoom")
    imp.add_argument("--format", choices=["png", "jpg", "webp"], default="png")
    imp.add_argument("--name", default=None)
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force(imp, "the .mbtiles file at --out")
    imp.set_defaults(func=_import_geotiff)


def _add_serve(sub) -> None:
    serve = sub.add_parser("serve", help="serve a cache as XYZ tiles over HTTP (loopback by default)")
    serve.add_argument("cache", type=existing_path, metavar="CACHE")
    serve.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1 only)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a --host that is not loopback (no authentication, no TLS: think twice)")
    serve.add_argument("--workers", type=positive_int, default=16, help="connections handled at once")
    serve.add_argument("--max-connections", type=positive_int, default=256,
                       help="connections open at once (queued + handled); more get 503")
    serve.add_argument("--read-timeout-s", type=positive_float, default=10.0,
                       help="time from accepting a connection to its complete request")
    serve.add_argument("--write-timeout-s", type=positive_float, default=10.0, help="time allowed for each write")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)


def _add_prefetch(sub) -> None:
    pre = sub.add_parser("prefetch", help="download the tiles around a drive or box into an MBTiles cache")
    pre.add_argument("--url", required=True, help="tile URL template, e.g. 'http://127.0.0.1:8080/{z}/{x}/{y}.png'")
    where = pre.add_mutually_exclusive_group(required=True)
    where.add_argument("--bag", type=existing_path, help="rosbag2 whose NavSatFix positions define the route")
    where.add_argument("--bbox", type=float_list(4), metavar="W,S,E,N", help="WGS84 box (degrees)")
    pre.add_argument("--radius-m", type=non_negative_float, default=200.0, help="margin around positions / the box (m)")
    pre.add_argument("--zoom", type=_zoom, default=19)
    pre.add_argument("--out", type=Path, required=True, metavar="C.mbtiles")
    pre.add_argument("--workers", type=positive_int, default=8, help="concurrent downloads")
    pre.add_argument("--retries", type=_retries, default=4)
    pre.add_argument("--timeout-s", type=positive_float, default=10.0)
    pre.add_argument("--batch", type=positive_int, default=64, help="tiles per committed transaction")
    pre.add_argument("--subdomains", default="abc", help="values of {s} in --url, e.g. abc or t0,t1 (default abc)")
    pre.add_argument("--tile-size", type=int, choices=[256, 512], default=None,
                     help="tile size in px (default: the cache's, 256 for a new cache)")
    pre.add_argument("--format", choices=["png", "jpg", "webp"], default=None,
                     help="tile format of a new cache (default: the URL's extension, else png)")
    pre.add_argument("--max-connection-failures", type=positive_int, default=16,
                     help="stop after this many attempts in a row that got no HTTP response")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    pre.set_defaults(func=_prefetch)


def _add_verify(sub) -> None:
    ver = sub.add_parser("verify", help="decode every tile of a cache; --repair deletes (or re-fetches) bad ones")
    ver.add_argument("cache", type=existing_path, metavar="CACHE", help=".mbtiles file or XYZ directory")
    ver.add_argument("--repair", action="store_true",
                     help="delete the bad tiles, so that the next prefetch fetches them again")
    ver.add_argument("--url", default=None, help="with --repair: fetch the bad tiles again from this tile URL")
    ver.add_argument("--subdomains", default="abc", help="values of {s} in --url (default abc)")
    ver.add_argument("--tile-size", type=int, choices=[256, 512], default=None,
                     help="expected tile size in px (default: that of the cache's first tiles)")
    ver.add_argument("--retries", type=_retries, default=4)
    ver.add_argument("--timeout-s", type=positive_float, default=10.0)
    ver.add_argument("--quiet", action="store_true", help="no progress bar")
    ver.set_defaults(func=_verify)
