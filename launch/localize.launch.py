"""Launch the cvgl_ros localization pipeline on a real ROS 2 install.

    ros2 launch cvgl_ros localize.launch.py [params_file:=...] [use_sim_time:=true]
        [namespace:=car1] [log_level:=debug] [rviz:=true] [image_topic:=...] ...

Starts the cross-view node and the particle-filter node with the shared parameter file
(config/cvgl.yaml; set `tiles`, `model` and `datum` there or with params_file:=...), the
sensor topics remappable, and `use_sim_time` for bag replays. `namespace` puts both nodes
and their topics under one namespace (`car1`: /car1/cvgl/pose, /car1/gnss/fix, ...; a
second instance beside the first; /diagnostics stays shared), `log_level` sets their ROS log
level, `rviz:=true` also starts RViz with rviz/cvgl.rviz (rviz2 must be installed; it is
not a dependency of a vehicle). `cvgl launch` starts the same executables with the same
file where the `launch` package is not available (see README): both take the executables,
the parameter file and the log levels from `cvgl_ros.nodes.launcher`.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cvgl_ros.nodes.launcher import LOG_LEVELS, NODE_EXECUTABLES, PARAMS_FILE
from cvgl_ros.share import PACKAGE

RVIZ_CONFIG = "rviz/cvgl.rviz"


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    namespace = LaunchConfiguration("namespace")
    log_level = LaunchConfiguration("log_level")
    # The nodes' topic names are relative, so they live under `namespace`; so do these
    # defaults (a topic given with a leading / is taken as it is).
    remappings = [
        ("camera/image_raw", LaunchConfiguration("image_topic")),
        ("camera/image_raw/compressed", LaunchConfiguration("compressed_image_topic")),
        ("camera/camera_info", LaunchConfiguration("camera_info_topic")),
        ("gnss/fix", LaunchConfiguration("gnss_topic")),
    ]
    nodes = [
        Node(
            package=PACKAGE,
            executable=executable,
            name=executable,
            namespace=namespace,
            output="screen",
            parameters=[params_file, {"use_sim_time": use_sim_time}],
            remappings=remappings,
            arguments=["--ros-args", "--log-level", log_level],
        )
        for executable in NODE_EXECUTABLES
    ]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=namespace,
        output="screen",
        arguments=["-d", os.path.join(share, RVIZ_CONFIG)],
        parameters=[{"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, PARAMS_FILE),
                              description="YAML parameter file for both nodes"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of both nodes (empty: the root namespace)"),
        DeclareLaunchArgument("log_level", default_value="info", choices=list(LOG_LEVELS),
                              description="ROS log level of both nodes"),
        DeclareLaunchArgument("rviz", default_value="false", choices=["true", "false"],
                              description="also start RViz with rviz/cvgl.rviz"),
        DeclareLaunchArgument("image_topic", default_value="camera/image_raw"),
        DeclareLaunchArgument("compressed_image_topic", default_value="camera/image_raw/compressed"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera/camera_info"),
        DeclareLaunchArgument("gnss_topic", default_value="gnss/fix"),
        *nodes,
        rviz,
    ])
