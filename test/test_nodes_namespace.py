"""Under a namespace (what `ros2 launch cvgl_ros localize.launch.py namespace:=car1` passes as
`-r __ns:=/car1`) the node processes read and publish every topic under it, so a second
instance can run beside the first; /diagnostics stays shared, with the namespace in the
status names."""
import signal
import subprocess
import time

import pytest

from cvgl_ros.cli.launch import namespace_ros_args
from cvgl_ros.nodes import launcher
from test_nodes_support import DATUM, REPO, Probe

pytestmark = pytest.mark.ros


def test_a_namespace_moves_every_topic_but_diagnostics():
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    from cvgl_ros.nodes.diagnostics import diagnostic_values

    params = REPO / "config" / "cvgl.yaml"
    procs = [subprocess.Popen(launcher.node_command(exe) + launcher.ros_args(params, {"diagnostics_period_s": 0.2},
                                                                              namespace_ros_args("car1")),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for exe in launcher.NODE_EXECUTABLES]
    probe = Probe({"/car1/cvgl/pose": PoseWithCovarianceStamped, "/cvgl/pose": PoseWithCovarianceStamped,
                   "/diagnostics": DiagnosticArray})
    gnss = probe.node.create_publisher(NavSatFix, "/car1/gnss/fix", 10)
    try:
        ok = probe.wait_for(lambda r: any(diagnostic_values(m, "car1/particle_filter_node") for m in r["/diagnostics"])
                            and any(diagnostic_values(m, "car1/cross_view_node") for m in r["/diagnostics"]), 60)
        assert ok, "both nodes report on the shared /diagnostics under their namespaced names"
        names = {(n, ns) for n, ns in probe.node.get_node_names_and_namespaces()}
        assert {("cross_view_node", "/car1"), ("particle_filter_node", "/car1")} <= names
        published = {t for t, _ in probe.node.get_publisher_names_and_types_by_node("cross_view_node", "/car1")}
        published |= {t for t, _ in probe.node.get_publisher_names_and_types_by_node("particle_filter_node", "/car1")}
        subscribed = {t for t, _ in probe.node.get_subscriber_names_and_types_by_node("cross_view_node", "/car1")}
        subscribed |= {t for t, _ in probe.node.get_subscriber_names_and_types_by_node("particle_filter_node", "/car1")}
        assert {"/car1/cvgl/pose", "/car1/cvgl/likelihood", "/car1/cvgl/odometry", "/car1/cvgl/datum",
                "/car1/cvgl/cross_view/frame_status", "/diagnostics"} <= published
        assert {"/car1/gnss/fix", "/car1/camera/image_raw", "/car1/camera/camera_info", "/car1/cvgl/likelihood",
                "/car1/cvgl/pose", "/car1/cvgl/datum"} <= subscribed
        assert not {t for t in published | subscribed if t.startswith("/cvgl/") or t.startswith("/gnss/")}
        # data flows inside the namespace: GNSS fixes in, fused poses out, nothing in the root one
        deadline = time.monotonic() + 30
        while gnss.get_subscription_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stamp_s = int(time.time())
        for i in range(15):
            fix = NavSatFix()
            fix.header.stamp.sec, fix.header.stamp.nanosec = stamp_s + i // 5, (i % 5) * 200_000_000
            fix.header.frame_id = "gnss"
            fix.status.status = NavSatStatus.STATUS_FIX
            fix.latitude, fix.longitude, fix.altitude = DATUM.lat_deg, DATUM.lon_deg + i * 1e-6, DATUM.alt_m
            fix.position_covariance = [4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 16.0]
            fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
            gnss.publish(fix)
            time.sleep(0.05)
        assert probe.wait_for(lambda r: r["/car1/cvgl/pose"], 30), "the namespaced filter fuses the namespaced fixes"
        assert probe.received["/cvgl/pose"] == []
    finally:
        probe.close()
        for p in procs:
            p.send_signal(signal.SIGINT)
        outs = [p.communicate(timeout=30)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out


def test_cvgl_launch_passes_namespace_and_log_level_and_refuses_a_bad_namespace(cvgl_bin):
    out = subprocess.run([cvgl_bin, "launch", "--dry-run", "--namespace", "car1", "--log-level", "debug"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.strip().splitlines():
        assert "-r __ns:=/car1" in line and "--log-level debug" in line
    bad = subprocess.run([cvgl_bin, "launch", "--dry-run", "--namespace", "1car"], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "namespace" in bad.stderr
