"""The ground camera: KITTI intrinsics, exact ray-cast geometry, determinism, and a real cross-view gap."""
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.sim.ground_camera import (
    KITTI_K, Appearance, CameraModel, GroundRenderer, default_camera,
)
from cvgl_ros.sim.world import World
from cvgl_ros.sim.world_mesh import MAT_CAR, MAT_CROWN, MAT_GROUND, MAT_WALL
from cvgl_ros.sim.world_raster import ROAD


@pytest.fixture(scope="module")
def world():
    return World.generate(8, "urban", 300.0)


@pytest.fixture(scope="module")
def renderer(world):
    return GroundRenderer(world, default_camera(256, 64), appearance_seed=1)


@pytest.fixture(scope="module")
def pose(world):
    route = world.route(3, 200.0)
    e, n, yaw = route.pose_at(100.0)
    return float(e), float(n), float(yaw)


def test_default_camera_scales_kitti_intrinsics():
    cam = default_camera(512, 128)
    assert cam.k[0, 0] == pytest.approx(KITTI_K[0, 0] * 512 / 1242)
    assert cam.k[1, 1] == pytest.approx(KITTI_K[1, 1] * 128 / 375)
    assert cam.k[0, 2] == pytest.approx((KITTI_K[0, 2] + 0.5) * 512 / 1242 - 0.5)  # pixel centres (geo.pinhole)
    assert cam.k[1, 2] == pytest.approx((KITTI_K[1, 2] + 0.5) * 128 / 375 - 0.5)
    assert cam.height_m == 1.65
    info = cam.camera_info_fields()
    assert info["width"] == 512 and info["height"] == 128 and len(info["k"]) == 9
    msg = cam.to_camera_info(123)
    assert msg.width == 512 and msg.k[0] == pytest.approx(cam.k[0, 0])
    with pytest.raises(InputError):
        CameraModel(np.eye(3), 4, 4)
    with pytest.raises(InputError):
        default_camera(0, 10)


