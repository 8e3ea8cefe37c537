"""Iterative dense-flow refinement with per-cell confidence (RAFT update, seed 002 §3.2).

Each BEV cell carries its current match p^ on the satellite (map offsets). An update step
reads the correlation pyramid around p^, encodes it with the displacement accumulated so
far, updates a convolutional GRU whose hidden state starts from the ground view's context
features, and emits a displacement of p^ (in fine cells) and a match confidence logit.
The GRU, widths and iteration count are scaled-down RAFT (paper: 12 iterations).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvGRU(nn.Module):
    """GRU over a feature map: 1x1 update/reset gates, 3x3 candidate (a lighter RAFT ConvGRU)."""

    def __init__(self, hidden_dim: int, input_dim: int):
        super().__init__()
        self.gates = nn.Conv2d(hidden_dim + input_dim, 2 * hidden_dim, 1)
        self.convq = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat((h, x), dim=1))).chunk(2, dim=1)
        q = torch.tanh(self.convq(torch.cat((r * h, x), dim=1)))
        return (1 - z) * h + z * q


class FlowUpdateBlock(nn.Module):
    """(hidden, context, correlation samples, accumulated displacement) -> (hidden, delta, confidence logit)."""

    def __init__(self, corr_channels: int, context_dim: int, hidden_dim: int, motion_dim: int = 32):
        super().__init__()
        self.corr = nn.Conv2d(corr_channels, 48, 1)
        self.flow = nn.Conv2d(2, 16, 3, padding=1)
        self.motion = nn.Conv2d(48 + 16, motion_dim - 2, 3, padding=1)
        self.gru = ConvGRU(hidden_dim, motion_dim + context_dim)
        self.flow_head = nn.Sequential(nn.Conv2d(hidden_dim, 32, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(32, 2, 1))
        self.confidence_head = nn.Sequential(nn.Conv2d(hidden_dim, 16, 1), nn.ReLU(inplace=True),
                                             nn.Conv2d(16, 1, 1))

    def forward(self, hidden, context, corr_samples, displacement):
        c = F.relu(self.corr(corr_samples))
        f = F.relu(self.flow(displacement))
        motion = torch.cat((F.relu(self.motion(torch.cat((c, f), dim=1))), displacement), dim=1)
        hidden = self.gru(hidden, torch.cat((motion, context), dim=1))
        return hidden, self.flow_head(hidden), self.confidence_head(hidden)
