"""PatchSampler against a synthetic reference orthophoto tiled at z19 (acceptance), masks,
corrupt tiles, the LRU cap, determinism and overviews."""
import math
import threading

import cv2
import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.geo import Datum
from cvgl_ros.geo.grid import en_to_grid, grid_to_en
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.geo.mercator import lonlat_to_global_px, mercator_px_per_m
from cvgl_ros.tiles.patch import PatchSampler
from cvgl_ros.tiles.raster import EnuRaster, add_enu_raster, build_overviews

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

REF_MPP = 0.1
REF_PX = 2400  # 240 m square
PATCH_PX = 512
PATCH_MPP = 0.2


def reference_orthophoto(seed: int) -> np.ndarray:
    """A textured north-up image with sharp features: smooth 'terrain' colour noise plus
    rectangles ('roofs'), lines ('road markings') and small squares, edges blurred to 0.15 m."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(REF_PX // 8, REF_PX // 8, 3)).astype(np.float32)
    img = cv2.resize(noise, (REF_PX, REF_PX), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (0, 0), 6) * 40 + 110
    for _ in range(120):
        x, y = (int(v) for v in rng.integers(0, REF_PX, 2))
        w, h = (int(v) for v in rng.integers(30, 200, 2))
        cv2.rectangle(img, (x, y), (x + w, y + h), tuple(float(v) for v in rng.uniform(20, 235, 3)), -1)
    for _ in range(40):
        p0 = tuple(int(v) for v in rng.integers(0, REF_PX, 2))
        p1 = tuple(int(v) for v in rng.integers(0, REF_PX, 2))
        cv2.line(img, p0, p1, (245.0, 245.0, 245.0), int(rng.integers(2, 6)))
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    return np.clip(img, 0, 255).astype(np.uint8)


def reference_patch(ref: np.ndarray, center_e: float, center_n: float) -> np.ndarray:
    """The reference resampled directly onto the patch grid (area-averaged to 0.2 m/px first)."""
    half = cv2.resize(ref, (REF_PX // 2, REF_PX // 2), interpolation=cv2.INTER_AREA)
    cc, rr = np.meshgrid(np.arange(PATCH_PX), np.arange(PATCH_PX))
    e, n = grid_to_en(cc, rr, center_e, center_n, PATCH_PX, PATCH_PX, PATCH_MPP)
    col, row = en_to_grid(e, n, 0.0, 0.0, REF_PX // 2, REF_PX // 2, 2 * REF_MPP)
    return cv2.remap(half, col.astype(np.float32), row.astype(np.float32), cv2.INTER_LINEAR)


def _grey(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)


def shift_px(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sub-pixel translation of b relative to a by phase correlation, (dx, dy) px."""
    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(_grey(a), _grey(b), win)
    return np.array([dx, dy])


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """z19 MBTiles of the reference orthophoto at latitudes 0, 49 and 65 (datum at the centre)."""
    root = tmp_path_factory.mktemp("worlds")
    ref = reference_orthophoto(5)
    out = {}
    for lat in (0.0, 49.0, 65.0):
        datum = Datum(lat, 8.4, 100.0)
        path = root / f"lat{int(lat)}.mbtiles"
        with MBTilesStore.create(path, name=f"lat{lat}", image_format="png") as store:
            add_enu_raster(store, EnuRaster(ref, datum, 0.0, 0.0, REF_MPP), zoom=19)
        out[lat] = (path, datum)
    return ref, out


@pytest.mark.parametrize("lat", [0.0, 49.0, 65.0])
def test_patch_matches_reference(worlds, lat):
    ref, stores = worlds
    path, datum = stores[lat]
    sampler = PatchSampler(path, cache_mb=64)
    assert sampler.zoom == 19
    for center_e, center_n in [(13.3, -7.7), (-41.05, 38.6)]:
        expected = reference_patch(ref, center_e, center_n)
        lat_c, lon_c, _ = datum.to_wgs84(center_e, center_n)
        for patch in (sampler.patch_wgs84(float(lat_c), float(lon_c), PATCH_PX, PATCH_MPP),
                      sampler.patch_enu(datum, center_e, center_n, PATCH_PX, PATCH_MPP)):
            assert patch.rgb.shape == (PATCH_PX, PATCH_PX, 3) and patch.rgb.dtype == np.uint8
            assert patch.valid.all() and patch.missing_tiles == 0 and patch.corrupt_tiles == 0
            mae = np.abs(patch.rgb.astype(float) - expected).mean()
            assert mae <= 3.0, f"lat {lat}: mean absolute error {mae:.2f} grey levels"
            assert np.hypot(*shift_px(expected, patch.rgb)) <= 0.5
            # Scale and anisotropy: each quadrant must line up too (a 0.67 % scale error of the
            # spherical formula would shift the quadrant centres by ~0.9 px).
            q = PATCH_PX // 2
            for r0 in (0, q):
                for c0 in (0, q):
                    d = shift_px(expected[r0:r0 + q, c0:c0 + q], patch.rgb[r0:r0 + q, c0:c0 + q])
                    assert np.hypot(*d) <= 0.3, f"lat {lat} quadrant ({r0},{c0}) offset {d}"
    sampler.close()


