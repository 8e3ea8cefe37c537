"""The thin rclpy layer: two nodes that convert messages, call the ROS-free core and publish.

- `cross_view_node`: camera + satellite patch around the prior -> /cvgl/likelihood.
- `particle_filter_node`: /gnss/fix + /cvgl/likelihood -> /cvgl/pose and friends.
- `conversions`, `parameters`, `diagnostics`, `overlay`, `runner`, `launcher`: shared helpers.
"""
