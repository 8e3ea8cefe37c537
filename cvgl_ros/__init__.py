"""cvgl_ros: onboard cross-view geo-localization for vehicles on ROS 2.

The ROS-free core lives in the sub-packages (geo, tiles, sim, datasets, filter, models,
train, federated, runtime, evaluation); `cvgl_ros.nodes` is the thin rclpy layer.
"""
__version__ = "0.1.0"