@pytest.mark.parametrize("lat", [0.0, 30.0, 49.0, 60.0, 80.0])
def test_pixels_per_metre_are_measured_on_the_wgs84_ellipsoid(lat):
    """mercator_px_per_m against a measurement: walk 10 m east and north on the WGS84 ellipsoid
    (pyproj's geodesics) and count the Web Mercator pixels crossed. Web Mercator is not
    conformal on the ellipsoid, so the two scales differ (0.67 % at the equator)."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    zoom, step_m = 19, 10.0
    measured = []
    for azimuth in (90.0, 0.0):    # east, north: centred differences over +-5 m
        lon0, lat0, _ = geod.fwd(8.4, lat, azimuth + 180.0, step_m / 2)
        lon1, lat1, _ = geod.fwd(8.4, lat, azimuth, step_m / 2)
        (x0, y0), (x1, y1) = lonlat_to_global_px(lon0, lat0, zoom), lonlat_to_global_px(lon1, lat1, zoom)
        measured.append(math.hypot(x1 - x0, y1 - y0) / step_m)
    east, north = mercator_px_per_m(lat, zoom)
    assert east == pytest.approx(measured[0], rel=1e-7) and north == pytest.approx(measured[1], rel=1e-7)
    assert north / east - 1 == pytest.approx(measured[1] / measured[0] - 1, rel=1e-4)
    assert north / east > 1.0 + 0.0067 * math.cos(math.radians(lat)) ** 2 - 1e-4  # the ellipsoid shows


def test_missing_and_corrupt_tiles_give_mask_and_counts(worlds, tmp_path):
    _, stores = worlds
    src, datum = stores[49.0]
    path = tmp_path / "holes.mbtiles"
    path.write_bytes(src.read_bytes())
    lat_c, lon_c, _ = datum.to_wgs84(0.0, 0.0)
    with PatchSampler(path) as sampler:
        full = sampler.patch_wgs84(float(lat_c), float(lon_c), PATCH_PX, PATCH_MPP)
        keys = sorted(sampler.store.tile_keys(19))
    centre_tile = min(keys, key=lambda k: (k[1] - np.mean([k[1] for k in keys])) ** 2 +
                      (k[2] - np.mean([k[2] for k in keys])) ** 2)
    other = next(k for k in keys if k[1] == centre_tile[1] + 1 and k[2] == centre_tile[2])
    with MBTilesStore.open(path, writable=True) as store:
        store.delete_tile(*centre_tile)
        store.put_tile(*other, b"\x89PNG\r\n\x1a\n garbage that is no image")
    with PatchSampler(path) as sampler:
        patch = sampler.patch_wgs84(float(lat_c), float(lon_c), PATCH_PX, PATCH_MPP)
        again = sampler.patch_wgs84(float(lat_c), float(lon_c), PATCH_PX, PATCH_MPP)
    assert patch.missing_tiles == 1 and patch.corrupt_tiles == 1
    assert again.missing_tiles == 1 and again.corrupt_tiles == 1  # counted on every patch
    assert 0.2 < patch.valid.mean() < 0.99
    assert (patch.rgb[~patch.valid] == 0).all()
    np.testing.assert_array_equal(patch.rgb[patch.valid], full.rgb[patch.valid])
    # Far away from the cache: everything invalid, no exception.
    lat_f, lon_f, _ = datum.to_wgs84(5000.0, 0.0)
    with PatchSampler(path) as sampler:
        empty = sampler.patch_wgs84(float(lat_f), float(lon_f), 64, PATCH_MPP)
    assert not empty.valid.any() and empty.missing_tiles >= 1


def test_partial_raster_leaves_pixels_invalid_and_merges(tmp_path):
    """Two halves painted one after the other (valid masks) give the same tiles as the whole."""
    ref = reference_orthophoto(7)[:600, :600]
    datum = Datum(49.0, 8.4)
    left = np.zeros(ref.shape[:2], bool)
    left[:, :300] = True
    with MBTilesStore.create(tmp_path / "half.mbtiles", name="h") as store:
        add_enu_raster(store, EnuRaster(ref, datum, 0.0, 0.0, REF_MPP, valid=left))
    with PatchSampler(tmp_path / "half.mbtiles") as sampler:
        p = sampler.patch_enu(datum, 0.0, 0.0, 256, 0.2)
    assert 0.3 < p.valid.mean() < 0.7
    assert p.valid[:, :100].all() and not p.valid[:, 160:].any()
    with MBTilesStore.create(tmp_path / "both.mbtiles", name="b") as store:
        add_enu_raster(store, EnuRaster(ref, datum, 0.0, 0.0, REF_MPP, valid=left))
        add_enu_raster(store, EnuRaster(ref, datum, 0.0, 0.0, REF_MPP, valid=~left))
    with MBTilesStore.create(tmp_path / "whole.mbtiles", name="w") as store:
        add_enu_raster(store, EnuRaster(ref, datum, 0.0, 0.0, REF_MPP))
    with PatchSampler(tmp_path / "both.mbtiles") as a, PatchSampler(tmp_path / "whole.mbtiles") as b:
        pa = a.patch_enu(datum, 0.0, 0.0, 256, 0.2)
        pb = b.patch_enu(datum, 0.0, 0.0, 256, 0.2)
    # Pixels next to the seam mix both halves' interpolation; everything else is identical.
    seam = np.zeros_like(pa.valid)
    seam[:, 120:136] = True
    assert pa.valid.all()
    assert np.abs(pa.rgb.astype(int) - pb.rgb.astype(int))[~seam].max() <= 1


def test_same_input_gives_byte_identical_tiles(tmp_path):
    ref = reference_orthophoto(3)[:500, :700]
    datum = Datum(12.0, -70.0)
    blobs = []
    for name in ("a", "b"):
        with MBTilesStore.create(tmp_path / f"{name}.mbtiles", name="same") as store:
            add_enu_raster(store, EnuRaster(ref, datum, 20.0, -5.0, 0.12))
            build_overviews(store, 16)
        with MBTilesStore.open(tmp_path / f"{name}.mbtiles") as store:
            blobs.append({k: store.get_tile(*k) for k in store.tile_keys()})
            meta = store.metadata
    assert blobs[0] == blobs[1] and len(blobs[0]) > 4
    assert meta["minzoom"] == "16" and meta["maxzoom"] == "19"
    west, south, east, north = (float(v) for v in meta["bounds"].split(","))
    lat, lon, _ = datum.to_wgs84(20.0, -5.0)
    assert west < lon < east and south < lat < north


def test_overviews_match_the_full_resolution(worlds):
    ref, stores = worlds
    path, datum = stores[49.0]
    tmp = path.with_name("ov.mbtiles")
    tmp.write_bytes(path.read_bytes())
    with MBTilesStore.open(tmp, writable=True) as store:
        written = build_overviews(store, 17)
        assert written > 0 and store.zoom_levels() == [17, 18, 19]
    with PatchSampler(tmp, zoom=18) as s18, PatchSampler(tmp, zoom=19) as s19:
        p18 = s18.patch_enu(datum, 0.0, 0.0, 128, 0.8)
        p19 = s19.patch_enu(datum, 0.0, 0.0, 128, 0.8)
    assert p18.valid.all()
    assert np.abs(p18.rgb.astype(float) - p19.rgb).mean() < 6.0
    with pytest.raises(InputError):
        PatchSampler(tmp, zoom=12)


def test_lru_stays_under_cap(worlds):
    _, stores = worlds
    path, datum = stores[65.0]
    rng = np.random.default_rng(1)
    with PatchSampler(path, cache_mb=2) as sampler:
        for _ in range(40):
            e, n = rng.uniform(-80, 80, 2)
            sampler.patch_enu(datum, float(e), float(n), 256, 0.2)
            assert sampler.lru.bytes_used <= sampler.lru.cap_bytes
        assert 0 < sampler.lru.peak_bytes <= 2 * 1024 * 1024
        assert len(sampler.lru) >= 2


def test_threads_share_a_sampler(worlds):
    _, stores = worlds
    path, datum = stores[0.0]
    centres = [(float(e), float(n)) for e, n in np.random.default_rng(2).uniform(-60, 60, (12, 2))]
    with PatchSampler(path, cache_mb=1) as sampler:
        expected = [sampler.patch_enu(datum, e, n, 200, 0.2).rgb for e, n in centres]
        results, errors = {}, []

        def work(i):
            try:
                for j, (e, n) in enumerate(centres):
                    results[(i, j)] = sampler.patch_enu(datum, e, n, 200, 0.2).rgb
            except Exception as exc:  # pragma: no cover
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    for (i, j), rgb in results.items():
        np.testing.assert_array_equal(rgb, expected[j])


def test_patches_along_a_drive_equal_fresh_cuts(worlds):
    """Consecutive patches 0.5 m apart come from the thread's stitched block after the second
    one; each must equal the same patch cut by a sampler that has never seen another."""
    _, stores = worlds
    path, datum = stores[49.0]
    track = [(-30.0 + 0.5 * i, 10.0 - 0.2 * i) for i in range(40)]
    with PatchSampler(path, cache_mb=64) as along:
        got = [along.patch_enu(datum, e, n, 256, 0.2) for e, n in track]
        assert along._scratch.block is not None               # the drive is served from a block
    for (e, n), patch in zip(track[::7], got[::7]):
        with PatchSampler(path, cache_mb=64) as fresh:
            want = fresh.patch_enu(datum, e, n, 256, 0.2)
        np.testing.assert_array_equal(patch.rgb, want.rgb)
        assert patch.valid.all() and patch.missing_tiles == 0


def test_clear_cache_drops_the_block(tmp_path):
    """After clear_cache, a tile rewritten in the store is what the next patch shows."""
    datum = Datum(49.0, 8.4, 100.0)
    path = tmp_path / "w.mbtiles"
    grey = np.full((800, 800, 3), 100, np.uint8)
    with MBTilesStore.create(path, name="w", image_format="png") as store:
        add_enu_raster(store, EnuRaster(grey, datum, 0.0, 0.0, 0.2), zoom=19)
    with PatchSampler(path, cache_mb=64) as sampler:
        for _ in range(3):
            assert sampler.patch_enu(datum, 0.0, 0.0, 64, 0.2).rgb.mean() == pytest.approx(100, abs=0.5)
        with MBTilesStore.open(path, writable=True) as store:
            add_enu_raster(store, EnuRaster(np.full_like(grey, 200), datum, 0.0, 0.0, 0.2), zoom=19)
        sampler.clear_cache()
        assert sampler.patch_enu(datum, 0.0, 0.0, 64, 0.2).rgb.mean() == pytest.approx(200, abs=0.5)


def test_bad_patch_arguments(worlds):
    _, stores = worlds
    path, datum = stores[0.0]
    with PatchSampler(path) as sampler:
        for args in [(0, 0.2), (512, 0.0), (512, float("nan")), (10**6, 0.2)]:
            with pytest.raises(InputError):
                sampler.patch_enu(datum, 0.0, 0.0, *args)
        with pytest.raises(InputError):
            sampler.patch_wgs84(91.0, 0.0, 64, 0.2)
        with pytest.raises(InputError):
            sampler.patch_wgs84(0.0, 0.0, 512, 50.0)  # footprint far too large for z19


def test_xyz_directory_gives_the_same_patches(worlds, tmp_path):
    from cvgl_ros.tiles.store import open_store
    from cvgl_ros.tiles.xyz import XYZStore

    _, stores = worlds
    path, datum = stores[49.0]
    root = tmp_path / "xyz"
    with MBTilesStore.open(path) as src, XYZStore.create(root, name="copy", image_format="png") as dst:
        for key in src.tile_keys():
            dst.put_tile(*key, src.get_tile(*key))
    assert isinstance(open_store(root), XYZStore)
    with PatchSampler(path) as a, PatchSampler(root) as b:
        pa = a.patch_enu(datum, 5.0, 9.0, 300, 0.25)
        pb = b.patch_enu(datum, 5.0, 9.0, 300, 0.25)
    np.testing.assert_array_equal(pa.rgb, pb.rgb)
    assert pb.valid.all()


def test_extent_metadata_grows_with_each_raster(tmp_path):
    from cvgl_ros.tiles.raster import write_extent_metadata

    ref = reference_orthophoto(9)[:200, :200]
    datum = Datum(-33.9, 151.2)
    with MBTilesStore.create(tmp_path / "two.mbtiles", name="two") as store:
        add_enu_raster(store, EnuRaster(ref, datum, -300.0, 0.0, 0.2))
        add_enu_raster(store, EnuRaster(ref, datum, 300.0, 150.0, 0.2))
        merged = store.metadata
        write_extent_metadata(store)  # the full recomputation agrees with the incremental one
        assert store.metadata["bounds"] == merged["bounds"]
    west, south, east, north = (float(v) for v in merged["bounds"].split(","))
    for e, n in [(-300.0, 0.0), (300.0, 150.0)]:
        lat, lon, _ = datum.to_wgs84(e, n)
        assert west < lon < east and south < lat < north
