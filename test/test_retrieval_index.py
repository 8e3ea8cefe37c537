"""`cvgl retrieval index` on a real small tile cache with an exported tiny descriptor model: the
grid and its file, the circle query and its scores e^{-d} (seed 001 Eq. 5), bad input as one
line, and the vehicle side without torch."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.geo import Datum
from cvgl_ros.retrieval.index import FORMAT, DescriptorIndex, grid_in_bbox, grid_near
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.raster import EnuRaster, add_enu_raster
from support.flat_pairs import flat_texture

DATUM = Datum(49.0, 8.4, 110.0)
HALF_M = 62.0          # the box: +-62 m around the datum (the cache covers +-120 m)


def cvgl(*args, timeout=180):
    return subprocess.run([str(Path(sys.executable).with_name("cvgl")), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A z18 MBTiles cache of a 240 m flat texture, a tiny exported descriptor model, and a grid of the box."""
    import torch

    from cvgl_ros.models.descriptor import DescriptorConfig, DescriptorNet
    from cvgl_ros.retrieval.sectors import sector_weights
    from cvgl_ros.train.retrieval import RetrievalConfig
    from cvgl_ros.train.retrieval_export import export_descriptor

    root = tmp_path_factory.mktemp("retrieval_index")
    tiles = root / "cache.mbtiles"
    with MBTilesStore.create(tiles, name="flat", image_format="png") as store:
        add_enu_raster(store, EnuRaster(flat_texture(1200, 0.2, seed=7), DATUM, 0.0, 0.0, 0.2), zoom=18)
    torch.manual_seed(0)
    config = RetrievalConfig(model=DescriptorConfig(image_hw=(32, 128), patch_px=32, patch_mpp=1.6,
                                                    polar_hw=(32, 128), channels=(8, 8, 16, 16), attention_maps=2,
                                                    sector_dim=4))
    net = DescriptorNet(config.model)
    weights = torch.from_numpy(sector_weights(np.linspace(0, 6, 8), [[64, 0, 64], [0, 64, 16], [0, 0, 1]], 128, 16, 8))
    with torch.no_grad():                       # batch-norm statistics that are not the identity
        net.train()
        net(torch.rand(8, 3, 32, 128), weights, torch.rand(8, 3, 32, 128))
    export_descriptor(net.eval(), config, root / "model", history=[], provenance={"data": "none"})
    lat, lon, _ = DATUM.to_wgs84(np.array([-HALF_M, HALF_M]), np.array([-HALF_M, HALF_M]))
    bbox = f"{lon[0]:.8f},{lat[0]:.8f},{lon[1]:.8f},{lat[1]:.8f}"
    done = cvgl("retrieval", "index", "--tiles", tiles, "--model", root / "model" / "descriptor.json", "--bbox", bbox,
                "--datum", "49.0,8.4,110", "--spacing", 10, "--out", root / "grid.npz", "--quiet", "--threads", 1)
    assert done.returncode == 0, done.stderr
    return root, tiles, bbox, DescriptorIndex.load(root / "grid.npz")


def test_the_grid_covers_the_box_at_multiples_of_the_spacing(world):
    root, _, _, grid = world
    assert len(grid) == 13 * 13                                 # -60..60 m by 10 m
    assert np.allclose(grid.positions_en_m % 10.0, 0.0) and np.abs(grid.positions_en_m).max() == 60.0
    assert grid.descriptors.dtype == np.int8 and grid.descriptor_dim == 32          # the default, 1 byte a number
    assert np.allclose(np.linalg.norm(grid.vectors(), axis=1), 1.0, atol=1e-2)
    card = json.loads((root / "model" / "descriptor.json").read_text())
    assert grid.meta["format"] == FORMAT and grid.meta["model"]["satellite_sha256"] == card["satellite"]["sha256"]
    assert grid.datum == DATUM and grid.spacing_m == 10.0 and grid.meta["skipped_cells"] == 0


