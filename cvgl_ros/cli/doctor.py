"""`cvgl doctor`: what this machine offers cvgl_ros (Python, ROS 2, ONNX Runtime, torch, GPU)
and which files the nodes would use: the share directory (and whether the ament index finds
it), the default parameter file and model."""
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
    except Exception as exc:  # noqa: BLE001 - doctor reports, never fails
        info["rclpy"] = f"unavailable ({exc.__class__.__name__}: {exc})"
    info["ros_distro"] = os.environ.get("ROS_DISTRO") or "unset (no ROS 2 setup sourced)"
    info["ros_domain_id"] = os.environ.get("ROS_DOMAIN_ID") or "unset (domain 0)"
    info["ros_discovery_range"] = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") or "unset (SUBNET)"
    info["tf"] = _tf_info()
    info.update(_share_info())
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
    info["numpy"] = _module_version("numpy")
    info["opencv"] = _module_version("cv2")  # pip's opencv-python* or apt's python3-opencv alike
    try:
        from cvgl_ros.tiles.patch import WARP_HINT_KWARGS

        info["opencv_warp_hint"] = "ALGO_HINT_APPROX" if WARP_HINT_KWARGS else "none (OpenCV < 5: plain warpAffine)"
    except Exception as exc:  # noqa: BLE001
        info["opencv_warp_hint"] = f"unavailable ({exc.__class__.__name__}: {exc})"
    for dist in ("pyproj", "simplejpeg", "rosbags", "flwr"):
        info[dist] = _version(dist) or "not installed"
    return info


def _tf_info() -> str:
    """How the filter node would publish /tf and read /tf_static (cvgl_ros/nodes/tf.py)."""
    try:
        from cvgl_ros.nodes import tf
    except Exception as exc:  # noqa: BLE001 - no rclpy or no geometry_msgs: the nodes cannot run either
        return f"unavailable ({exc.__class__.__name__}: {exc})"
    if tf.tf2_ros is not None:
        return "tf2_ros (TransformBroadcaster, Buffer and TransformListener)"
    if tf.TFMessage is not None:
        return "tf2_msgs only (TFMessage on /tf, /tf_static read directly; no tf2_ros)"
    return tf.TF_UNAVAILABLE


def _module_version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except Exception as exc:  # noqa: BLE001
        return f"unavailable ({exc.__class__.__name__}: {exc})"


def _share_info() -> dict:
    """The share directory, how it was found, and the parameter file and model the nodes use."""
    from cvgl_ros import share

    found = share.find_share()
    ament = next((c for c in share.share_candidates() if c.found_by == "ament_index"), None)
    prefixes = share.ament_prefix_path()
    return {
        "ament_prefix_path": os.pathsep.join(prefixes) if prefixes else "unset",
        "ament_index_share": str(ament.path) if ament else "not found (cvgl_ros not on AMENT_PREFIX_PATH)",
        "share_dir": f"{found.path} ({found.found_by})" if found else "not found",
        "params_file": str(share.default_config_path() or "not found (pass --params)"),
        "model": str(share.default_model_path() or "not found (set the `model` parameter)"),
    }


def run(args) -> int:
    for key, value in collect().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:24s} {value}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="report Python, ROS 2/RMW, OpenCV/numpy, ONNX Runtime providers, "
                                             "torch/CUDA/TensorRT and the share directory, config and model in use")
    p.set_defaults(func=run)
