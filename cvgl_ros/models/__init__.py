"""The cross-view pose network of "Learning Dense Flow Field for Highly-accurate Cross-view
Camera Localization" (torch; training and export only, never imported by the runtime).

One file per stage: `ground_encoder`, `bev_projection`, `refine_block`, `satellite_encoder`,
`correlation` (all-pairs pyramid and the (yaw, y, x) volume), `flow_refinement`,
`pose_solver` (Procrustes), `pose_network` (the wiring), `losses`; `config` holds sizes.
Seed 001's retrieval descriptors: `descriptor` (two SAFA-like encoders) and `geo_local_loss`.
"""
from cvgl_ros.models.config import FullConfig, PoseNetConfig, TrainConfig, load_config
from cvgl_ros.models.pose_network import ENCODER_MODULES, ExportedPoseNet, PoseNet

__all__ = ["ENCODER_MODULES", "ExportedPoseNet", "FullConfig", "PoseNet", "PoseNetConfig", "TrainConfig",
           "load_config"]
