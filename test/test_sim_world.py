"""The procedural world: determinism, layout sanity, routes, sky openness, saving as MBTiles."""
import hashlib
import json
import math
import sqlite3
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.errors import InputError
from cvgl_ros.geo.mercator import ground_resolution_m_per_px
from cvgl_ros.sim.roads import arc_lengths
from cvgl_ros.sim.world import ROAD_MARGIN_M, World
from cvgl_ros.sim.world_layout import rect_corners

SIZE_M = 250.0


@pytest.fixture(scope="module")
def urban():
    return World.generate(5, "urban", 300.0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("worlds") / "w"
    World.generate(11, "suburban", SIZE_M).save(out)
    return out


def _tile_hashes(path):
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles "
                            "ORDER BY zoom_level, tile_column, tile_row").fetchall()
    finally:
        conn.close()
    return {(z, x, y): hashlib.sha256(d).hexdigest() for z, x, y, d in rows}


def test_same_seed_same_world_other_seed_other_world():
    a = World.generate(3, "urban", SIZE_M).to_dict()
    b = World.generate(3, "urban", SIZE_M).to_dict()
    c = World.generate(4, "urban", SIZE_M).to_dict()
    assert json.dumps(a) == json.dumps(b)
    assert a["road_graph"] != c["road_graph"]


@pytest.mark.parametrize("style", ["urban", "suburban", "rural"])
def test_styles_have_roads_buildings_trees_within_height_range(style):
    world = World.generate(2, style, 400.0)
    assert world.roads.total_length_m() > 300.0
    assert len(world.route_graph.edges) >= 1
    assert len(world.layout.buildings) > 3
    assert len(world.layout.trees) > 10
    heights = np.array([b.height_m for b in world.layout.buildings])
    assert heights.min() >= 4.0 and heights.max() <= 60.0
    if style == "urban":
        assert np.median(heights) > 12.0          # blocks of flats
        assert any(b.kind == "tower" for b in world.layout.buildings) or heights.max() > 25
    if style == "suburban":
        assert np.mean([b.roof == "gable" for b in world.layout.buildings]) > 0.5
    if style == "rural":
        assert any(a.kind == "field" for a in world.layout.areas)


def test_buildings_stand_clear_of_carriageways(urban):
    """No building corner or centre lies on a street's carriageway or sidewalk."""
    for e in urban.roads.edges:
        pts = e.points_en
        for b in urban.layout.buildings:
            probe = np.concatenate([b.corners(), np.asarray(b.center_en)[None]])
            d = np.min(np.hypot(probe[:, None, 0] - pts[None, :, 0], probe[:, None, 1] - pts[None, :, 1]), axis=1)
            assert d.min() > e.half_width_m + 0.5 * e.sidewalk_m, (b, e.kind)


def test_buildings_do_not_overlap(urban):
    import cv2

    grid = np.zeros((1000, 1000), np.int32)
    for b in urban.layout.buildings:
        px = (b.corners(grow_m=-0.4) + 250.0) / 0.5
        layer = np.zeros_like(grid)
        cv2.fillPoly(layer, [np.round(px * 16).astype(np.int32)], 1, shift=4)
        grid += layer
    assert grid.max() <= 1


def test_route_keeps_right_lane_and_margin(urban):
    route = urban.route(seed=4, length_m=600.0)
    pts = route.points_en
    steps = np.hypot(*np.diff(pts, axis=0).T)
    assert abs(route.length_m - 600.0) < 1.0
    assert np.all(steps > 0.5) and np.all(steps < 1.5)
    assert np.all(np.abs(pts) <= urban.size_m / 2 - ROAD_MARGIN_M + 1e-6)
    assert np.all((route.stop_s >= 0) & (route.stop_s <= route.length_m))
    # on straight stretches the car is right of the centreline by the lane offset
    yaw = route.yaw_enu_rad()
    right = np.stack([np.sin(yaw), -np.cos(yaw)], axis=1)
    steady = np.convolve(np.abs(route.curvature_per_m()), np.ones(9), mode="same") < 0.02  # not turning
    checked = 0
    for e in urban.roads.edges:
        s = arc_lengths(e.points_en)
        inner = e.points_en[(s > 25) & (s < s[-1] - 25)]
        if not len(inner):
            continue
        d = np.hypot(pts[:, None, 0] - inner[None, :, 0], pts[:, None, 1] - inner[None, :, 1])
        near = (d.min(axis=1) < e.half_width_m) & steady
        for i in np.flatnonzero(near):
            j = np.argmin(d[i])
            side = float(np.dot(pts[i] - inner[j], right[i]))
            assert side == pytest.approx(e.lane_offset_m, abs=0.6)
            checked += 1
    assert checked > 50


