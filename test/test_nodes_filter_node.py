"""The particle-filter node over real DDS: outputs, and bad GNSS input it survives."""
import math

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseWithCovarianceStamped
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import NavSatFix, PointCloud2

from cvgl_ros.likelihood import LikelihoodVolume
from cvgl_ros.nodes.conversions import pose_msg_to_xy_yaw, to_stamp, volume_to_cloud
from cvgl_ros.nodes.diagnostics import diagnostic_values
from cvgl_ros.nodes.particle_filter_node import ParticleFilterNode
from cvgl_ros.nodes.runner import RESULT_QOS
from test_nodes_support import DATUM

pytestmark = pytest.mark.ros  # real rclpy nodes over DDS (`-m "not ros"` leaves them out)

T0 = 1_700_000_000_000_000_000
OUTPUTS = {"/cvgl/pose": PoseWithCovarianceStamped, "/cvgl/fix": NavSatFix, "/cvgl/odometry": Odometry,
           "/cvgl/path": Path, "/cvgl/particles": PoseArray, "/diagnostics": DiagnosticArray}


class Harness:
    """The node and a probe in one context, spun by hand (deterministic, no threads)."""

    def __init__(self, **params):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter("datum", value=[DATUM.lat_deg, DATUM.lon_deg, DATUM.alt_m]),
                     Parameter("diagnostics_period_s", value=0.1), Parameter("path_period_s", value=0.0)]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.node = ParticleFilterNode(context=self.context, parameter_overrides=overrides)
        self.probe = rclpy.create_node("probe", context=self.context)
        self.got = {t: [] for t in OUTPUTS}
        for topic, cls in OUTPUTS.items():
            self.probe.create_subscription(cls, topic, self.got[topic].append, RESULT_QOS)
        self.pub_fix = self.probe.create_publisher(NavSatFix, "/gnss/fix", RESULT_QOS)
        self.pub_cloud = self.probe.create_publisher(PointCloud2, "/cvgl/likelihood", RESULT_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        assert self.spin_until(lambda: self.pub_fix.get_subscription_count() and self.pub_cloud.get_subscription_count())

    def spin_until(self, predicate, timeout_s=20.0):
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return False

    def fix(self, i, east=0.0, north=0.0, status=0, lat=None, stamp_ns=None, sigma=2.0, lon=None, frame_id=""):
        la, lo, al = DATUM.to_wgs84(east, north, 0.0)
        msg = NavSatFix()
        msg.header.frame_id = frame_id
        msg.header.stamp = to_stamp(stamp_ns if stamp_ns is not None else T0 + i * 200_000_000)
        msg.status.status = status
        msg.latitude = float(la) if lat is None else lat
        msg.longitude, msg.altitude = (float(lo) if lon is None else lon), float(al)
        msg.position_covariance = [sigma**2, 0.0, 0.0, 0.0, sigma**2, 0.0, 0.0, 0.0, 4 * sigma**2]
        msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
        n = len(self.got["/cvgl/pose"])
        self.pub_fix.publish(msg)
        return n

    def drive(self, n, start=0, speed=5.0):
        for i in range(start, start + n):
            before = self.fix(i, east=speed * 0.2 * i)
            assert self.spin_until(lambda: len(self.got["/cvgl/pose"]) > before), f"no pose after fix {i}"

    def diag(self):
        assert self.spin_until(lambda: bool(self.got["/diagnostics"]))
        return diagnostic_values(self.got["/diagnostics"][-1], "particle_filter_node")

    def close(self):
        self.node.close()
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def harness():
    h = Harness()
    yield h
    h.close()


def _all_finite(h):
    for msg in h.got["/cvgl/pose"]:
        e, n, yaw, cov = pose_msg_to_xy_yaw(msg)
        assert np.all(np.isfinite([e, n, yaw])) and np.all(np.isfinite(cov))
    for msg in h.got["/cvgl/fix"]:
        assert all(math.isfinite(v) for v in (msg.latitude, msg.longitude, msg.altitude))
        assert np.all(np.isfinite(msg.position_covariance))


def test_fixes_give_pose_fix_odometry_path_and_particles_in_map(harness):
    harness.drive(15)
    h = harness
    assert h.spin_until(lambda: all(h.got[t] for t in OUTPUTS))
    pose = h.got["/cvgl/pose"][-1]
    assert pose.header.frame_id == "map"
    e, n, _, cov = pose_msg_to_xy_yaw(pose)
    assert abs(e - 14.0) < 6.0 and abs(n) < 6.0  # fixes moved east at 5 m/s for 2.8 s
    assert cov[0, 0] > 0 and cov[1, 1] > 0
    odom = h.got["/cvgl/odometry"][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("map", "base_link")
    fused = h.got["/cvgl/fix"][-1]
    fe, fn, _ = DATUM.to_enu(fused.latitude, fused.longitude, fused.altitude)
    assert math.hypot(fe - e, fn - n) < 1e-3
    assert fused.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN
    assert 0 < len(h.got["/cvgl/particles"][-1].poses) <= 300
    assert len(h.got["/cvgl/path"][-1].poses) >= 2
    d = h.diag()
    assert float(d["ess"]) > 0 and d["initialized"] == "true" and float(d["rate_gnss_hz"]) > 0
    _all_finite(h)


def test_likelihood_cloud_moves_the_estimate(harness):
    h = harness
    h.drive(10, speed=0.0)
    before = pose_msg_to_xy_yaw(h.got["/cvgl/pose"][-1])
    ll = np.full((8, 40, 40), -30.0, np.float32)
    ll[:, 21:24, 21:24] = 0.0  # a peak 1.25 m east and south of the GNSS fixes (cells of 0.5 m)
    for j in range(10):
        stamp = T0 + 2_000_000_000 + j * 100_000_000
        cloud = volume_to_cloud(LikelihoodVolume(ll, 0.0, 0.0, 0.5, np.linspace(-np.pi, np.pi, 8, endpoint=False), stamp))
        n = len(h.got["/cvgl/pose"])
        h.pub_cloud.publish(cloud)
        assert h.spin_until(lambda: len(h.got["/cvgl/pose"]) > n)
        assert h.got["/cvgl/pose"][-1].header.stamp == cloud.header.stamp
    after = pose_msg_to_xy_yaw(h.got["/cvgl/pose"][-1])
    peak_e, peak_n = 0.5 * (22 - 19.5), -0.5 * (22 - 19.5)
    assert math.hypot(after[0] - peak_e, after[1] - peak_n) < 0.5 * math.hypot(before[0] - peak_e, before[1] - peak_n)


def test_a_late_likelihood_gives_a_pose_at_its_stamp_then_the_corrected_newest_pose(harness):
    h = harness
    h.drive(11, speed=0.0)  # fixes up to T0 + 2.0 s
    newest = h.got["/cvgl/pose"][-1]
    ll = np.full((8, 40, 40), -30.0, np.float32)
    ll[:, 21:24, 21:24] = 0.0  # a peak 1.25 m east and south of the fixes
    late = T0 + 1_900_000_000   # the frame was taken before the last fix, its likelihood comes after it
    cloud = volume_to_cloud(LikelihoodVolume(ll, 0.0, 0.0, 0.5, np.linspace(-np.pi, np.pi, 8, endpoint=False), late))
    n = len(h.got["/cvgl/pose"])
    h.pub_cloud.publish(cloud)
    assert h.spin_until(lambda: len(h.got["/cvgl/pose"]) >= n + 2)
    at_frame, corrected = h.got["/cvgl/pose"][n:n + 2]
    assert at_frame.header.stamp == cloud.header.stamp and corrected.header.stamp == newest.header.stamp
    peak = (0.5 * (22 - 19.5), -0.5 * (22 - 19.5))
    dist = lambda m: math.hypot(*(np.array(pose_msg_to_xy_yaw(m)[:2]) - peak))  # noqa: E731
    assert dist(corrected) < dist(newest), "the newest pose is corrected by the late likelihood"
    assert h.spin_until(lambda: h.diag().get("late_measurements") == "1")


@pytest.mark.parametrize("fault,expect", [
    ("nan", "non-finite position"),
    ("no_fix", "NO_FIX"),
    ("backwards", "stamp went backwards"),
])
def test_bad_fixes_are_reported_and_never_give_nan(harness, fault, expect):
    h = harness
    h.drive(8)
    n_before = len(h.got["/cvgl/pose"])
    if fault == "nan":
        h.fix(8, lat=float("nan"))
    elif fault == "no_fix":
        h.fix(8, status=-1)
    else:
        h.fix(8, east=5.0, stamp_ns=T0 - 5_000_000_000)  # 5 s before the first fix
    assert h.spin_until(lambda: expect in (diagnostic_values(h.got["/diagnostics"][-1], "particle_filter_node") or {})
                        .get("last_problem", "") if h.got["/diagnostics"] else False), f"no diagnostic {expect!r}"
    d = diagnostic_values(h.got["/diagnostics"][-1], "particle_filter_node")
    assert d["level"] == "1"  # WARN
    if fault != "backwards":
        assert len(h.got["/cvgl/pose"]) == n_before  # an unusable fix publishes nothing
    h.drive(5, start=20)  # still running: good fixes give poses again
    _all_finite(h)


def test_bad_likelihood_clouds_are_reported(harness):
    h = harness
    h.drive(5)
    cloud = volume_to_cloud(LikelihoodVolume(np.zeros((2, 4, 4), np.float32), 0, 0, 1.0, [0.0, 1.0], T0 + 10**9))
    cloud.header.frame_id = "odom"
    h.pub_cloud.publish(cloud)
    assert h.spin_until(lambda: h.got["/diagnostics"] and "expected 'map'" in
                        diagnostic_values(h.got["/diagnostics"][-1], "particle_filter_node")["last_problem"])
    cloud.header.frame_id = "map"
    cloud.data = bytes(cloud.data)[:-5]
    h.pub_cloud.publish(cloud)
    assert h.spin_until(lambda: "likelihood cloud ignored" in
                        diagnostic_values(h.got["/diagnostics"][-1], "particle_filter_node")["last_problem"])
    h.drive(3, start=10)
    _all_finite(h)


def test_out_of_range_parameter_is_a_one_line_error():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        from cvgl_ros.errors import InputError

        with pytest.raises(InputError, match="filter.num_particles") as info:
            ParticleFilterNode(context=context, parameter_overrides=[Parameter("filter.num_particles", value=3)])
        assert "\n" not in str(info.value)
        with pytest.raises(InputError, match="datum"):
            ParticleFilterNode(context=context, parameter_overrides=[Parameter("datum", value=[91.0, 0.0, 0.0])])
    finally:
        rclpy.try_shutdown(context=context)


def test_diagnostics_count_the_publishers_each_input_has_matched(harness):
    h = harness

    def latest(key):
        return (diagnostic_values(h.got["/diagnostics"][-1], "particle_filter_node") or {}).get(key) \
            if h.got["/diagnostics"] else None

    assert h.spin_until(lambda: latest("publishers_/gnss/fix") == "1" and latest("publishers_/cvgl/likelihood") == "1")
    h.probe.destroy_publisher(h.pub_fix)
    assert h.spin_until(lambda: latest("publishers_/gnss/fix") == "0"), "a gone GNSS publisher is not reported"
    assert latest("publishers_/cvgl/likelihood") == "1"


def test_particles_are_published_at_most_every_particles_period_s():
    h = Harness(particles_period_s=1.0)
    try:
        h.drive(16)  # fixes 0.2 s apart for 3 s: a pose each, particles once a second
        assert h.spin_until(lambda: len(h.got["/cvgl/particles"]) >= 4)
        h.spin_until(lambda: False, timeout_s=0.5)
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in h.got["/cvgl/particles"]]
        assert len(h.got["/cvgl/pose"]) >= 15 and len(stamps) == 4, stamps
        assert np.all(np.diff(stamps) >= 1.0 - 1e-6)
    finally:
        h.close()


def test_fix_is_the_pose_in_wgs84_while_the_receiver_reports_null_island(harness):
    """A receiver that says lat = lon = 0 with a valid status for 3 s: the fixes are rejected,
    and /cvgl/fix stays /cvgl/pose in WGS84 (height included: no 6 000 km 'up' from (0, 0))."""
    h = harness
    h.drive(20)
    for i in range(20, 35):  # 3 s of null island at 5 Hz, valid status
        h.fix(i, lat=0.0, lon=0.0)
        h.spin_until(lambda: False, timeout_s=0.05)
    h.drive(5, start=35)
    assert h.spin_until(lambda: len(h.got["/cvgl/fix"]) >= len(h.got["/cvgl/pose"]))
    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in h.got["/cvgl/fix"]}
    compared = 0
    for pose in h.got["/cvgl/pose"]:
        fused = by_stamp.get((pose.header.stamp.sec, pose.header.stamp.nanosec))
        if fused is None:
            continue
        e, n, _, cov = pose_msg_to_xy_yaw(pose)
        fe, fn, fu = DATUM.to_enu(fused.latitude, fused.longitude, fused.altitude)
        assert math.hypot(fe - e, fn - n) < 0.01 and abs(fu) < 10.0
        np.testing.assert_allclose(np.reshape(fused.position_covariance, (3, 3))[:2, :2], cov[:2, :2], rtol=1e-6)
        compared += 1
    assert compared >= 30


