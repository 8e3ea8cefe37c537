"""package.xml declares every import of the vehicle path under a rosdep key, so that
`rosdep install --from-paths src` gives a vehicle all it needs; nothing on that path needs a
package without a key (mercantile has none). requirements/runtime.txt pins what the nodes need
and nothing else; the offline tools' imports are pinned in offline.txt or training.txt."""
import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

REPO = Path(__file__).resolve().parents[1]
# What runs on a vehicle: the nodes and what they call, `cvgl launch`, `cvgl replay`, `cvgl doctor`.
VEHICLE_PACKAGES = ("nodes", "runtime", "tiles", "filter", "geo", "localization", "replay", "retrieval")
VEHICLE_FILES = ("__init__.py", "imaging.py", "likelihood.py", "atomic.py", "share.py", "errors.py", "config.py",
                 "cli/__init__.py", "cli/main.py", "cli/args.py", "cli/launch.py", "cli/replay.py", "cli/doctor.py")
# Python modules -> their rosdep key (checked with `rosdep resolve` for jazzy and kilted on
# ubuntu:noble, see README). ROS packages are imported under their own name, which is the key.
ROSDEP_KEY = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "pyproj": "python3-pyproj",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "pydantic": "python3-pydantic",
    "scipy": "python3-scipy",
    "onnxruntime": "python3-onnxruntime-pip",
    "simplejpeg": "python3-simplejpeg-pip",
    "rosbags": "python3-rosbags-pip",
    "tf2_ros": "tf2_ros_py",  # the ROS package tf2_ros_py holds the Python module tf2_ros
}
# Imported on the vehicle path only where they are optional, with why.
OPTIONAL = {
    "torch": "cvgl doctor reports it when present",
    "tensorrt": "GPU vehicles only (requirements/gpu.txt)",
    "rasterio": "tiles/geotiff.py: `cvgl tiles import-geotiff`, an offline tool",
    "filterpy": "filter/kalman_baseline.py: the evaluation's Kalman baseline, not the vehicle filter",
}


# ROS packages with no wheel: tf2_msgs is built at set-up (tools/build_tf2_msgs.sh, pinned in
# requirements/tf2_msgs.txt); tf2_ros is a real ROS install's, used where it imports.
NOT_FROM_PIP = {"tf2_msgs", "tf2_ros"}

# The pip distribution of an import, where the two names differ.
PIP_NAME = {"cv2": "opencv-python-headless", "yaml": "pyyaml"}


def vehicle_sources() -> list[Path]:
    files = [f for pkg in VEHICLE_PACKAGES for f in sorted((REPO / "cvgl_ros" / pkg).glob("*.py"))]
    files += [REPO / "cvgl_ros" / f for f in VEHICLE_FILES]
    files += sorted((REPO / "cvgl_ros" / "datasets").glob("bag*.py"))
    return [f for f in files if f.is_file()]


def third_party_imports(files) -> dict[str, set[str]]:
    """{top-level module: files importing it} for every non-stdlib, non-cvgl_ros import."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "cvgl_ros":
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def exec_depends() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip() for tag in ("exec_depend", "depend") for e in root.iter(tag)}


def test_every_vehicle_import_is_an_exec_depend_under_its_rosdep_key():
    declared = exec_depends()
    imports = third_party_imports(vehicle_sources())
    assert {"numpy", "cv2", "rclpy", "onnxruntime"} <= set(imports)  # the scan sees the real code
    missing = {mod: sorted(files) for mod, files in imports.items()
               if mod not in OPTIONAL and ROSDEP_KEY.get(mod, mod) not in declared}
    assert not missing, f"imports without an exec_depend in package.xml: {missing}"


def test_the_vehicle_path_needs_no_package_without_a_rosdep_key():
    imports = third_party_imports(vehicle_sources())
    assert "mercantile" not in imports, imports.get("mercantile")
    # the launch file and the share lookup need these ROS packages on a real install
    assert {"launch", "launch_ros", "ament_index_python", "builtin_interfaces", "rcl_interfaces"} <= exec_depends()


def test_training_simulation_and_federated_extras_are_not_vehicle_dependencies():
    declared = exec_depends()
    for key in ("python3-torch", "python3-torch-pip", "python3-flwr-pip", "python3-rasterio", "python3-filterpy-pip",
                "python3-matplotlib"):
        assert key not in declared, key


def pinned(requirement_file: str) -> set[str]:
    """The distributions a requirements file pins (`name==version` lines), lower case."""
    lines = (REPO / "requirements" / requirement_file).read_text().splitlines()
    return {line.split("==")[0].strip().lower() for line in lines if "==" in line and not line.startswith("#")}


def pip_names(modules) -> set[str]:
    """The pip distributions of imported modules, without ROS packages (ros-* wheels, ROS's own)."""
    ros = {name for name in pinned("constraints.txt") if name.startswith("ros-")}
    return {PIP_NAME.get(m, m).lower() for m in modules if f"ros-{m.replace('_', '-')}" not in ros}


def test_runtime_requirements_pin_what_the_vehicle_path_imports_and_nothing_else():
    imports = third_party_imports(vehicle_sources())
    needed = pip_names(m for m in imports if m not in OPTIONAL and m not in NOT_FROM_PIP)
    runtime = {name for name in pinned("runtime.txt") if not name.startswith("ros-")}
    assert {"numpy", "opencv-python-headless", "onnxruntime"} <= needed  # the scan sees the real code
    assert runtime == needed, f"pinned but not imported there: {sorted(runtime - needed)}; " \
                              f"imported but not pinned: {sorted(needed - runtime)}"


def test_every_import_of_the_offline_tools_is_pinned():
    everything = third_party_imports(sorted((REPO / "cvgl_ros").rglob("*.py")))
    pins = set().union(*(pinned(f) for f in ("runtime.txt", "offline.txt", "training.txt", "gpu.txt")))
    missing = {m: sorted(everything[m]) for m in everything if m not in NOT_FROM_PIP and pip_names([m]) - pins}
    assert not missing, f"imports pinned in no requirements file: {missing}"
    assert not pinned("offline.txt") & pinned("runtime.txt"), "a package pinned twice"


def cvgl_modules_imported(path: Path) -> set[str]:
    """Every cvgl_ros module a file imports (absolute or relative; `from cvgl_ros import sim` is cvgl_ros.sim)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "cvgl_ros" or m.startswith("cvgl_ros.")}


def test_the_filter_imports_nothing_from_the_simulator():
    """The vehicle's filter stands on its own: the simulated drives that test it live in test/support."""
    files = sorted((REPO / "cvgl_ros" / "filter").glob("*.py"))
    imported = {str(f.relative_to(REPO)): cvgl_modules_imported(f) for f in files}
    assert "cvgl_ros.geo.yaw" in set().union(*imported.values())  # the scan sees the real code
    from_sim = {f: sorted(m for m in mods if m == "cvgl_ros.sim" or m.startswith("cvgl_ros.sim."))
                for f, mods in imported.items()}
    assert not {f: m for f, m in from_sim.items() if m}, from_sim
