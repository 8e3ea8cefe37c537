"""Where the package's data lives: the share directory with config/, launch/, models/, rviz/.

One lookup for every caller (the nodes' default model, `cvgl launch`'s parameter file,
`cvgl doctor`). A directory is the share directory when it holds this package's
`package.xml`; the first of these that does wins:

1. `ament_index`: `ament_index_python.get_package_share_directory("cvgl_ros")`, i.e. the
   prefix on `AMENT_PREFIX_PATH` whose `share/ament_index/resource_index/packages/cvgl_ros`
   marker exists (a sourced `colcon build` or apt install), then `<prefix>/share/cvgl_ros`;
2. `install prefix`: the prefix this module is installed under, found by walking up from
   `.../lib/pythonX.Y/site-packages/cvgl_ros/` (an unsourced colcon install);
3. `source checkout`: the repository root above this file (a clone, `pip install -e .`);
4. `sys.prefix`: `<sys.prefix>/share/cvgl_ros` (a wheel's data_files in a venv).

`ament_index_python` is imported only when present: the ROS-free core runs without it.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "cvgl_ros"
PARAMS_FILE = "config/cvgl.yaml"
MODELS_DIR = "models"
DEFAULT_MODEL = "cvgl_pose.onnx"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ShareDir:
    """A share directory and how it was found (one of the four ways in the module docstring)."""

    path: Path
    found_by: str


def _is_share(path: Path) -> bool:
    return (path / "package.xml").is_file()


def _from_ament_index() -> Path | None:
    """`get_package_share_directory`, or None without ament_index_python, AMENT_PREFIX_PATH or a marker."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE, print_warning=False))
    except (PackageNotFoundError, EnvironmentError, ValueError):
        return None


def _from_install_prefix() -> Path | None:
    """`<prefix>/share/cvgl_ros` of the prefix whose lib/ holds this module (not the checkout)."""
    site = Path(__file__).resolve().parents[1]
    if site.name not in ("site-packages", "dist-packages"):
        return None  # a source checkout or an editable install
    for parent in site.parents:
        if parent.name in ("lib", "lib64"):
            return parent.parent / "share" / PACKAGE
    return None


def share_candidates() -> list[ShareDir]:
    """Every place looked at, in order (existing or not): what `cvgl doctor` lists."""
    found = [
        ShareDir(_from_ament_index(), "ament_index"),
        ShareDir(_from_install_prefix(), "install prefix"),
        ShareDir(SOURCE_ROOT, "source checkout"),
        ShareDir(Path(sys.prefix) / "share" / PACKAGE, "sys.prefix"),
    ]
    return [c for c in found if c.path is not None]


def find_share() -> ShareDir | None:
    """The first candidate that holds package.xml, or None (nothing installed, no checkout)."""
    for candidate in share_candidates():
        if _is_share(candidate.path):
            return candidate
    return None


def share_dir() -> Path | None:
    """The package's share directory (see the module docstring), or None."""
    found = find_share()
    return found.path if found else None


def default_model_path() -> Path | None:
    """The shipped model in the share directory: models/cvgl_pose.onnx, else the first
    models/*.onnx by name; None when there is none."""
    share = share_dir()
    if share is None:
        return None
    models = share / MODELS_DIR
    if (models / DEFAULT_MODEL).is_file():
        return models / DEFAULT_MODEL
    found = sorted(models.glob("*.onnx"))
    return found[0] if found else None


def default_descriptor_path() -> Path | None:
    """The shipped geo-local descriptor model's card (models/retrieval/local/descriptor.json), or None."""
    share = share_dir()
    card = share / MODELS_DIR / "retrieval" / "local" / "descriptor.json" if share else None
    return card if card is not None and card.is_file() else None


def default_config_path() -> Path | None:
    """config/cvgl.yaml of the share directory, or None."""
    share = share_dir()
    if share is None or not (share / PARAMS_FILE).is_file():
        return None
    return share / PARAMS_FILE


def ament_prefix_path() -> list[str]:
    """The prefixes AMENT_PREFIX_PATH names (empty when unset), for reports."""
    return [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
