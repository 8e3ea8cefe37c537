"""Torch-free inference of exported pose networks (ONNX Runtime: TensorRT -> CUDA -> CPU).

What the cross-view node calls: `PoseEstimator(model_path, ...)`, `.card`, `.estimate(...)`
returning a `PoseResult` (likelihood volume in map coordinates, refined pose, covariance).
This package must never import torch (a test runs it with torch blocked).
"""
from cvgl_ros.runtime.card import read_card, sha256_file
from cvgl_ros.runtime.estimator import PoseEstimator, PoseResult, Prior

__all__ = ["PoseEstimator", "PoseResult", "Prior", "read_card", "sha256_file"]
