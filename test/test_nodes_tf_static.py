"""Sensor mounting from /tf_static over real DDS (issue 14): with base_link -> camera (1.5 m ahead,
3 deg pitch) and base_link -> gnss (1 m behind) latched on /tf_static, the filter node's lever
arms and the cross-view node's height and pitch are those, and /diagnostics says where they came
from; frames named by the messages (camera_info, NavSatFix) resolve, an optical one included;
without /tf_static, or with mounting_source parameters, the parameters stay."""
import math

import pytest
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import CameraInfo

from cvgl_ros.nodes.runner import RESULT_QOS
from cvgl_ros.nodes.tf import TF_STATIC_QOS
from test_localization_mounting import optical_quaternion, quaternion
from test_nodes_filter_node import T0, Harness
from test_nodes_support import LiveNodes, shipped_model, write_tiles

TFMessage = pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built: run `make setup`").TFMessage

pytestmark = pytest.mark.ros

CAMERA = ("base_link", "camera", (1.5, 0.0, 1.8), quaternion(pitch_deg=3.0))
ANTENNA = ("base_link", "gnss", (-1.0, 0.0, 1.9), (0.0, 0.0, 0.0, 1.0))


def tf_static_msg(*transforms) -> "TFMessage":
    out = []
    for parent, child, t, q in transforms:
        tf = TransformStamped()
        tf.header.frame_id, tf.child_frame_id = parent, child
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = t
        tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z, tf.transform.rotation.w = q
        out.append(tf)
    return TFMessage(transforms=out)


def latch(node, *transforms):
    """A publisher on /tf_static (transient local, as static_transform_publisher) holding `transforms`."""
    pub = node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    pub.publish(tf_static_msg(*transforms))
    return pub


def lever_arms(node) -> tuple:
    c = node.pf.config
    return c.camera_x_m, c.camera_y_m, c.antenna_x_m, c.antenna_y_m


def fresh_diag(h, predicate):
    """The filter node's newest /diagnostics values once `predicate(values)` holds."""
    from cvgl_ros.nodes.diagnostics import diagnostic_values

    def ok():
        return h.got["/diagnostics"] and predicate(diagnostic_values(h.got["/diagnostics"][-1], "particle_filter_node"))

    assert h.spin_until(ok), diagnostic_values(h.got["/diagnostics"][-1], "particle_filter_node")
    return diagnostic_values(h.got["/diagnostics"][-1], "particle_filter_node")


def test_the_filter_takes_its_lever_arms_from_tf_static_and_says_so():
    h = Harness(**{"filter.antenna_x_m": -0.5})  # a set parameter that disagrees with /tf_static
    try:
        h.tf_static = latch(h.probe, CAMERA, ANTENNA)
        assert h.spin_until(lambda: lever_arms(h.node) == pytest.approx((1.5, 0.0, -1.0, 0.0), abs=1e-9))
        d = fresh_diag(h, lambda d: d["mounting_source"].startswith("camera: tf_static"))
        assert d["mounting_source"] == ("camera: tf_static base_link -> camera (x 1.500 y 0.000 z 1.800 m, height "
                                        "1.800 m, roll 0.00 pitch 3.00 yaw 0.00 deg, body frame); antenna: tf_static "
                                        "base_link -> gnss (x -1.000 y 0.000 m)")
        assert d["mounting"] == ("filter.camera_x_m=1.5 filter.camera_y_m=0 filter.antenna_x_m=-1 "
                                 "filter.antenna_y_m=0")
        assert d["mounting_overrides"] == "antenna_x_m -0.5 -> -1"
        assert "/tf_static overrides the mounting parameters: antenna_x_m -0.5 -> -1" in d["recent_problems"]
        h.drive(3)  # the filter runs with them
        # a live `ros2 param set` of a lever arm /tf_static holds: /tf_static still wins
        from rclpy.parameter import Parameter

        assert h.node.set_parameters([Parameter("filter.antenna_x_m", value=-0.2)])[0].successful
        assert lever_arms(h.node)[2] == pytest.approx(-1.0)
        assert fresh_diag(h, lambda d: "-0.2" in d["mounting_overrides"])["mounting_overrides"] == \
            "antenna_x_m -0.2 -> -1"
    finally:
        h.close()