def test_imu_and_wheel_odometry_are_taken_in(harness):
    from sensor_msgs.msg import Imu

    h = harness
    pub_imu = h.probe.create_publisher(Imu, "/imu/data", RESULT_QOS)
    pub_odom = h.probe.create_publisher(Odometry, "/odom/wheel", RESULT_QOS)
    assert h.spin_until(lambda: pub_imu.get_subscription_count() and pub_odom.get_subscription_count())
    for i in range(12):
        for k in range(10):  # IMU at 50 Hz, wheel speed at 50 Hz, between the fixes at 5 Hz
            t = T0 + i * 200_000_000 + k * 20_000_000
            imu = Imu()
            imu.header.stamp = to_stamp(t)
            imu.angular_velocity.z = 0.0
            imu.angular_velocity_covariance[8] = 1e-6
            pub_imu.publish(imu)
            odom = Odometry()
            odom.header.stamp = to_stamp(t)
            odom.twist.twist.linear.x = 5.0
            odom.twist.covariance[0] = 0.01
            pub_odom.publish(odom)
        h.spin_until(lambda: False, timeout_s=0.05)
        before = h.fix(i, east=5.0 * 0.2 * i)
        assert h.spin_until(lambda: len(h.got["/cvgl/pose"]) > before)
    bad = Imu()
    bad.header.stamp = to_stamp(T0 + 3_000_000_000)
    bad.angular_velocity.z = math.nan
    pub_imu.publish(bad)
    assert h.spin_until(lambda: int(h.diag().get("filter_predictions_with_imu", 0)) > 5
                        and int(h.diag().get("filter_predictions_with_wheel_speed", 0)) > 5
                        and int(h.diag().get("motion_invalid", 0)) >= 1)
    speed = h.got["/cvgl/odometry"][-1].twist.twist.linear.x
    assert abs(speed - 5.0) < 0.5


def test_tuning_parameters_are_live_and_structural_ones_read_only(harness):
    from rclpy.parameter import Parameter

    node = harness.node
    ok = node.set_parameters([Parameter("filter.relock_after_s", value=4.0),
                              Parameter("filter.integrity_window_s", value=3.0)])
    assert all(r.successful for r in ok), [r.reason for r in ok]
    assert node.pf.config.relock_after_s == 4.0 and node.pf.gate.config.integrity_window_s == 3.0
    for name, value, why in (("filter.num_particles", 500, "read-only"), ("map_frame", "odom", "read-only"),
                             ("filter.relock_after_s", -1.0, ""), ("filter.cross_view_outlier_prob", 1.0, "")):
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and why in result.reason, (name, result.reason)
    assert node.pf.config.relock_after_s == 4.0 and node.pf.config.num_particles == 2000
    harness.drive(5)  # still runs
