"""Property tests of the geodesy core (cvgl_ros.geo)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.errors import InputError
from cvgl_ros.geo import (
    Datum,
    angle_diff,
    ground_resolution_m_per_px,
    global_px_to_lonlat,
    heading_deg_to_yaw_enu,
    lateral_longitudinal,
    lonlat_to_global_px,
    quaternion_to_yaw,
    wrap_angle,
    yaw_enu_to_heading_deg,
    yaw_to_quaternion,
)
from cvgl_ros.geo.grid import en_to_grid, grid_to_en

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

try:  # an independent reference; no rosdep key, so `colcon test` on a ROS install may lack it
    import mercantile
except ImportError:
    mercantile = None
needs_mercantile = pytest.mark.skipif(mercantile is None, reason="mercantile not installed (test-only reference)")

lat_datum = st.floats(-80.0, 80.0)
lon_datum = st.floats(-180.0, 180.0)
alt = st.floats(-100.0, 3000.0)
offset = st.floats(-20_000.0, 20_000.0)


@settings(max_examples=200, deadline=None)
@given(lat_datum, lon_datum, alt, offset, offset, st.floats(-200.0, 200.0))
def test_enu_round_trip_is_sub_millimetre_within_20_km(lat0, lon0, h0, east, north, up):
    datum = Datum(lat0, lon0, h0)
    lat, lon, h = datum.to_wgs84(east, north, up)
    e2, n2, u2 = datum.to_enu(lat, lon, h)
    err = math.sqrt((e2 - east) ** 2 + (n2 - north) ** 2 + (u2 - up) ** 2)
    assert err < 1e-3


@settings(max_examples=50, deadline=None)
@given(lat_datum, st.floats(-179.9, 179.9))
def test_enu_axes_point_east_and_north(lat0, lon0):
    datum = Datum(lat0, lon0, 0.0)
    e, n, _ = datum.to_enu(lat0 + 1e-4, lon0)  # ~11 m north
    assert abs(float(e)) < 1e-3 and 10.0 < float(n) < 12.0
    e, n, _ = datum.to_enu(lat0, lon0 + 1e-4)  # east, shrinking with cos(lat)
    assert float(e) > 0 and abs(float(n)) < 1e-3
    assert abs(float(e) - 11.13 * math.cos(math.radians(lat0))) < 0.05


def test_enu_is_vectorized_and_keeps_shape():
    datum = Datum(49.0, 8.4)
    lat = np.full((3, 4), 49.001)
    lon = np.full((3, 4), 8.401)
    e, n, u = datum.to_enu(lat, lon)
    assert e.shape == n.shape == u.shape == (3, 4)
    assert np.allclose(e, e[0, 0]) and np.allclose(n, n[0, 0])


@pytest.mark.parametrize("lat,lon", [(91.0, 0.0), (-90.5, 0.0), (0.0, 181.0), (float("nan"), 0.0)])
def test_bad_coordinates_raise_input_error(lat, lon):
    with pytest.raises(InputError):
        Datum(lat, lon)
    with pytest.raises(InputError):
        Datum(0.0, 0.0).to_enu(lat, lon)


@given(st.floats(0.0, 360.0, exclude_max=True))
def test_heading_yaw_round_trip(heading):
    back = float(yaw_enu_to_heading_deg(heading_deg_to_yaw_enu(heading)))
    assert abs((back - heading + 180.0) % 360.0 - 180.0) < 1e-9


def test_heading_conventions():
    # North (heading 0) is ENU yaw +90 deg; east (heading 90) is yaw 0; west is -180 (wrapped).
    assert math.isclose(float(heading_deg_to_yaw_enu(0.0)), math.pi / 2)
    assert abs(float(heading_deg_to_yaw_enu(90.0))) < 1e-12
    assert math.isclose(float(heading_deg_to_yaw_enu(270.0)), -math.pi)


@given(st.floats(-10.0, 10.0))
def test_quaternion_yaw_round_trip(yaw):
    back = float(quaternion_to_yaw(*yaw_to_quaternion(yaw)))
    assert abs(float(angle_diff(back, yaw))) < 1e-9
    assert -math.pi <= float(wrap_angle(yaw)) < math.pi


@given(st.floats(-100.0, 100.0), st.floats(-100.0, 100.0), st.floats(-10.0, 10.0))
def test_lateral_longitudinal_preserves_norm(de, dn, yaw):
    lat, lon = lateral_longitudinal(de, dn, yaw)
    assert math.isclose(math.hypot(float(lat), float(lon)), math.hypot(de, dn), rel_tol=1e-9, abs_tol=1e-9)


def test_lateral_longitudinal_axes():
    # Vehicle heading north (yaw 90 deg): an error to the east is to its right (negative lateral).
    lat, lon = lateral_longitudinal(1.0, 0.0, math.pi / 2)
    assert math.isclose(float(lat), -1.0) and abs(float(lon)) < 1e-12
    lat, lon = lateral_longitudinal(0.0, 2.0, math.pi / 2)
    assert abs(float(lat)) < 1e-12 and math.isclose(float(lon), 2.0)


@needs_mercantile
@settings(max_examples=100, deadline=None)
@given(st.floats(-85.0, 85.0), st.integers(0, 22))
def test_ground_resolution_matches_closed_form(lat, zoom):
    # Independent derivation: the Mercator width of one tile (mercantile) over 256 pixels,
    # times the Mercator scale factor cos(lat).
    bounds = mercantile.xy_bounds(mercantile.tile(0.0, 0.0, zoom))
    tile_width_m = bounds.right - bounds.left
    expected = tile_width_m / 256.0 * math.cos(math.radians(lat))
    assert math.isclose(float(ground_resolution_m_per_px(lat, zoom)), expected, rel_tol=1e-9)


@needs_mercantile
@settings(max_examples=100, deadline=None)
@given(st.floats(-85.0, 85.0), st.floats(-180.0, 179.999), st.integers(0, 22))
def test_global_pixels_agree_with_mercantile_tiles(lat, lon, zoom):
    x, y = lonlat_to_global_px(lon, lat, zoom)
    xs, ys = lonlat_to_global_px(np.array([lon]), np.array([lat]), zoom)  # the vectorized path
    assert abs(xs[0] - x) <= 1e-9 * max(1.0, x) and abs(ys[0] - y) <= 1e-9 * max(1.0, y)
    # The pixel is mercantile's Web Mercator metres (an independent formula) scaled to the world.
    xm, ym = mercantile.xy(lon, lat)
    half_m, world_px = math.pi * 6378137.0, 256.0 * 2**zoom
    assert float(x) == pytest.approx((xm + half_m) / (2 * half_m) * world_px, rel=1e-12, abs=1e-5)
    assert float(y) == pytest.approx((half_m - ym) / (2 * half_m) * world_px, rel=1e-12, abs=1e-5)
    # ... and its tile mercantile's own, unless it is within a rounding error of a tile edge.
    tile = mercantile.tile(lon, lat, zoom)
    for px, index in ((float(x) / 256.0, tile.x), (float(y) / 256.0, tile.y)):
        if abs(px - round(px)) > 1e-6:
            assert math.floor(px) == index
    lon2, lat2 = global_px_to_lonlat(x, y, zoom)
    assert abs(float(lon2) - lon) < 1e-9 and abs(float(lat2) - lat) < 1e-9


@given(st.integers(1, 64), st.integers(1, 64), st.floats(0.05, 5.0))
def test_grid_convention_round_trip(width, height, mpp):
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    e, n = grid_to_en(cols, rows, 100.0, -50.0, width, height, mpp)
    c2, r2 = en_to_grid(e, n, 100.0, -50.0, width, height, mpp)
    assert np.allclose(c2, cols) and np.allclose(r2, rows)
    # north-up: row 0 is the northernmost, column 0 the westernmost
    assert n[0, 0] >= n[-1, 0] and e[0, 0] <= e[0, -1]


@settings(max_examples=50, deadline=None)
@given(st.floats(-80.0, 80.0), st.integers(10, 22))
def test_ellipsoidal_pixel_scale_agrees_with_proj(lat, zoom):
    # Move 10 m north and east on the ellipsoid with PROJ, measure the Web Mercator pixels.
    from cvgl_ros.geo import mercator_px_per_m

    datum = Datum(lat, 10.0)
    px_per_m_east, px_per_m_north = mercator_px_per_m(lat, zoom)
    lat_n, lon_n, _ = datum.to_wgs84(0.0, 10.0)
    lat_e, lon_e, _ = datum.to_wgs84(10.0, 0.0)
    x0, y0 = lonlat_to_global_px(10.0, lat, zoom)
    x_e, _ = lonlat_to_global_px(lon_e, lat_e, zoom)
    _, y_n = lonlat_to_global_px(lon_n, lat_n, zoom)
    assert float(x_e - x0) / 10.0 == pytest.approx(px_per_m_east, rel=1e-4)
    assert float(y0 - y_n) / 10.0 == pytest.approx(px_per_m_north, rel=1e-4)
