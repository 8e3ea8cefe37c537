"""Cross-view pairs from worlds: KITTI protocol offsets and yaw priors, splits, format, determinism."""
import math
import subprocess

import numpy as np
import pytest

from cvgl_ros.datasets.pairs import PairDataset
from cvgl_ros.errors import InputError
from cvgl_ros.geo.vehicle_errors import lateral_longitudinal
from cvgl_ros.sim.ground_camera import default_camera
from cvgl_ros.sim.pairs import PairConfig, generate_pairs, split_plan
from cvgl_ros.sim.world import World

CONFIG = PairConfig(frames_per_drive=4, same_area_fraction=0.25, cross_area_fraction=0.25, seed=3)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair_worlds")
    World.generate(21, "urban", 220.0).save(root / "city")
    World.generate(22, "suburban", 220.0).save(root / "town")
    return root / "city", root / "town"


@pytest.fixture(scope="module")
def dataset(worlds, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "ds"
    summary = generate_pairs(worlds, 16, out, CONFIG, workers=1, progress=False)
    return out, summary


def test_splits_follow_the_protocol(dataset):
    out, summary = dataset
    assert summary["cross_area_worlds"] == ["town"]
    assert summary["counts"] == {"cross_area": 4, "same_area": 4, "train": 8}
    train, same, cross = (PairDataset(out, s) for s in ("train", "same_area", "cross_area"))
    assert (len(train), len(same), len(cross)) == (8, 4, 4)
    train_drives = {(s["world"], s["drive"]) for s in train.iter_shards()}
    same_drives = {(s["world"], s["drive"]) for s in same.iter_shards()}
    assert {w for w, _ in train_drives} == {"city"} and {w for w, _ in same_drives} == {"city"}
    assert not train_drives & same_drives                      # held-out drives
    assert {s["world"] for s in cross.iter_shards()} == {"town"}  # a world never seen in training
    assert train.index["worlds"]["town"]["split"] == "cross_area"


def test_samples_hold_kitti_protocol_offsets_and_yaw_priors(dataset):
    out, _ = dataset
    cam = default_camera(512, 128)
    for split in ("train", "same_area", "cross_area"):
        for s in PairDataset(out, split).iter_shards():
            assert s["ground"].shape == (128, 512, 3) and s["satellite"].shape == (256, 256, 3)
            np.testing.assert_allclose(s["K"], cam.k, rtol=1e-6)
            assert s["camera_height_m"] == pytest.approx(1.65)
            lat, lon = lateral_longitudinal(s["offset_en_m"][0], s["offset_en_m"][1], s["yaw_enu_rad"])
            assert abs(lat) <= 20.0 + 1e-4 and abs(lon) <= 20.0 + 1e-4
            err = (s["yaw_prior_enu_rad"] - s["yaw_enu_rad"] + math.pi) % (2 * math.pi) - math.pi
            assert abs(err) <= math.radians(10.0) + 1e-5
            assert s["ground"].std() > 10 and s["satellite"].std() > 10
    meta = PairDataset(out, "train").meta
    assert meta["ground_size_wh"] == [512, 128] and meta["satellite_px"] == 256 and meta["satellite_mpp"] == 0.2
    assert meta["config"]["max_shift_m"] == 20.0 and meta["config"]["max_yaw_prior_deg"] == 10.0


def test_satellite_patch_is_centred_at_position_minus_offset(dataset, worlds):
    from cvgl_ros.tiles import PatchSampler

    out, _ = dataset
    world = World.load(worlds[0])
    with PatchSampler(world.tiles_path) as sampler:
        for s in list(PairDataset(out, "train").iter_shards())[:3]:
            centre = s["position_en_m"] - s["offset_en_m"]
            again = sampler.patch_enu(world.datum, float(centre[0]), float(centre[1]), 256, 0.2).rgb
            moved = sampler.patch_enu(world.datum, float(centre[0]) + 3.0, float(centre[1]), 256, 0.2).rgb
            same_err = np.abs(again.astype(float) - s["satellite"]).mean()
            moved_err = np.abs(moved.astype(float) - s["satellite"]).mean()
            assert same_err < 3.0 < moved_err


def test_unknown_yaw_prior_and_worker_count_independence(worlds, tmp_path):
    config = PairConfig(frames_per_drive=3, yaw_prior="unknown", same_area_fraction=0.0, cross_area_fraction=0.0)
    a = generate_pairs(worlds[:1], 6, tmp_path / "a", config, workers=1, progress=False)
    b = generate_pairs(worlds[:1], 6, tmp_path / "b", config, workers=2, progress=False)
    assert a["counts"] == b["counts"] == {"train": 6}
    for sa, sb in zip(PairDataset(tmp_path / "a", "train").iter_shards(),
                      PairDataset(tmp_path / "b", "train").iter_shards()):
        assert math.isnan(sa["yaw_prior_enu_rad"])
        np.testing.assert_array_equal(sa["ground"], sb["ground"])
        np.testing.assert_array_equal(sa["offset_en_m"], sb["offset_en_m"])


def test_split_plan_and_bad_config():
    cross, counts = split_plan(["a", "b", "c", "d", "e"], 1000, PairConfig())
    assert cross == ["e"] and counts == {"cross_area": 150, "same_area": 150, "train": 700}
    cross, counts = split_plan(["a"], 100, PairConfig(val_fraction=0.1))
    assert cross == [] and counts == {"same_area": 15, "val": 10, "train": 75}
    with pytest.raises(InputError, match="cross-area"):
        split_plan(["a", "b"], 10, PairConfig(cross_area_worlds=2))
    with pytest.raises(InputError, match="offset"):
        PairConfig(satellite_px=128, satellite_mpp=0.2).check()


def test_cli_rejects_world_without_tiles_and_leaves_nothing(cvgl_bin, worlds, tmp_path):
    bad = tmp_path / "bad_world"
    bad.mkdir()
    (bad / "world.json").write_text((worlds[0] / "world.json").read_text())
    out = tmp_path / "ds"
    r = subprocess.run([cvgl_bin, "sim", "pairs", "--worlds", str(worlds[0]), str(bad), "--n", "4", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "tiles.mbtiles" in r.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad_world"]