def test_frames_named_by_camera_info_and_navsatfix_resolve_an_optical_camera():
    h = Harness()
    try:
        h.tf_static = latch(h.probe, ("base_link", "cam_front_optical", (1.5, 0.3, 1.8), optical_quaternion(pitch_deg=3.0)),
                            ("base_link", "gps_antenna", (-1.0, 0.2, 1.9), (0.0, 0.0, 0.0, 1.0)))
        d = fresh_diag(h, lambda d: "mounting_source" in d)
        assert "camera: parameters (no transform from base_link to camera on /tf_static)" in d["mounting_source"]
        assert lever_arms(h.node) == (0.0, 0.0, 0.0, 0.0)
        info = CameraInfo()
        info.header.frame_id = "cam_front_optical"
        pub_info = h.probe.create_publisher(CameraInfo, "/camera/camera_info", RESULT_QOS)
        assert h.spin_until(lambda: pub_info.get_subscription_count() > 0)
        pub_info.publish(info)
        h.fix(0, frame_id="gps_antenna")
        assert h.spin_until(lambda: lever_arms(h.node) == pytest.approx((1.5, 0.3, -1.0, 0.2), abs=1e-9))
        d = fresh_diag(h, lambda d: "antenna: tf_static" in d["mounting_source"])
        assert "camera: tf_static base_link -> cam_front_optical (" in d["mounting_source"]
        assert "pitch 3.00 yaw 0.00 deg, optical frame" in d["mounting_source"]
        assert d["mounting_overrides"] == "none"
    finally:
        h.close()


def test_without_tf_static_or_with_mounting_source_parameters_the_parameters_stay():
    h = Harness(**{"filter.camera_x_m": 0.7, "filter.antenna_x_m": -0.4})
    try:
        h.drive(3)
        d = fresh_diag(h, lambda d: "mounting_source" in d)
        assert lever_arms(h.node) == (0.7, 0.0, -0.4, 0.0)
        assert d["mounting_source"] == ("camera: parameters (no transform from base_link to camera on /tf_static); "
                                        "antenna: parameters (no transform from base_link to gnss on /tf_static)")
        assert d["mounting"] == "filter.camera_x_m=0.7 filter.camera_y_m=0 filter.antenna_x_m=-0.4 filter.antenna_y_m=0"
    finally:
        h.close()
    h = Harness(mounting_source="parameters", **{"filter.camera_x_m": 0.7})
    try:
        h.tf_static = latch(h.probe, CAMERA, ANTENNA)
        h.drive(3)
        d = fresh_diag(h, lambda d: "mounting_source" in d)
        assert lever_arms(h.node) == (0.7, 0.0, 0.0, 0.0)
        assert d["mounting_source"] == ("camera: parameters (mounting_source is parameters); "
                                        "antenna: parameters (mounting_source is parameters)")
        assert not h.node.mounting.subscriptions
    finally:
        h.close()


def test_the_cross_view_node_takes_height_and_pitch_from_tf_static(tmp_path):
    live = LiveNodes(write_tiles(tmp_path / "tiles.mbtiles"), shipped_model())
    try:
        card_height = live.cross_view.estimator.camera_height_m
        assert card_height != pytest.approx(1.8)
        assert live.wait(lambda: "mounting_source" in live.last_diag("cross_view_node"), 20)
        assert live.last_diag("cross_view_node")["mounting_source"].startswith("camera: parameters (no transform")
        live.tf_static = latch(live.probe, CAMERA, ANTENNA)
        settings = lambda: live.cross_view.frames.settings  # noqa: E731
        assert live.wait(lambda: math.isclose(settings().camera_pitch_deg, 3.0, abs_tol=1e-9), 20)
        assert settings().camera_roll_deg == pytest.approx(0.0, abs=1e-9)
        assert live.cross_view.estimator.camera_height_m == pytest.approx(1.8)
        assert live.cross_view.camera_height_m == pytest.approx(1.8)  # the overlay's too
        assert live.wait(lambda: lever_arms(live.filter) == pytest.approx((1.5, 0.0, -1.0, 0.0)), 20)
        assert live.wait(lambda: live.last_diag("cross_view_node")["mounting_source"].startswith("camera: tf_static"), 20)
        d = live.last_diag("cross_view_node")
        assert d["mounting"] == "camera_mount_height_m=1.8 camera_roll_deg=0 camera_pitch_deg=3"
        assert "antenna" not in d["mounting_source"]
        live.fix(T0)
        assert live.frame(T0 + 100_000_000).message == "processed"  # a frame runs with them
    finally:
        live.close()
