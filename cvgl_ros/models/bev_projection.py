"""Ground-to-BEV feature projection at a fixed camera height (flat ground).

"Learning Dense Flow Field for Highly-accurate Cross-view Camera Localization" (§3.1, Eq. 1)
maps ground pixels to the bird's-eye view through x^I ~ K T x^W with world points on the
ground plane, h below the camera, and samples the ground features bilinearly. Here every
BEV cell (vehicle frame: x forward, y left, on the ground) is projected into the image and
the stride-2 ground features are sampled there.

Camera mounting (written to the model card): optical centre `camera_forward_m` ahead of
the vehicle origin at height h (an input per frame), optical axis along the vehicle's x
axis pitched down by `camera_pitch_rad`, no roll; pinhole intrinsics K of the input image.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cvgl_ros.models.frames import bev_cell_centres


class BEVProjection(nn.Module):
    """(features (B, C, h, w) of an image of `image_hw`, K (B, 3, 3), height (B,)) ->
    BEV features (B, C, rows, cols) and visibility mask (B, 1, rows, cols)."""

    def __init__(self, image_hw: tuple[int, int], rows: int, cols: int, cell_m: float,
                 camera_pitch_rad: float = 0.0, camera_forward_m: float = 0.0):
        super().__init__()
        self.image_h, self.image_w = int(image_hw[0]), int(image_hw[1])
        self.register_buffer("cells_xy", bev_cell_centres(rows, cols, cell_m), persistent=False)
        self.cos_pitch = math.cos(camera_pitch_rad)
        self.sin_pitch = math.sin(camera_pitch_rad)
        self.camera_forward_m = float(camera_forward_m)

    def image_coordinates(self, intrinsics: torch.Tensor, camera_height_m: torch.Tensor):
        """Pixel (u, v) of every BEV cell, (B, rows, cols) each, and its visibility."""
        forward = self.cells_xy[..., 0] - self.camera_forward_m       # (rows, cols)
        left = self.cells_xy[..., 1]
        h = camera_height_m.reshape(-1, 1, 1)
        # Camera frame (OpenCV: x right, y down, z forward) before the pitch ...
        x_cam = -left
        y_cam = h.expand(-1, *forward.shape)
        z_cam = forward.expand_as(y_cam)
        # ... then pitched down about the camera x axis.
        z_p = z_cam * self.cos_pitch + y_cam * self.sin_pitch
        y_p = y_cam * self.cos_pitch - z_cam * self.sin_pitch
        depth = torch.clamp(z_p, min=1e-3)
        k = intrinsics.reshape(-1, 3, 3)
        fx, fy = k[:, 0, 0].reshape(-1, 1, 1), k[:, 1, 1].reshape(-1, 1, 1)
        cx, cy, skew = k[:, 0, 2].reshape(-1, 1, 1), k[:, 1, 2].reshape(-1, 1, 1), k[:, 0, 1].reshape(-1, 1, 1)
        u = (fx * x_cam + skew * y_p) / depth + cx
        v = fy * y_p / depth + cy
        visible = (z_p > 0.1) & (u >= -0.5) & (u <= self.image_w - 0.5) & (v >= -0.5) & (v <= self.image_h - 0.5)
        return u, v, visible

    def forward(self, features: torch.Tensor, intrinsics: torch.Tensor, camera_height_m: torch.Tensor):
        u, v, visible = self.image_coordinates(intrinsics, camera_height_m)
        # Pixel centres at integers (OpenCV); features cover the image (align_corners=False).
        grid = torch.stack(((u + 0.5) / self.image_w * 2 - 1, (v + 0.5) / self.image_h * 2 - 1), dim=-1)
        grid = torch.where(visible.unsqueeze(-1), grid, torch.full_like(grid, -2.0))
        bev = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        mask = visible.unsqueeze(1).to(features.dtype)
        return bev * mask, mask