def test_a_cell_holds_the_descriptor_of_its_own_patch(world):
    from cvgl_ros.retrieval.encoders import DescriptorModel
    from cvgl_ros.tiles.patch import PatchSampler

    root, tiles, _, grid = world
    model = DescriptorModel(root / "model", intra_op_threads=1)
    k = len(grid) // 3
    east, north = grid.positions_en_m[k]
    with PatchSampler(tiles) as sampler:
        patch = sampler.patch_enu(DATUM, float(east), float(north), 32, 1.6)
    expected = model.encode_satellite(patch.rgb[None])[0]
    assert np.abs(grid.vectors(k) - expected).max() < 0.5 * grid.meta["int8_scale"] + 1e-7


def test_the_circle_query_returns_its_cells_and_scores_exp_minus_d(world):
    _, _, _, grid = world
    k = int(np.argmin(np.linalg.norm(grid.positions_en_m - [10.0, -20.0], axis=1)))
    query = grid.vectors(k)
    result = grid.query(query, 12.0, -18.0, 25.0)
    inside = np.flatnonzero(np.linalg.norm(grid.positions_en_m - [12.0, -18.0], axis=1) <= 25.0)
    assert result.indices.tolist() == inside.tolist() and len(inside) >= 15
    d = ((grid.vectors(inside) - query) ** 2).sum(1)
    assert np.allclose(result.distances, d, atol=1e-6) and np.allclose(result.scores, np.exp(-d))
    assert result.scores.max() == pytest.approx(1.0) and result.indices[result.scores.argmax()] == k
    assert np.all((result.scores > 0) & (result.scores <= 1))


def test_bad_queries_and_files_are_one_line_errors(world, tmp_path):
    root, tiles, bbox, grid = world
    with pytest.raises(InputError, match="finite"):
        grid.query(np.full(32, np.nan, np.float32), 0.0, 0.0, 10.0)
    with pytest.raises(InputError, match="32 finite"):
        grid.query(np.zeros(31, np.float32), 0.0, 0.0, 10.0)
    with pytest.raises(InputError, match="radius"):
        grid.cells_within(0.0, 0.0, 0.0)
    with pytest.raises(InputError, match="radius"):
        grid.cells_within(float("inf"), 0.0, 5.0)
    assert grid.cells_within(5000.0, 0.0, 10.0).size == 0                  # outside the grid: no cell, no error
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a descriptor grid"):
        DescriptorIndex.load(tmp_path / "x.npz")
    with pytest.raises(InputError, match="ground encoder"):
        grid.check_model("0" * 64)
    far = "9.0,49.5,9.001,49.501"                                          # a box the cache does not cover
    for args, message in ((["--bbox", far, "--out", tmp_path / "g.npz"], "complete patch"),
                          (["--bbox", bbox, "--out", tmp_path / "g.txt"], ".npz"),
                          (["--bbox", bbox, "--spacing", "nan", "--out", tmp_path / "g.npz"], "finite"),
                          (["--bbox", "8.5,49,8.4,49.1", "--out", tmp_path / "g.npz"], "empty")):
        done = cvgl("retrieval", "index", "--tiles", tiles, "--model", root / "model", *args, "--quiet")
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_grids_follow_a_drive_and_share_the_lattice():
    lat, lon, _ = DATUM.to_wgs84(np.array([0.0, 40.0]), np.array([0.0, 0.0]))
    near = grid_near(DATUM, lat, lon, radius_m=12.0, spacing_m=5.0)
    assert np.allclose(near % 5.0, 0.0) and len(near) > 0
    assert np.all(np.minimum(np.hypot(*(near - [0, 0]).T), np.hypot(*(near - [40, 0]).T)) <= 12.0 + 1e-6)
    assert [40.0, 10.0] in near.tolist() and [20.0, 12.0 + 5.0] not in near.tolist()
    lat_b, lon_b, _ = DATUM.to_wgs84(np.array([-20.0, 20.0]), np.array([-20.0, 20.0]))
    box = grid_in_bbox(DATUM, lon_b[0], lat_b[0], lon_b[1], lat_b[1], 5.0)
    assert {tuple(p) for p in near if np.abs(p).max() <= 19.0} <= {tuple(p) for p in box}
    with pytest.raises(InputError, match="spacing"):
        grid_in_bbox(DATUM, lon_b[0], lat_b[0], lon_b[1], lat_b[1], 0.0)


