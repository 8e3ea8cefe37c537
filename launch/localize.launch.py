"""Launch the cvgl_ros localization pipeline on a real ROS 2 install.

    ros2 launch cvgl_ros localize.launch.py [params_file:=...] [use_sim_time:=true]

Starts the cross-view node and the particle-filter node with the shared parameter file
(config/cvgl.yaml; set `tiles`, `model` and `datum` there or with params_file:=...), the
sensor topics remappable, and `use_sim_time` for bag replays. RViz: rviz/cvgl.rviz. `cvgl launch` starts the same executables with the same file where the
`launch` package is not available (see README).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "cvgl_ros"
# The executables this launch file starts; `cvgl launch` reads the same list.
NODE_EXECUTABLES = ("cross_view_node", "particle_filter_node")
PARAMS_FILE = "config/cvgl.yaml"


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    remappings = [
        ("/camera/image_raw", LaunchConfiguration("image_topic")),
        ("/camera/image_raw/compressed", LaunchConfiguration("compressed_image_topic")),
        ("/camera/camera_info", LaunchConfiguration("camera_info_topic")),
        ("/gnss/fix", LaunchConfiguration("gnss_topic")),
    ]
    nodes = [
        Node(
            package=PACKAGE,
            executable=executable,
            name=executable,
            output="screen",
            parameters=[params_file, {"use_sim_time": use_sim_time}],
            remappings=remappings,
        )
        for executable in NODE_EXECUTABLES
    ]
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, PARAMS_FILE),
                              description="YAML parameter file for both nodes"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag)"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("compressed_image_topic", default_value="/camera/image_raw/compressed"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info"),
        DeclareLaunchArgument("gnss_topic", default_value="/gnss/fix"),
        *nodes,
    ])
