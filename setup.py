"""ament_python package definition of cvgl_ros.

`colcon build` installs the package, its executables under lib/cvgl_ros (see setup.cfg)
and launch/, config/, rviz/, models/ under share/cvgl_ros, where `cvgl_ros.share` finds
them (test/test_package_build.py builds it and runs the nodes from the install). The
Makefile installs the same package into .venv with pip.
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "cvgl_ros"


def share(folder, pattern="*"):
    files = [f for f in glob(f"{folder}/{pattern}") if os.path.isfile(f) and not f.endswith(".gitkeep")]
    return (f"share/{PACKAGE}/{folder}", files)


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={"cvgl_ros.federated": ["app/pyproject.toml"]},  # the Flower app `cvgl federated` runs
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("launch", "*.launch.py"),
        share("config", "*.yaml"),
        share("rviz", "*.rviz"),
        share("models"),
        share("models/retrieval/local"),    # the descriptor models of the coarse stage (seed 001)
        share("models/retrieval/global"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="cvgl_ros developers",
    maintainer_email="cvgl@example.com",
    description="Onboard cross-view geo-localization for vehicles on ROS 2",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},  # colcon test runs pytest for this (setuptools dropped tests_require)
    entry_points={
        "console_scripts": [
            "cvgl = cvgl_ros.cli.main:main",
            "cross_view_node = cvgl_ros.nodes.cross_view_node:main",
            "particle_filter_node = cvgl_ros.nodes.particle_filter_node:main",
        ],
    },
)
