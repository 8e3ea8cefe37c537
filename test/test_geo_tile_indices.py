"""The tile maths of cvgl_ros.geo agree with mercantile (which has no rosdep key, so the
vehicle path must not import it), and the vehicle path indeed runs without mercantile."""
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.errors import InputError
from cvgl_ros.geo import Tile, tile_at, tile_ul, tiles_covering

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

try:  # the reference; no rosdep key, so `colcon test` on a ROS install may lack it
    import mercantile
except ImportError:
    mercantile = None
needs_mercantile = pytest.mark.skipif(mercantile is None, reason="mercantile not installed (test-only reference)")

lats = st.floats(min_value=-85.05, max_value=85.05, allow_nan=False)
lons = st.floats(min_value=-180.0, max_value=180.0, allow_nan=False)
zooms = st.integers(min_value=0, max_value=24)


@needs_mercantile
@settings(max_examples=400, deadline=None)
@given(lat=lats, lon=lons, zoom=zooms)
def test_tile_at_is_mercantiles_tile(lat, lon, zoom):
    assert tile_at(lon, lat, zoom) == tuple(mercantile.tile(lon, lat, zoom))


@needs_mercantile
@settings(max_examples=300, deadline=None)
@given(x=st.integers(0, 2**19 - 1), y=st.integers(0, 2**19 - 1), zoom=st.integers(19, 24))
def test_tile_ul_is_mercantiles_ul_and_its_corner_is_in_the_tile(x, y, zoom):
    assert tile_ul(x, y, zoom) == tuple(mercantile.ul(x, y, zoom))
    lon, lat = tile_ul(x, y, zoom)
    assert tile_at(lon, lat, zoom) == (x, y, zoom)  # the corner belongs to the tile it starts


@needs_mercantile
def test_tile_corners_round_trip_exactly_on_both_sides_of_an_edge():
    # a point at a tile's upper-left corner is in that tile, not the one to its left/top
    for x, y, z in [(0, 0, 1), (1, 1, 1), (274_578, 180_017, 19), (12, 7, 5)]:
        lon, lat = tile_ul(x, y, z)
        assert tile_at(lon, lat, z) == (x, y, z) == tuple(mercantile.tile(lon, lat, z))


@needs_mercantile
@settings(max_examples=200, deadline=None)
@given(w=lons, s=lats, dw=st.floats(0.0, 0.02), dn=st.floats(0.0, 0.02), zoom=st.integers(10, 17))
def test_tiles_covering_is_mercantiles_tiles(w, s, dw, dn, zoom):
    e, n = min(180.0, w + dw), min(85.05, s + dn)
    ours = tiles_covering(w, s, e, n, zoom)
    assert ours == [tuple(t) for t in mercantile.tiles(w, s, e, n, zooms=[zoom])]
    assert all(isinstance(t, Tile) for t in ours)


@needs_mercantile
@pytest.mark.parametrize("box", [(-180.0, 0.0, -180.0, 0.01), (179.99, 85.0, 180.0, 85.05),
                                 (-180.0, -85.05, -179.99, -85.0), (10.0, 10.0, 10.0, 10.0), (-180.0, -90.0, 180.0, 90.0)])
def test_boxes_at_the_antimeridian_and_the_mercator_limits(box):
    zoom = 12 if box[2] - box[0] < 1 else 2
    assert tiles_covering(*box, zoom) == [tuple(t) for t in mercantile.tiles(*box, zooms=[zoom])]


def test_a_tiles_own_bounds_cover_exactly_that_tile():
    west, north = tile_ul(274_578, 180_017, 19)
    east, south = tile_ul(274_579, 180_018, 19)
    assert tiles_covering(west, south, east, north, 19) == [(274_578, 180_017, 19)]


def test_poles_give_the_edge_rows_and_bad_boxes_are_refused():
    assert tile_at(0.0, 90.0, 3) == (4, 0, 3)
    assert tile_at(180.0, -90.0, 3) == (7, 7, 3)
    with pytest.raises(InputError, match="empty"):
        tiles_covering(1.0, 0.0, 0.0, 1.0, 10)
    with pytest.raises(InputError, match="zoom"):
        tile_at(0.0, 0.0, 25)


def test_the_vehicle_path_imports_without_mercantile():
    code = """
import sys
sys.modules["mercantile"] = None  # any import of mercantile now fails
import cvgl_ros.geo, cvgl_ros.tiles, cvgl_ros.tiles.patch, cvgl_ros.tiles.raster, cvgl_ros.runtime, cvgl_ros.imaging
import cvgl_ros.filter.particle_filter, cvgl_ros.likelihood, cvgl_ros.share
from cvgl_ros.tiles.raster import write_extent_metadata
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
