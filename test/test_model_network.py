"""Stages and wiring of the pose network: geometry of the BEV projection, the (yaw, y, x)
volume on known features, shapes, normalization, gradients and the configuration."""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cvgl_ros.errors import InputError
from cvgl_ros.models import ENCODER_MODULES, FullConfig, PoseNet, PoseNetConfig, load_config
from cvgl_ros.models.bev_projection import BEVProjection
from cvgl_ros.models.correlation import (LocalCorrelation, all_pairs_correlation, rigid_volume, rigid_volume_gather,
                                         volume_band_spread)
from cvgl_ros.models.frames import bev_cell_centres, map_to_grid_norm, vehicle_to_map
from support.flat_pairs import cut_patch, flat_texture, render_ground_view

TINY = dict(image_hw=(32, 128), patch_px=64, patch_mpp=0.8, ground_channels=(8, 8, 16),
            satellite_channels=(8, 8, 16), feature_dim=8, context_dim=8, bev_forward_m=12.8, bev_half_width_m=6.4,
            volume_cells=12, yaw_bins=5, iterations=2, corr_levels=2, hidden_dim=8)


def pinhole(h, w, hfov_deg=90.0):
    f = (w / 2) / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])


def test_bev_cell_projects_to_the_flat_ground_pixel():
    k = pinhole(64, 256)
    proj = BEVProjection((64, 256), rows=26, cols=30, cell_m=0.8)
    u, v, visible = proj.image_coordinates(torch.tensor(k, dtype=torch.float32)[None], torch.tensor([1.6]))
    xy = bev_cell_centres(26, 30, 0.8)
    forward, left = xy[..., 0].numpy(), xy[..., 1].numpy()
    np.testing.assert_allclose(u[0].numpy(), k[0, 2] - k[0, 0] * left / forward, atol=1e-3)
    np.testing.assert_allclose(v[0].numpy(), k[1, 2] + k[1, 1] * 1.6 / forward, atol=1e-3)
    # Near cells fall below the image, far ones inside; nothing behind the camera is visible.
    assert not visible[0, -1, 15] and visible[0, 5, 15]


def test_projected_bev_of_a_flat_view_reproduces_the_satellite_texture():
    """Render a flat-ground view, project its pixels to the BEV, rotate into the map: the
    result must equal the satellite texture there (the homography of seed 002 Eq. 1)."""
    mpp = 0.2
    texture = flat_texture(800, mpp, seed=3)
    k = pinhole(128, 512)
    east, north, yaw = 3.0, -4.0, 0.7
    image = render_ground_view(texture, mpp, east, north, yaw, k, (128, 512), 1.6)
    proj = BEVProjection((128, 512), rows=24, cols=30, cell_m=0.4)
    rgb = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1)[None] / 255
    bev, mask = proj(rgb, torch.tensor(k, dtype=torch.float32)[None], torch.tensor([1.6]))
    points = vehicle_to_map(bev_cell_centres(24, 30, 0.4), torch.tensor(yaw), torch.tensor([east, north]))
    patch = cut_patch(texture, mpp, 0.0, 0.0, 400)
    sat = torch.tensor(patch, dtype=torch.float32).permute(2, 0, 1)[None] / 255
    expected = F.grid_sample(sat, map_to_grid_norm(points, 400, mpp)[None].float(), align_corners=True)
    visible = mask[0, 0].bool() & (torch.arange(24)[:, None] < 14)     # the nearer, sharper rows
    assert visible.sum() > 100
    a, b = bev[0][:, visible].flatten(), expected[0][:, visible].flatten()
    assert float(torch.corrcoef(torch.stack((a, b)))[0, 1]) > 0.85
    assert float((a - b).abs().median()) < 0.05


def test_rigid_volume_peaks_at_the_true_pose():
    """Unit-norm satellite features and a BEV that is an exact copy of them at the true pose
    (lattice-aligned yaws): the true (yaw, y, x) scores 1, every other pose less."""
    torch.manual_seed(0)
    cells, cell_m = 16, 1.6
    sat = F.normalize(torch.randn(1, 8, cells, cells), dim=1)
    bev_xy = bev_cell_centres(6, 6, cell_m).reshape(-1, 2)
    yaw_bins = torch.tensor([[-math.pi / 2, 0.0, math.pi / 2, math.pi]])
    true_k, true_t = 2, torch.tensor([4.8, -3.2])     # BEV cells then land on satellite cell centres
    points = vehicle_to_map(bev_xy, yaw_bins[0, true_k], true_t)
    bev = F.grid_sample(sat, map_to_grid_norm(points, cells, cell_m).reshape(1, 1, -1, 2), align_corners=True)
    corr = all_pairs_correlation(bev.reshape(1, 8, 6, 6), sat) * math.sqrt(8)
    volume = rigid_volume(corr, bev_xy, torch.ones(1, 36), yaw_bins, volume_cells=11, cell_m=cell_m)
    k, r, c = np.unravel_index(int(volume.argmax()), volume.shape[1:])
    assert k == true_k
    assert (c - 5) * cell_m == pytest.approx(4.8) and (5 - r) * cell_m == pytest.approx(-3.2)
    assert float(volume.max()) == pytest.approx(1.0, abs=1e-5)
    assert float(volume.flatten().topk(2).values[1]) < 0.9