def test_the_vehicle_side_runs_without_torch(world):
    root, _, _, _ = world
    code = f"""
import sys
sys.modules["torch"] = None          # any import of torch now fails
import numpy as np
from cvgl_ros.retrieval.index import DescriptorIndex
from cvgl_ros.retrieval.encoders import DescriptorModel
grid = DescriptorIndex.load({str(root / "grid.npz")!r})
model = DescriptorModel({str(root / "model")!r}, intra_op_threads=1)
grid.check_model(model.sha256("ground"))
g = model.encode_ground(np.random.default_rng(0).integers(0, 256, (128, 512, 3), dtype=np.uint8),
                        np.array([[256.0, 0, 256], [0, 256, 64], [0, 0, 1]]), 0.7)
res = grid.query(g, 0.0, 0.0, 45.0)
assert res.scores.size > 0 and np.all(np.isfinite(res.scores))
assert sys.modules["torch"] is None
print("ok", res.scores.size)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_a_grid_along_a_bag_covers_its_fixes_only(world, tmp_path):
    from cvgl_ros.datasets.bag import BagWriter, MSG_NAVSATFIX, navsatfix_msg

    root, tiles, _, _ = world
    east = np.linspace(-30.0, 30.0, 7)
    lat, lon, _ = DATUM.to_wgs84(east, np.zeros_like(east))
    with BagWriter(tmp_path / "drive") as bag:
        for k, (la, lo) in enumerate(zip(lat, lon)):
            stamp = (k + 1) * 10**9
            bag.write("/gnss/fix", MSG_NAVSATFIX, stamp, navsatfix_msg(la, lo, 110.0, stamp, sigma_m=3.0))
        stamp = 9 * 10**9                                            # a NO_FIX message far away is ignored
        bag.write("/gnss/fix", MSG_NAVSATFIX, stamp, navsatfix_msg(49.01, 8.41, 110.0, stamp, sigma_m=3.0, status=-1))
    done = cvgl("retrieval", "index", "--tiles", tiles, "--model", root / "model", "--bag", tmp_path / "drive",
                "--radius-m", 12, "--datum", "49.0,8.4,110", "--spacing", 10, "--out", tmp_path / "g.npz", "--quiet",
                "--threads", 1)
    assert done.returncode == 0, done.stderr
    grid = DescriptorIndex.load(tmp_path / "g.npz")
    expected = {(e, n) for e in range(-40, 41, 10) for n in (-10, 0, 10)
                if min(np.hypot(e - east, n)) <= 12.0}
    assert {tuple(p) for p in grid.positions_en_m.round().astype(int).tolist()} == expected
    assert grid.meta["region"]["fixes"] == 7 and grid.meta["region"]["radius_m"] == 12.0


def test_the_shipped_descriptor_model_is_found_and_gives_unit_sector_descriptors():
    """models/retrieval/local through the share directory: its card and sha256-checked encoders load,
    and both give 256-D unit vectors of 16 sectors."""
    from cvgl_ros.retrieval.encoders import DescriptorModel
    from cvgl_ros.share import default_descriptor_path

    card = default_descriptor_path()
    assert card is not None and card.name == "descriptor.json"
    model = DescriptorModel(card, intra_op_threads=1)
    assert model.descriptor_dim == 256 and model.sectors == 16
    rng = np.random.default_rng(0)
    g = model.encode_ground(rng.integers(0, 256, (128, 512, 3), dtype=np.uint8),
                            np.array([[297.4, 0, 251.0], [0, 246.3, 58.7], [0, 0, 1]]), 1.0)
    f = model.encode_satellite(rng.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8))
    assert np.allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5) and abs(np.linalg.norm(g) - 1.0) < 1e-5