def test_ground_rays_hit_the_plane_where_pinhole_geometry_says(renderer, pose):
    depth, material, points = renderer.cast(*pose)
    cam = renderer.camera
    h, w = depth.shape
    assert (h, w) == (64, 256)
    rows, cols = np.nonzero(material == MAT_GROUND)
    assert len(rows) > 500
    # for a level camera at height h0, a ground pixel at row v is at forward distance h0 * fy / (v - cy)
    forward = cam.height_m * cam.k[1, 1] / (rows - cam.k[1, 2])
    e, n, yaw = pose
    rel = points[rows, cols, :2] - np.array([e, n])
    along = rel[:, 0] * math.cos(yaw) + rel[:, 1] * math.sin(yaw)
    right = rel[:, 0] * math.sin(yaw) - rel[:, 1] * math.cos(yaw)
    np.testing.assert_allclose(along, forward, rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(right, forward * (cols - cam.k[0, 2]) / cam.k[0, 0], rtol=1e-3, atol=2e-3)
    assert np.allclose(points[rows, cols, 2], 0.0, atol=1e-3)
    # above the horizon nothing is ground
    assert not np.any(material[: int(cam.k[1, 2]) - 1] == MAT_GROUND)
    # right in front of the car is the road it drives on
    assert renderer.classes is not None
    tf = renderer.ground_tf
    ahead = points[h - 1, w // 2, :2]
    col = int(round((ahead[0] - tf.center_e) / tf.mpp + (tf.width - 1) / 2))
    row = int(round((tf.center_n - ahead[1]) / tf.mpp + (tf.height - 1) / 2))
    assert renderer.classes[row, col] == ROAD


def test_walls_are_where_the_buildings_are(renderer, world):
    """Every wall hit lies on the outline of a building footprint, below its eaves."""
    starts, ends, tops = [], [], []
    for b in world.layout.buildings:
        c = b.corners()
        starts.append(c)
        ends.append(np.roll(c, -1, axis=0))
        tops.append(np.full(4, b.height_m))
    p, q, top = np.concatenate(starts), np.concatenate(ends), np.concatenate(tops)
    d = q - p
    found = 0
    for seed in range(3):
        route = world.route(seed, 120.0)
        for s in (20.0, 60.0, 100.0):
            e, n, yaw = (float(v) for v in route.pose_at(s))
            for turn in (0.0, math.pi / 2, -math.pi / 2):
                _, material, points = renderer.cast(e, n, yaw + turn)
                hits = points[material == MAT_WALL][::11]  # a sample of them is enough
                found += len(hits)
                rel = hits[:, None, :2] - p[None]
                t = np.clip(np.sum(rel * d[None], axis=2) / np.sum(d * d, axis=1)[None], 0, 1)
                dist = np.hypot(*np.moveaxis(rel - t[..., None] * d[None], 2, 0))
                dist = np.where(hits[:, None, 2] <= top[None] + 1e-3, dist, np.inf)
                assert len(hits) == 0 or dist.min(axis=1).max() < 0.02
    assert found > 300


def test_rendering_is_deterministic_and_traffic_moves(renderer, pose):
    a = renderer.render(*pose, time_s=2.0)
    b = renderer.render(*pose, time_s=2.0)
    assert a.dtype == np.uint8 and a.shape == (64, 256, 3)
    np.testing.assert_array_equal(a, b)
    frames = [renderer.render(*pose, time_s=t) for t in np.arange(0.0, 30.0, 3.0)]
    changed = [np.any(f != frames[0]) for f in frames[1:]]
    assert any(changed)  # traffic drives by (and the sensor noise is per frame)
    with pytest.raises(InputError):
        renderer.render(np.nan, 0.0, 0.0)


def test_appearance_differs_from_the_satellite_and_between_drives(world, pose):
    sat_az = world.sun.azimuth_deg
    for seed in range(20):
        app = Appearance.draw(world, seed)
        assert abs((app.sun_azimuth_deg - sat_az + 180) % 360 - 180) >= 50
        assert 10 <= app.sun_elevation_deg <= 60
    seasons = {Appearance.draw(world, s).season for s in range(40)}
    assert len(seasons) >= 3
    cam = default_camera(256, 64)
    r1, r2 = GroundRenderer(world, cam, appearance_seed=2), GroundRenderer(world, cam, appearance_seed=5)
    spots_1 = {(round(c.east_m, 2), round(c.north_m, 2)) for c in r1.parked}
    spots_2 = {(round(c.east_m, 2), round(c.north_m, 2)) for c in r2.parked}
    assert spots_1 != spots_2 and spots_1 & spots_2  # other cars parked, some in the same spots
    img1, img2 = r1.render(*pose), r2.render(*pose)
    assert np.abs(img1.astype(float) - img2).mean() > 5.0


def test_ground_only_sees_facades_trees_and_cars(world):
    """Across a few views the camera sees walls, crowns and cars, which the orthophoto never shows."""
    renderer = GroundRenderer(world, default_camera(256, 64), appearance_seed=4)
    seen = set()
    route = world.route(7, 300.0)
    for s in np.arange(10.0, 290.0, 40.0):
        e, n, yaw = (float(v) for v in route.pose_at(s))
        seen |= set(np.unique(renderer.cast(e, n, yaw)[1]).tolist())
    assert {MAT_GROUND, MAT_WALL, MAT_CROWN, MAT_CAR} <= seen
    assert 255 in seen  # sky


def test_facade_has_windows(renderer, world):
    """Wall pixels are not one flat colour: glass panes and frames break them up."""
    route = world.route(1, 200.0)
    values = []
    for s in np.arange(10.0, 190.0, 30.0):
        e, n, yaw = (float(v) for v in route.pose_at(s))
        _, material, _ = renderer.cast(e, n, yaw - math.pi / 2)
        img = renderer.render(e, n, yaw - math.pi / 2)
        values.append(img[material == MAT_WALL].astype(float))
    walls = np.concatenate(values)
    assert len(walls) > 200
    brightness = walls.mean(axis=1)
    dark = brightness < np.percentile(brightness, 20) + 5
    assert 0.05 < dark.mean() < 0.6 and brightness.std() > 15