@given(seed=st.integers(0, 10_000), length=st.floats(20.0, 900.0))
@settings(max_examples=15, deadline=None)
def test_routes_are_smooth(urban, seed, length):
    route = urban.route(seed, length)
    assert route.length_m == pytest.approx(length, abs=1.0)
    turn = np.abs(np.diff(np.unwrap(route.yaw_enu_rad())))
    assert turn.max() < math.radians(40)  # per metre: no kinks, even in U-turns


def test_sky_openness_open_field_vs_street_canyon():
    world = World.generate(5, "urban", 400.0)
    heights, tf = world.height_raster()
    assert world.sky_openness(0.0, 0.0).shape == ()
    # a point far from everything
    rural = World.generate(1, "rural", 400.0)
    route = rural.route(0, 100.0)
    open_sky = rural.sky_openness(route.points_en[:, 0], route.points_en[:, 1])
    assert open_sky.min() > 0.75
    street = world.route(2, 400.0)
    canyon = world.sky_openness(street.points_en[:, 0], street.points_en[:, 1])
    assert np.all((canyon >= 0) & (canyon <= 1))
    assert np.median(canyon) < 0.7
    assert np.median(canyon) < np.median(open_sky) - 0.2
    with pytest.raises(InputError):
        world.sky_openness(np.nan, 0.0)


def test_bad_generation_input():
    with pytest.raises(InputError, match="style"):
        World.generate(1, "martian", 300.0)
    with pytest.raises(InputError, match="size"):
        World.generate(1, "urban", 50.0)
    with pytest.raises(InputError, match="seed"):
        World.generate(-1, "urban", 300.0)


def test_saved_world_is_valid_mbtiles_and_loads(saved):
    conn = sqlite3.connect(saved / "tiles.mbtiles")
    meta = dict(conn.execute("SELECT name, value FROM metadata").fetchall())
    zooms = [z for (z,) in conn.execute("SELECT DISTINCT zoom_level FROM tiles ORDER BY zoom_level")]
    conn.close()
    for key in ("name", "format", "bounds", "minzoom", "maxzoom"):
        assert key in meta
    assert meta["format"] == "png" and meta["version"] == "1.3"
    assert int(meta["maxzoom"]) == 19 and int(meta["minzoom"]) == 14 and zooms == list(range(14, 20))
    world = World.load(saved)
    assert world.tile_mpp == pytest.approx(float(ground_resolution_m_per_px(world.datum.lat_deg, 19)))
    assert world.tile_mpp <= 0.2 and world.ortho_mpp < world.tile_mpp
    west, south, east, north = (float(v) for v in meta["bounds"].split(","))
    lat0, lon0, _ = world.datum.to_wgs84(-SIZE_M / 2, -SIZE_M / 2)
    lat1, lon1, _ = world.datum.to_wgs84(SIZE_M / 2, SIZE_M / 2)
    assert west <= lon0 and east >= lon1 and south <= lat0 and north >= lat1
    description = json.loads((saved / "world.json").read_text())
    for key in ("datum", "bounds_en_m", "seed", "style", "road_graph", "sun", "generator_version"):
        assert key in description
    assert world.to_dict() == World.generate(11, "suburban", SIZE_M).to_dict()


