"""The cross-view pose network: wiring of the stages of seed 002.

"Learning Dense Flow Field for Highly-accurate Cross-view Camera Localization" (Fig. 2):

    ground image --GroundEncoder--> features, context --BEVProjection--> BEV --RefineBlock--> F_g2s
    satellite    --SatelliteEncoder--> fine (stride 2, 0.8 m), coarse (stride 4, 1.6 m)
    coarse:  rigid_volume(corr(pool(F_g2s), coarse)) -> logits over (yaw, y, x)   [the filter's input]
    fine:    matches p^ start at the volume's best pose (parabola-refined below the cell),
             `iterations` GRU updates reading the windowed correlation pyramid around the
             current matches, each followed by the confidence-weighted Procrustes pose

Inputs (batch first): ground (B, 3, H, W) RGB in [0, 1] of `image_hw`; satellite (B, 3, S, S)
RGB in [0, 1], north-up, centred on the position prior, `patch_mpp` m/px; intrinsics
(B, 3, 3) of the ground image; camera_height_m (B,); yaw_prior_rad (B,) ENU.
Outputs are map offsets from the patch centre (east, north metres) and ENU yaws.

Parameters are grouped as `ground_encoder`, `satellite_encoder`, `refine_block`,
`coarse_head`, `update_block` (+ `log_scale`) so that federated training can share the
encoders only (seed 000).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cvgl_ros.models.bev_projection import BEVProjection
from cvgl_ros.models.config import PoseNetConfig
from cvgl_ros.models.correlation import (LocalCorrelation, all_pairs_correlation, rigid_volume, rigid_volume_gather,
                                         volume_band_spread)
from cvgl_ros.models.flow_refinement import FlowUpdateBlock
from cvgl_ros.models.frames import bev_cell_centres, vehicle_to_map
from cvgl_ros.models.ground_encoder import GroundEncoder
from cvgl_ros.models.pose_solver import weighted_procrustes
from cvgl_ros.models.refine_block import RefineBlock
from cvgl_ros.models.satellite_encoder import SatelliteEncoder

ENCODER_MODULES = ("ground_encoder", "satellite_encoder")


class PoseNet(nn.Module):
    def __init__(self, config: PoseNetConfig | None = None):
        super().__init__()
        cfg = config or PoseNetConfig()
        self.config = cfg
        d = cfg.feature_dim
        self.ground_encoder = GroundEncoder(cfg.ground_channels, d, cfg.context_dim)
        self.satellite_encoder = SatelliteEncoder(cfg.satellite_channels, d)
        self.bev_projection = BEVProjection(cfg.image_hw, cfg.bev_rows, cfg.bev_cols, cfg.fine_cell_m,
                                            cfg.camera_pitch_rad, cfg.camera_forward_m)
        self.refine_block = RefineBlock(d, cfg.bev_rows, cfg.bev_cols, cfg.fine_cell_m)
        self.coarse_head = nn.Conv2d(d, d, 1)
        corr_channels = cfg.corr_levels * (2 * cfg.corr_radius + 1) ** 2
        self.update_block = FlowUpdateBlock(corr_channels, cfg.context_dim, cfg.hidden_dim)
        self.hidden_init = nn.Conv2d(cfg.context_dim, cfg.hidden_dim, 1)
        # Scale of the volume logits (the temperature the NLL calibrates), log-parametrized.
        self.log_scale = nn.Parameter(torch.tensor(2.0))
        self.register_buffer("yaw_offsets", torch.tensor(cfg.yaw_offsets_rad, dtype=torch.float32), persistent=False)
        self.register_buffer("bev_xy", bev_cell_centres(cfg.bev_rows, cfg.bev_cols, cfg.fine_cell_m).reshape(-1, 2),
                             persistent=False)
        self.register_buffer("bev_xy_coarse", bev_cell_centres(cfg.bev_rows // 2, cfg.bev_cols // 2,
                                                               cfg.volume_cell_m).reshape(-1, 2), persistent=False)
        # The volume has two equal implementations: grid_sample (fast to train in torch) and
        # separable gathers (fast in ONNX Runtime); ExportedPoseNet switches to the second.
        self.volume_by_gather = False
        self.volume_pad = int(math.ceil(float(self.bev_xy_coarse.norm(dim=1).max()) / cfg.volume_cell_m)) + 2
        self.volume_spread = volume_band_spread(self.bev_xy_coarse, cfg.yaw_offsets_rad, cfg.volume_cell_m)

    # -- stages ---------------------------------------------------------------------------
    def encode(self, ground, satellite, intrinsics, camera_height_m):
        features, context = self.ground_encoder(ground)
        projected, mask = self.bev_projection(torch.cat((features, context), dim=1), intrinsics, camera_height_m)
        d = self.config.feature_dim
        bev = self.refine_block(projected[:, :d], mask) * mask       # F_g2s, (B, D, R, W)
        context_bev = projected[:, d:]
        sat_fine, sat_coarse = self.satellite_encoder(satellite)
        return bev, mask, context_bev, sat_fine, sat_coarse

    def coarse_volume(self, bev, mask, sat_coarse, yaw_bins):
        cfg = self.config
        bev_coarse = self.coarse_head(F.avg_pool2d(bev, 2))
        mask_coarse = F.avg_pool2d(mask, 2).flatten(1)                # (B, P_coarse)
        corr = all_pairs_correlation(bev_coarse, sat_coarse)
        if self.volume_by_gather:
            score = rigid_volume_gather(corr, self.bev_xy_coarse, mask_coarse, yaw_bins, cfg.volume_cells,
                                        cfg.volume_cell_m, self.volume_pad, self.volume_spread)
        else:
            score = rigid_volume(corr, self.bev_xy_coarse, mask_coarse, yaw_bins, cfg.volume_cells, cfg.volume_cell_m)
        return score * torch.exp(self.log_scale)

    def best_volume_pose(self, logits, yaw_bins):
        """(B, K, H, W) logits -> (B, 3) (east, north, yaw) of the most likely cell, refined below
        the cell by a parabola through it and its two neighbours along each axis."""
        b, k, h, w = logits.shape
        cfg = self.config
        flat = logits.reshape(b, -1)
        index = torch.argmax(flat, dim=1)
        k_index = torch.div(index, h * w, rounding_mode="floor")
        cell = index - k_index * (h * w)
        row = torch.div(cell, w, rounding_mode="floor")
        col = cell - row * w

        def value(kk, rr, cc):
            return torch.gather(flat, 1, (kk * (h * w) + rr * w + cc).unsqueeze(1)).squeeze(1)

        def vertex(i, n, at):
            """Sub-cell offset in [-0.5, 0.5] of the parabola's peak along one axis (0 at the border)."""
            lo, hi = torch.clamp(i - 1, min=0), torch.clamp(i + 1, max=n - 1)
            before, centre, after = at(lo), at(i), at(hi)
            curvature = before - 2 * centre + after
            inside = (i > 0) & (i < n - 1) & (curvature < -1e-6)
            offset = 0.5 * (before - after) / torch.where(inside, curvature, torch.full_like(curvature, -1.0))
            return torch.where(inside, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))

        d_yaw = vertex(k_index, k, lambda kk: value(kk, row, col))
        d_row = vertex(row, h, lambda rr: value(k_index, rr, col))
        d_col = vertex(col, w, lambda cc: value(k_index, row, cc))
        east = (col.to(logits.dtype) + d_col - (w - 1) / 2.0) * cfg.volume_cell_m
        north = -(row.to(logits.dtype) + d_row - (h - 1) / 2.0) * cfg.volume_cell_m
        step = yaw_bins[:, 1] - yaw_bins[:, 0]
        yaw = torch.gather(yaw_bins, 1, k_index.unsqueeze(1)).squeeze(1) + d_yaw * step
        return torch.stack((east, north, yaw), dim=1)

    def refine(self, bev, mask, context_bev, sat_fine, init_pose):
        cfg = self.config
        b = bev.shape[0]
        rows, cols = cfg.bev_rows, cfg.bev_cols
        corr = LocalCorrelation(bev, sat_fine, init_pose, rows, cols, cfg.fine_cell_m, cfg.corr_levels, cfg.corr_window)
        weights_visible = mask.flatten(1)                             # (B, P)
        src = self.bev_xy.unsqueeze(0).expand(b, -1, -1)              # (B, P, 2) vehicle frame
        yaw0 = init_pose[:, 2:3]
        start = vehicle_to_map(src, yaw0, init_pose[:, None, 0:2])    # matches at the start pose
        displacement = torch.zeros_like(src)                          # (forward, left) fine cells from start
        hidden = torch.tanh(self.hidden_init(context_bev))
        context = F.relu(context_bev)
        out = {"matches": [], "confidences": [], "poses": []}
        for _ in range(cfg.iterations):
            displacement = displacement.detach()
            samples = corr.lookup(displacement, cfg.corr_radius).reshape(b, -1, rows, cols)
            disp_map = displacement.transpose(1, 2).reshape(b, 2, rows, cols)
            hidden, delta, confidence_logit = self.update_block(hidden, context, samples, disp_map)
            displacement = displacement + delta.flatten(2).transpose(1, 2)
            matches = start + vehicle_to_map(displacement * cfg.fine_cell_m, yaw0)
            confidence = torch.sigmoid(confidence_logit).flatten(1)  # S_i, (B, P)
            yaw, t = weighted_procrustes(src, matches, confidence * weights_visible)
            out["matches"].append(matches)
            out["confidences"].append(confidence)
            out["poses"].append(torch.cat((t, yaw.unsqueeze(1)), dim=1))
        return out

    # -- whole network ----------------------------------------------------------------------
    def forward(self, ground, satellite, intrinsics, camera_height_m, yaw_prior_rad, init_pose=None,
                init_mask=None) -> dict:
        """The network's outputs (see the module docstring). Training may start the refinement
        at `init_pose` (B, 3) instead of the volume's best cell, for the samples in `init_mask`."""
        bev, mask, context_bev, sat_fine, sat_coarse = self.encode(ground, satellite, intrinsics, camera_height_m)
        yaw_bins = yaw_prior_rad.reshape(-1, 1) + self.yaw_offsets.reshape(1, -1)
        logits = self.coarse_volume(bev, mask, sat_coarse, yaw_bins)
        volume_pose = self.best_volume_pose(logits, yaw_bins)
        start = volume_pose
        if init_pose is not None:
            start = init_pose if init_mask is None else torch.where(init_mask.reshape(-1, 1), init_pose, volume_pose)
        refined = self.refine(bev, mask, context_bev, sat_fine, start.detach())
        return {
            "volume_logits": logits,
            "log_volume": torch.log_softmax(logits.flatten(1), dim=1).reshape(logits.shape),
            "yaw_bins": yaw_bins,
            "volume_pose": volume_pose,
            "init_pose": start,
            "bev_mask": mask.flatten(1),
            "pose": refined["poses"][-1],
            **refined,
        }


class ExportedPoseNet(nn.Module):
    """The graph that goes into ONNX: fixed inputs, (volume logits, pose, confidence) out."""

    INPUTS = ("ground", "satellite", "intrinsics", "camera_height_m", "yaw_prior_rad")
    OUTPUTS = ("volume_logits", "pose", "confidence")

    def __init__(self, model: PoseNet):
        super().__init__()
        self.model = model
        model.volume_by_gather = True

    def forward(self, ground, satellite, intrinsics, camera_height_m, yaw_prior_rad):
        out = self.model(ground, satellite, intrinsics, camera_height_m, yaw_prior_rad)
        return out["volume_logits"], out["pose"], out["confidences"][-1]