@pytest.mark.parametrize("half_window, bins", [(0.3, 7), (2.9, 25)])
def test_gather_volume_equals_grid_sample_volume_and_gradients(half_window, bins):
    """The export's separable-gather volume is the training's grid_sample volume, for a narrow
    yaw window (a column band narrower than the image) and a nearly full circle (the whole image)."""
    torch.manual_seed(2)
    b, cells, p_rows, p_cols = 2, 16, 5, 6
    xy = bev_cell_centres(p_rows, p_cols, 1.6).reshape(-1, 2)
    pad = int(math.ceil(float(xy.norm(dim=1).max()) / 1.6)) + 2
    corr = torch.randn(b * p_rows * p_cols, 1, cells, cells, requires_grad=True)
    mask = (torch.rand(b, p_rows * p_cols) > 0.3).float()
    yaw = torch.tensor([[3.0], [-1.2]]) + torch.linspace(-half_window, half_window, bins)[None]
    grid = rigid_volume(corr, xy, mask, yaw, 12, 1.6)
    spread = volume_band_spread(xy, [-half_window, half_window], 1.6)
    gather = rigid_volume_gather(corr, xy, mask, yaw, 12, 1.6, pad, spread)
    torch.testing.assert_close(gather, grid, atol=1e-5, rtol=1e-5)
    g1, = torch.autograd.grad(grid.square().sum(), corr)
    g2, = torch.autograd.grad(gather.square().sum(), corr)
    torch.testing.assert_close(g2, g1, atol=1e-5, rtol=1e-5)


def test_local_correlation_window_equals_direct_sampling():
    """The banded matmul of LocalCorrelation against sampling the satellite at each shifted cell."""
    torch.manual_seed(1)
    b, c, rows, cols = 2, 4, 6, 8
    bev, sat = torch.randn(b, c, rows, cols), torch.randn(b, c, 32, 32)
    init = torch.tensor([[1.0, -2.0, 0.3], [0.5, 0.5, -1.0]])
    local = LocalCorrelation(bev, sat, init, rows, cols, 0.8, levels=2, window_radius=3)
    xy = bev_cell_centres(rows, cols, 0.8)
    for level in range(2):
        step = 2 ** level
        sat_l = sat if level == 0 else F.avg_pool2d(sat, 2)
        for dy, dx in ((-3, 2), (0, 0), (1, -3), (3, 3)):
            pts = xy - torch.tensor([dy, dx]) * step * 0.8                  # row +1 = back, col +1 = right
            mp = vehicle_to_map(pts[None], init[:, 2].reshape(-1, 1, 1), init[:, None, None, :2])
            f = F.grid_sample(sat_l, map_to_grid_norm(mp, sat_l.shape[-1], 0.8 * step), align_corners=True)
            expected = (f * bev).sum(1) / math.sqrt(c)
            got = local.windows[level].reshape(b, rows, cols, 7, 7)[..., dy + 3, dx + 3]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # A lookup at a displacement of one cell forward reads the window one row up (dy = -1).
    ahead = local.lookup(torch.tensor([1.0, 0.0]).expand(b, rows * cols, 2), radius=1)
    centre = local.windows[0].reshape(b, rows * cols, 7, 7)[:, :, 2, 3]
    torch.testing.assert_close(ahead[:, 4, :], centre)


def test_network_outputs_shapes_normalized_volume_and_gradients():
    torch.manual_seed(0)
    cfg = PoseNetConfig(**TINY)
    model = PoseNet(cfg)
    b = 2
    k = torch.tensor(pinhole(32, 128), dtype=torch.float32).expand(b, 3, 3)
    out = model(torch.rand(b, 3, 32, 128), torch.rand(b, 3, 64, 64), k, torch.full((b,), 1.6), torch.tensor([0.2, -2.0]))
    assert out["volume_logits"].shape == (b, 5, 12, 12)
    assert out["pose"].shape == (b, 3) and len(out["poses"]) == cfg.iterations
    total = out["log_volume"].flatten(1).exp().sum(1)
    np.testing.assert_allclose(total.detach().numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["yaw_bins"][:, 2].numpy(), [0.2, -2.0], atol=1e-6)   # window centred on the prior
    assert torch.all(torch.isfinite(out["pose"]))
    (out["log_volume"].max() + out["pose"].sum()).backward()
    for name in (*ENCODER_MODULES, "refine_block", "update_block"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
        assert any(float(g.abs().sum()) > 0 for g in grads), name


def test_config_file_and_bad_values(tmp_path, repo_root):
    cfg = load_config(repo_root / "config" / "train_pose.yaml")
    assert cfg.model.image_hw == (64, 256) and cfg.model.volume_cell_m == pytest.approx(1.6)
    bad = tmp_path / "bad.yaml"
    for text, words in (("model:\n  no_such_setting: 3\n", ["unknown model setting", "no_such_setting"]),
                        ("trian:\n  epochs: 3\n", ["unknown config section", "trian", "did you mean train"]),
                        ("model:\n  volume_cells: 40\n", ["volume_cells"]),
                        ("model:\n  yaw_bins: 0\n", ["yaw_bins", "greater than or equal to 1"]),
                        ("model:\n  image_hw: [64, 256.5]\n", ["image_hw", "integer"]),
                        ("train:\n  epochs: 2.5\n", ["training setting epochs", "2.5", "integer"]),
                        ("train:\n  lr: 2.0\n", ["lr", "less than or equal to 1"]),
                        ("train:\n  lr: .nan\n", ["lr", "finite"]),
                        ("train:\n  lr: nan\n", ["lr", "number"]),  # YAML's NaN is .nan: this is a string
                        ("model: [1, 2\n", ["not valid YAML"])):
        bad.write_text(text)
        with pytest.raises(InputError) as info:
            load_config(bad)
        assert "\n" not in str(info.value) and all(w in str(info.value) for w in words), (text, str(info.value))
    bad.write_text("train:\n  epochs: 2.0\n  lr: 2e-4\n")
    assert (load_config(bad).train.epochs, load_config(bad).train.lr) == (2, 2e-4)  # 2.0 is 2; 2e-4 a float
    assert FullConfig.from_dict(FullConfig().to_dict()) == FullConfig()  # a checkpoint's config reads back