def test_same_seed_gives_identical_tile_bytes(saved, tmp_path):
    again = tmp_path / "again"
    World.generate(11, "suburban", SIZE_M).save(again)
    assert (again / "world.json").read_bytes() == (saved / "world.json").read_bytes()
    first, second = _tile_hashes(saved / "tiles.mbtiles"), _tile_hashes(again / "tiles.mbtiles")
    assert len(first) > 4 and first == second


def test_orthophoto_shows_roads_where_the_road_graph_is(saved):
    """Tiles are dark asphalt on carriageways and not on open lawns (georeferencing is right)."""
    from cvgl_ros.tiles import PatchSampler

    world = World.load(saved)
    route = world.route(0, 80.0)
    e, n, yaw = (float(v) for v in route.pose_at(40.0))
    with PatchSampler(world.tiles_path) as sampler:
        on_road = sampler.patch_enu(world.datum, e, n, 9, 0.2)
        # 25 m to the side, beyond sidewalks, usually gardens or buildings: brighter or greener
        side = sampler.patch_enu(world.datum, e + 25 * math.sin(yaw), n - 25 * math.cos(yaw), 9, 0.2)
    road = on_road.rgb.reshape(-1, 3).astype(float).mean(axis=0)
    assert on_road.valid.all()
    assert abs(road[0] - road[2]) < 20 and road.mean() < 120   # grey asphalt
    assert np.abs(side.rgb.reshape(-1, 3).astype(float).mean(axis=0) - road).max() > 10


def test_load_rejects_incomplete_world_dirs(saved, tmp_path):
    with pytest.raises(InputError, match="no such world"):
        World.load(tmp_path / "missing")
    only_json = tmp_path / "only_json"
    only_json.mkdir()
    (only_json / "world.json").write_text((saved / "world.json").read_text())
    with pytest.raises(InputError, match="tiles.mbtiles"):
        World.load(only_json)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "world.json").write_text("{not json")
    (broken / "tiles.mbtiles").write_bytes((saved / "tiles.mbtiles").read_bytes())
    with pytest.raises(InputError, match="not valid JSON"):
        World.load(broken)
    not_tiles = tmp_path / "not_tiles"
    not_tiles.mkdir()
    (not_tiles / "world.json").write_text((saved / "world.json").read_text())
    (not_tiles / "tiles.mbtiles").write_bytes(b"hello")
    with pytest.raises(InputError, match="not an SQLite"):
        World.load(not_tiles)


def _cli(cvgl_bin, *args):
    return subprocess.run([cvgl_bin, "sim", *args], capture_output=True, text=True, timeout=300)


def test_cli_bad_input_one_line_exit_2_nothing_left(cvgl_bin, tmp_path, saved):
    r = _cli(cvgl_bin, "world", "--seed", "1", "--style", "lunar", "--out", str(tmp_path / "w"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "lunar" in r.stderr
    r = _cli(cvgl_bin, "world", "--seed", "1", "--size-m", "-5", "--out", str(tmp_path / "w"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    r = _cli(cvgl_bin, "world", "--seed", "1", "--size-m", "200", "--quiet", "--out", str(blocker / "w"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "a_file" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    no_tiles = tmp_path / "no_tiles"
    no_tiles.mkdir()
    (no_tiles / "world.json").write_text((saved / "world.json").read_text())
    out = tmp_path / "p.png"
    r = _cli(cvgl_bin, "preview", "--world", str(no_tiles), "--at", "0,0,0", "--out", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "tiles.mbtiles" in r.stderr
    assert not out.exists()
    r = _cli(cvgl_bin, "preview", "--world", str(saved), "--at", "5000,0,0", "--out", str(out))
    assert r.returncode == 2 and "outside the world" in r.stderr and not out.exists()


def test_rect_corners_are_counter_clockwise():
    c = rect_corners((0.0, 0.0), 4.0, 2.0, 0.3)
    area = 0.5 * np.sum(c[:, 0] * np.roll(c[:, 1], -1) - np.roll(c[:, 0], -1) * c[:, 1])
    assert area == pytest.approx(8.0)
