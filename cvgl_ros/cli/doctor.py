"""`cvgl doctor`: what this machine offers cvgl_ros (Python, ROS 2, ONNX Runtime, torch, GPU)."""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> dict:
    """Everything doctor reports, as a dict (also used by the benchmark JSON)."""
    info: dict = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import rclpy  # noqa: F401
        from rclpy.utilities import get_rmw_implementation_identifier

        info["rclpy"] = _version("ros-rclpy") or "present"
        info["rmw_implementation"] = get_rmw_implementation_identifier()
        info["ros_domain_id"] = os.environ.get("ROS_DOMAIN_ID", "0")
    except Exception as exc:  # noqa: BLE001 - doctor reports, never fails
        info["rclpy"] = f"unavailable ({exc.__class__.__name__}: {exc})"
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
        info["onnxruntime_device"] = ort.get_device()
    except Exception as exc:  # noqa: BLE001
        info["onnxruntime"] = f"unavailable ({exc.__class__.__name__})"
    torch_version = _version("torch")
    if torch_version:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
    else:
        info["torch"] = "not installed (only needed for training and export)"
    info["tensorrt"] = _version("tensorrt") or "not installed (optional, GPU vehicles)"
    for dist in ("numpy", "opencv-python-headless", "pyproj", "rosbags", "flwr"):
        info[dist] = _version(dist) or "not installed"
    return info


def run(args) -> int:
    for key, value in collect().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:24s} {value}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="report Python, ROS 2/RMW, ONNX Runtime providers, torch/CUDA/TensorRT")
    p.set_defaults(func=run)
