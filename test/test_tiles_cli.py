"""`cvgl tiles info|patch|import-geotiff` end to end, and bad input -> one line, exit 2."""
import json
import sqlite3
import subprocess
import warnings

import cv2
import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from affine import Affine

from cvgl_ros.geo import Datum
from cvgl_ros.geo.grid import grid_to_en
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.patch import PatchSampler
from cvgl_ros.tiles.raster import EnuRaster, add_enu_raster

LAT, LON = 49.0, 8.4


def texture(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.normal(size=(size // 8, size // 8, 3)).astype(np.float32), (size, size),
                     interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (0, 0), 5) * 45 + 120
    for _ in range(60):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(20, 120, 2))
        cv2.rectangle(img, (x, y), (x + w, y + h), tuple(float(v) for v in rng.uniform(20, 235, 3)), -1)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.5), 0, 255).astype(np.uint8)


def from_origin(west, north, xsize, ysize):
    """North-up geotransform (rasterio's helper warns about affine's deprecated `*`)."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


def run(cvgl_bin, *args, timeout=120):
    return subprocess.run([cvgl_bin, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, needle):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "c.mbtiles"
    with MBTilesStore.create(path, name="cli-test") as store:
        add_enu_raster(store, EnuRaster(texture(800, 1), Datum(LAT, LON), 0.0, 0.0, 0.15))
    return path


def test_info_text_and_json(cvgl_bin, cache):
    proc = run(cvgl_bin, "tiles", "info", cache)
    assert proc.returncode == 0, proc.stderr
    assert "MBTiles" in proc.stdout and "zoom 19" in proc.stdout and "cli-test" in proc.stdout
    info = json.loads(run(cvgl_bin, "tiles", "info", cache, "--json").stdout)
    with MBTilesStore.open(cache) as store:
        assert info["zoom_tiles"] == {"19": store.tile_count(19)}
    assert info["metadata"]["format"] == "png"


def test_patch_writes_the_sampler_patch(cvgl_bin, cache, tmp_path):
    out = tmp_path / "p.png"
    proc = run(cvgl_bin, "tiles", "patch", "--cache", cache, "--lat", LAT, "--lon", LON, "--size-px", 256,
               "--mpp", 0.2, "--out", out)
    assert proc.returncode == 0, proc.stderr
    written = cv2.cvtColor(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    with PatchSampler(cache) as sampler:
        expected = sampler.patch_wgs84(LAT, LON, 256, 0.2)
    np.testing.assert_array_equal(written, expected.rgb)
    # Near the edge of the cache: RGBA, alpha 0 where there is no data.
    lat, lon, _ = Datum(LAT, LON).to_wgs84(60.0, 0.0)
    proc = run(cvgl_bin, "tiles", "patch", "--cache", cache, "--lat", float(lat), "--lon", float(lon),
               "--size-px", 256, "--out", out)
    assert proc.returncode == 0, proc.stderr
    rgba = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (256, 256, 4) and 0 < (rgba[:, :, 3] == 255).mean() < 1


def test_bad_input_is_one_line_exit_2(cvgl_bin, cache, tmp_path):
    out = tmp_path / "p.png"
    assert_one_line_error(run(cvgl_bin, "tiles", "patch", "--cache", cache, "--lat", 10.0, "--lon", 10.0,
                              "--out", out), "outside the cache")
    assert not out.exists()
    assert_one_line_error(run(cvgl_bin, "tiles", "patch", "--cache", cache, "--lat", 95, "--lon", 10.0,
                              "--out", out), "latitude")
    other = tmp_path / "other.mbtiles"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (a)")
    conn.commit()
    conn.close()
    assert_one_line_error(run(cvgl_bin, "tiles", "info", other), "not MBTiles")
    assert_one_line_error(run(cvgl_bin, "tiles", "patch", "--cache", other, "--lat", LAT, "--lon", LON,
                              "--out", out), "not MBTiles")
    assert_one_line_error(run(cvgl_bin, "tiles", "patch", "--cache", cache, "--lat", LAT, "--lon", LON,
                              "--zoom", 25, "--out", out), "zoom 25")
    assert_one_line_error(run(cvgl_bin, "tiles", "patch", "--cache", cache, "--lat", LAT, "--lon", LON,
                              "--zoom", 12, "--out", out), "no zoom 12")


def _write_geotiff(path, rgb, crs, transform):
    with rasterio.open(path, "w", driver="GTiff", width=rgb.shape[1], height=rgb.shape[0], count=3,
                       dtype="uint8", crs=crs, transform=transform) as dst:
        dst.write(np.moveaxis(rgb, -1, 0))


def _expected_patch(rgb, crs, transform, lat, lon, size_px, mpp):
    """Sample the GeoTIFF directly at the exact position of every patch pixel (via PROJ)."""
    cc, rr = np.meshgrid(np.arange(size_px), np.arange(size_px))
    e, n = grid_to_en(cc, rr, 0.0, 0.0, size_px, size_px, mpp)
    plat, plon, _ = Datum(lat, lon).to_wgs84(e, n)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(plon, plat)
    col, row = ~transform @ (x, y)
    # The source (0.1 m) is twice as fine as the patch: average it 2x2 first, as the tiles do.
    half = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.remap(half, (col / 2 - 0.5).astype(np.float32), (row / 2 - 0.5).astype(np.float32), cv2.INTER_LINEAR)


@pytest.mark.parametrize("crs", ["EPSG:32632", "EPSG:4326"])
def test_import_geotiff_any_crs(cvgl_bin, tmp_path, crs):
    rgb = texture(1200, 2)
    if crs == "EPSG:4326":  # ~0.1 m pixels in degrees at 49 N
        transform = from_origin(LON - 600 * 1.37e-6, LAT + 600 * 0.9e-6, 1.37e-6, 0.9e-6)
    else:  # UTM 32N, 0.1 m pixels; the grid is rotated ~0.45 deg from true north here
        x0, y0 = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(LON, LAT)
        transform = from_origin(x0 - 60.0, y0 + 60.0, 0.1, 0.1)
    tif = tmp_path / "ortho.tif"
    _write_geotiff(tif, rgb, crs, transform)
    out = tmp_path / "ortho.mbtiles"
    proc = run(cvgl_bin, "tiles", "import-geotiff", tif, "--out", out, "--zoom", 19, "--min-zoom", 17, "--quiet")
    assert proc.returncode == 0, proc.stderr
    with MBTilesStore.open(out) as store:
        assert store.zoom_levels() == [17, 18, 19]
        assert store.metadata["maxzoom"] == "19"
    with PatchSampler(out) as sampler:
        patch = sampler.patch_wgs84(LAT, LON, 256, 0.2)
    expected = _expected_patch(rgb, crs, transform, LAT, LON, 256, 0.2)
    assert patch.valid.all()
    mae = np.abs(patch.rgb.astype(float) - expected).mean()
    win = cv2.createHanningWindow((256, 256), cv2.CV_64F)
    grey = [cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64) for a in (expected, patch.rgb)]
    (dx, dy), _ = cv2.phaseCorrelate(grey[0], grey[1], win)
    print(f"{crs}: mean absolute error {mae:.2f} grey levels, offset ({dx:+.3f}, {dy:+.3f}) px")
    assert mae <= 3.0
    assert np.hypot(dx, dy) <= 0.5


def test_import_geotiff_bad_input(cvgl_bin, tmp_path):
    rgb = texture(64, 3)
    nocrs = tmp_path / "nocrs.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(nocrs, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as dst:
            dst.write(np.moveaxis(rgb, -1, 0))
    out = tmp_path / "o.mbtiles"
    assert_one_line_error(run(cvgl_bin, "tiles", "import-geotiff", nocrs, "--out", out), "no CRS")
    good = tmp_path / "good.tif"
    _write_geotiff(good, rgb, "EPSG:4326", from_origin(LON, LAT, 1e-6, 1e-6))
    assert_one_line_error(run(cvgl_bin, "tiles", "import-geotiff", good, "--out", out, "--zoom", 30), "zoom 30")
    assert_one_line_error(run(cvgl_bin, "tiles", "import-geotiff", tmp_path / "missing.tif", "--out", out),
                          "no such")
    text = tmp_path / "text.tif"
    text.write_text("not a tiff")
    assert_one_line_error(run(cvgl_bin, "tiles", "import-geotiff", text, "--out", out), "not a raster")
    assert not out.exists()


def test_verify_good_cache_and_bad_input(cvgl_bin, cache, tmp_path):
    proc = run(cvgl_bin, "tiles", "verify", cache, "--quiet")
    with MBTilesStore.open(cache) as store:
        n = store.tile_count()
    assert proc.returncode == 0 and f"{n} tiles checked (256 px), 0 bad" in proc.stdout, proc.stdout + proc.stderr
    assert_one_line_error(run(cvgl_bin, "tiles", "verify", cache, "--url", "http://127.0.0.1:1/{z}/{x}/{y}.png"),
                          "needs --repair")
    assert_one_line_error(run(cvgl_bin, "tiles", "verify", cache, "--repair", "--url", "http://h/{z}/{x}/{q}.png"),
                          "{q}")
