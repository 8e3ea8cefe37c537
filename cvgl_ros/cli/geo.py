"""`cvgl geo`: coordinate conversions at a datum and Web Mercator tile look-ups."""
from __future__ import annotations

import csv
import sys

import numpy as np

from cvgl_ros.cli.args import existing_file, finite_float, lat_lon_alt, latitude, longitude, mercator_latitude, zoom
from cvgl_ros.errors import InputError


def _enu(args) -> int:
    from cvgl_ros.geo import Datum

    datum = Datum(*args.datum)
    if args.csv is not None:
        rows = _read_rows(args.csv, 2)
        lat, lon = rows[:, 0], rows[:, 1]
        alt = rows[:, 2] if rows.shape[1] > 2 else None
    else:
        if args.lat is None or args.lon is None:
            raise InputError("give --lat and --lon, or --csv FILE")
        lat, lon, alt = np.array([args.lat]), np.array([args.lon]), np.array([args.alt])
    e, n, u = datum.to_enu(lat, lon, alt)
    out = csv.writer(sys.stdout)
    out.writerow(["east_m", "north_m", "up_m"])
    for row in zip(e, n, u):
        out.writerow([f"{v:.4f}" for v in row])
    return 0


def _wgs84(args) -> int:
    from cvgl_ros.geo import Datum

    datum = Datum(*args.datum)
    lat, lon, alt = datum.to_wgs84(args.east, args.north, args.up)
    print(f"lat_deg={float(lat):.9f} lon_deg={float(lon):.9f} alt_m={float(alt):.4f}")
    return 0


def _tile(args) -> int:
    from cvgl_ros.geo import ground_resolution_m_per_px, tile_at

    tile = tile_at(args.lon, args.lat, args.zoom)
    res = float(ground_resolution_m_per_px(args.lat, args.zoom))
    print(f"z={tile.z} x={tile.x} y={tile.y} ground_resolution_m_per_px={res:.6f}")
    return 0


def _read_rows(path, min_cols: int) -> np.ndarray:
    try:
        data = np.loadtxt(path, delimiter=",", ndmin=2, comments="#")
    except ValueError as exc:
        raise InputError(f"{path}: not a CSV of numbers ({exc})") from None
    if data.shape[1] < min_cols:
        raise InputError(f"{path}: expected at least {min_cols} columns (lat,lon[,alt])")
    return data


def register(subparsers) -> None:
    p = subparsers.add_parser("geo", help="WGS84 <-> ENU at a datum, Web Mercator tiles")
    sub = p.add_subparsers(dest="geo_command", metavar="GEO_COMMAND", required=True)

    enu = sub.add_parser("enu", help="WGS84 -> local ENU (metres) at a datum")
    enu.add_argument("--datum", type=lat_lon_alt, required=True, metavar="LAT,LON[,ALT]")
    enu.add_argument("--lat", type=latitude)
    enu.add_argument("--lon", type=longitude)
    enu.add_argument("--alt", type=finite_float, default=0.0)
    enu.add_argument("--csv", type=existing_file, help="file of lat,lon[,alt] rows")
    enu.set_defaults(func=_enu)

    wgs = sub.add_parser("wgs84", help="local ENU (metres) -> WGS84 at a datum")
    wgs.add_argument("--datum", type=lat_lon_alt, required=True, metavar="LAT,LON[,ALT]")
    wgs.add_argument("--east", type=finite_float, required=True)
    wgs.add_argument("--north", type=finite_float, required=True)
    wgs.add_argument("--up", type=finite_float, default=0.0)
    wgs.set_defaults(func=_wgs84)

    tile = sub.add_parser("tile", help="XYZ tile and ground resolution at a point")
    tile.add_argument("--lat", type=mercator_latitude, required=True, help="degrees, |lat| <= 85.0511")
    tile.add_argument("--lon", type=longitude, required=True)
    tile.add_argument("--zoom", type=zoom, default=19, help="0..24")
    tile.set_defaults(func=_tile)
