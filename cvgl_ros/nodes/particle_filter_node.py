"""particle_filter_node: fuses /gnss/fix with the cross-view likelihoods into /cvgl/pose.

Subscribes  /gnss/fix (NavSatFix, sensor QoS), /cvgl/likelihood (PointCloud2, frame `map`), /cvgl/retrieval
            (PointCloud2: the coarse stage's grid scores, fused per `retrieval_fusion`; nodes/retrieval_messages.py),
            optional /imu/data (Imu: angular_velocity.z, yaw rate) and /odom/wheel (Odometry: twist.linear.x,
            forward speed), both sensor QoS; /tf_static, camera/camera_info (mounting: nodes/tf_static.py).
Publishes   /cvgl/pose (PoseWithCovarianceStamped, `map`), /cvgl/fix (/cvgl/pose in WGS84, the
            same covariance), /cvgl/protection_level (Vector3Stamped: vector.x is the
            horizontal protection level of the pose at the same stamp, m), /cvgl/odometry
            (Odometry `map` -> `base_link`), /cvgl/path (Path), /cvgl/particles (PoseArray),
            /cvgl/gnss/pose (the raw fix in `map`, for RViz), /diagnostics, and with `publish_tf`
            /tf: map -> odom when odometry puts odom -> base_link on /tf, else map -> base_link
            (robot_localization's convention, REP-105; nodes/tf.py, localization/tf_policy.py).
A pose is published at the stamp of every likelihood and grid-score cloud (the answer a
lockstep replay waits for) and of every GNSS fix the filter used or rejected. The maths is
`cvgl_ros.filter.particle_filter`, when what is published `cvgl_ros.localization.filter_outputs`;
this node converts and publishes. It owns the map frame's datum (`localization.datum.DatumOwner`):
the `datum` parameter, else the first valid fix, published latched on /cvgl/datum (NavSatFix,
frame_id `map`; nodes/datum_topic.py).
"""
from __future__ import annotations

import math
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseWithCovarianceStamped, Vector3Stamped
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from sensor_msgs.msg import Imu, NavSatFix, PointCloud2

from cvgl_ros.errors import InputError
from cvgl_ros.filter.particle_filter import GnssDecision, ParticleFilter
from cvgl_ros.geo.transforms import RigidTransform
from cvgl_ros.localization.datum import DatumOwner
from cvgl_ros.localization.coarse_stage import FilterCoarseStage
from cvgl_ros.localization.filter_outputs import LateMeasurements, Throttle
from cvgl_ros.nodes import conversions as conv
from cvgl_ros.nodes.datum_topic import DATUM_QOS, DATUM_TOPIC, datum_msg
from cvgl_ros.nodes.diagnostics import NodeHealth, health_name
from cvgl_ros.nodes.filter_messages import PathPublisher
from cvgl_ros.nodes.filter_parameters import PARAMS, filter_config
from cvgl_ros.nodes.parameters import accept_live_changes, declare_params, parse_datum
from cvgl_ros.nodes.retrieval_messages import fuse_retrieval
from cvgl_ros.nodes.runner import RESULT_QOS, SENSOR_QOS, run_node, steady_timer
from cvgl_ros.nodes.tf import map_tf_broadcaster
from cvgl_ros.nodes.tf_static import filter_mounting
from cvgl_ros.stamps import stamp_to_ns

NODE_NAME = "particle_filter_node"


class ParticleFilterNode(Node):
    NODE_NAME = NODE_NAME

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.p = declare_params(self, PARAMS)
        config = filter_config(self.p)
        self.pf = ParticleFilter(config, seed=self.p["seed"])
        accept_live_changes(self, PARAMS, self._retune)
        self.datum_owner = DatumOwner(parse_datum(self.p["datum"]))
        self.pub_datum = self.create_publisher(NavSatFix, DATUM_TOPIC.lstrip("/"), DATUM_QOS)
        if self.datum_owner.datum is not None:
            self.pub_datum.publish(datum_msg(self.datum_owner.datum, self.get_clock().now().nanoseconds,
                                             self.p["map_frame"]))
        self.health = NodeHealth(health_name(NODE_NAME, self.get_namespace()), counters=(  # always in /diagnostics
            "gnss_rejected", "gnss_invalid", "stamp_backwards", "likelihood_rejected", "filter_resets"))
        self.health.set_value("datum", self.datum_owner.describe())
        self.tf = map_tf_broadcaster(self, self.p, self.health)
        self.mounting = filter_mounting(self)  # the lever arms: the parameters, or /tf_static when it has them
        self.last_up_m, self.last_up_var = 0.0, 100.0
        self.last_gnss_ns = self.last_cloud_ns = None  # int | None: the newest stamps seen
        self.late = LateMeasurements()
        self.coarse = FilterCoarseStage(self.p["retrieval_fusion"])  # when /cvgl/retrieval is fused
        self.health.set_value("coarse_stage", f"off ({self.p['retrieval_fusion']}: no /cvgl/retrieval yet)")
        self.particles_throttle = Throttle(self.p["particles_period_s"])
        self.rng = np.random.default_rng(self.p["seed"])

        # Topic names are relative: under the node's namespace (launch `namespace:=`), /cvgl/... in
        # the root one, as the README names them. /diagnostics stays absolute.
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "cvgl/pose", RESULT_QOS)
        self.pub_fix = self.create_publisher(NavSatFix, "cvgl/fix", RESULT_QOS)
        self.pub_pl = self.create_publisher(Vector3Stamped, "cvgl/protection_level", RESULT_QOS)
        self.pub_odom = self.create_publisher(Odometry, "cvgl/odometry", RESULT_QOS)
        self.path = PathPublisher(self.p, self.create_publisher(Path, "cvgl/path", RESULT_QOS))
        self.pub_particles = self.create_publisher(PoseArray, "cvgl/particles", RESULT_QOS)
        self.pub_gnss_pose = self.create_publisher(PoseWithCovarianceStamped, "cvgl/gnss/pose", RESULT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", RESULT_QOS)
        self.inputs = [self.create_subscription(NavSatFix, "gnss/fix", self.on_gnss, SENSOR_QOS),
                       self.create_subscription(PointCloud2, "cvgl/likelihood", self.on_likelihood, RESULT_QOS),
                       self.create_subscription(PointCloud2, "cvgl/retrieval", self.on_retrieval, RESULT_QOS),
                       self.create_subscription(Imu, "imu/data", self.on_imu, SENSOR_QOS),
                       self.create_subscription(Odometry, "odom/wheel", self.on_wheel_odometry, SENSOR_QOS)]
        self.diag_timer = steady_timer(self, self.p["diagnostics_period_s"], self.publish_diagnostics)
        self.get_logger().info(f"ready: {config.num_particles} particles, datum {self.health.values['datum']}")

    def _retune(self, values: dict) -> None:
        """`ros2 param set` of filter.* tuning parameters (InputError: refused, nothing changed)."""
        changes = self.mounting.parameters_changed({name.removeprefix("filter."): v for name, v in values.items()})
        self.pf.reconfigure(self.pf.config.replace(**changes))
        self.get_logger().info(f"filter retuned: {changes}")

    # -- inputs ---------------------------------------------------------------------------

    def on_gnss(self, msg: NavSatFix) -> None:
        self.health.tick("gnss")
        self.mounting.saw_frame("antenna", msg.header.frame_id)
        t_ns = stamp_to_ns(msg.header.stamp)
        self._check_stamp(t_ns, self.last_gnss_ns, "GNSS")
        self.last_gnss_ns = t_ns
        try:
            conv.check_navsatfix(msg)
        except InputError as exc:
            self.health.problem(f"GNSS fix ignored: {exc}", "gnss_invalid")
            self.pf.add_gnss(t_ns * 1e-9, math.nan, math.nan, None, status_ok=False)
            return
        if self.datum_owner.offer_fix(t_ns, msg.latitude, msg.longitude, msg.altitude):
            self.pub_datum.publish(datum_msg(self.datum_owner.datum, t_ns, self.p["map_frame"]))
            self.health.set_value("datum", self.datum_owner.describe())
            self.health.problem(f"datum unset: map frame anchored at the first valid fix {self.health.values['datum']}"
                                f", published on {DATUM_TOPIC}")
        fix = conv.navsatfix_to_enu(msg, self.datum_owner.datum, self.pf.config.default_gnss_sigma_m)
        t0 = time.perf_counter()
        decision = self.pf.add_gnss(t_ns * 1e-9, fix.east_m, fix.north_m, fix.sigma_m, status_ok=True)
        self.health.latency("filter_gnss", (time.perf_counter() - t0) * 1e3)
        if decision.used:  # the height of /cvgl/fix comes from fused fixes only (never a rejected outlier)
            self.last_up_m = fix.up_m
            if msg.position_covariance_type != NavSatFix.COVARIANCE_TYPE_UNKNOWN and \
                    math.isfinite(msg.position_covariance[8]):
                self.last_up_var = max(float(msg.position_covariance[8]), 0.0)
        if decision is GnssDecision.RELOCKED_INTEGRITY:
            self.health.problem(self.pf.diagnostics["last_integrity_alarm"], "integrity_relocks")
        if decision is GnssDecision.RESET:
            self.late.reset()  # the filter starts over at this fix
            self.health.problem("GNSS stamp went backwards: particle filter reset, re-initialized at this fix",
                                "filter_resets")
        elif decision in (GnssDecision.REJECTED_OUTLIER, GnssDecision.REJECTED_GATE):
            self.health.count("gnss_rejected")
        if decision.used or decision in (GnssDecision.REJECTED_OUTLIER, GnssDecision.REJECTED_GATE):
            self._publish_after(t_ns)
        self.pub_gnss_pose.publish(conv.pose_with_covariance_msg(  # last: to a lockstep replay, "fused, pose out"
            t_ns, self.p["map_frame"], fix.east_m, fix.north_m, 0.0, np.diag([fix.sigma_m**2, fix.sigma_m**2, math.pi**2])))

    def on_imu(self, msg: Imu) -> None:
        self.health.tick("imu")
        self._motion_sample(conv.imu_yaw_rate, msg, self.pf.add_yaw_rate, "IMU")

    def on_wheel_odometry(self, msg: Odometry) -> None:
        self.health.tick("wheel_odometry")
        self._motion_sample(conv.odometry_speed, msg, self.pf.add_wheel_speed, "wheel odometry")

    def _motion_sample(self, convert, msg, add, what: str) -> None:
        try:
            t_ns, value, variance = convert(msg)
        except InputError as exc:
            self.health.problem(f"{what} sample ignored: {exc}", "motion_invalid")
            return
        if not add(t_ns * 1e-9, value, variance):
            self.health.problem(f"{what} sample ignored (repeated stamp or out of range)", "motion_invalid")

    def on_likelihood(self, msg: PointCloud2) -> None:
        self.health.tick("likelihood")
        t_ns = stamp_to_ns(msg.header.stamp)
        if msg.header.frame_id != self.p["map_frame"]:
            self.health.problem(f"likelihood cloud in frame {msg.header.frame_id!r}, expected {self.p['map_frame']!r}",
                                "likelihood_rejected")
            return
        self._check_stamp(t_ns, self.last_cloud_ns, "likelihood")
        self.last_cloud_ns = t_ns
        try:
            volume = conv.cloud_to_volume(msg)
        except InputError as exc:
            self.health.problem(f"likelihood cloud ignored: {exc}", "likelihood_rejected")
            return
        self.coarse.note_volume(volume)  # the dense patch's extent
        t0 = time.perf_counter()
        applied = self.pf.add_cross_view(t_ns * 1e-9, volume)
        self.health.latency("filter", (time.perf_counter() - t0) * 1e3)
        self.health.count("likelihood_applied" if applied else "likelihood_not_applied")
        self._publish_after(t_ns, applied)

    def on_retrieval(self, msg: PointCloud2) -> None:
        self.health.tick("retrieval")
        fused = fuse_retrieval(msg, self.pf, self.coarse, self.health, self.p["map_frame"])
        if fused is not None:
            self._publish_after(*fused)

    def _check_stamp(self, t_ns: int, last_ns: int | None, what: str) -> None:
        if last_ns is not None and t_ns < last_ns:
            self.health.problem(f"{what} stamp went backwards by {(last_ns - t_ns) * 1e-9:.3f} s", "stamp_backwards")

    # -- outputs --------------------------------------------------------------------------

    def _publish_after(self, t_ns: int, applied: bool = True) -> None:
        """Outputs after a measurement at t_ns (`LateMeasurements`: a late one's pose at its stamp, then
        every output again at the newest stamp, corrected); one that weighed nothing: the pose there as it is."""
        if not applied:
            return self.publish_estimate(t_ns, pose_only=True) if self.pf.initialized else None
        publications = self.late.after(t_ns)
        if publications[0].pose_only:
            self.health.count("late_measurements")
        for publication in publications:
            self.publish_estimate(publication.stamp_ns, pose_only=publication.pose_only)

    def publish_estimate(self, t_ns: int, pose_only: bool = False) -> None:
        est = self.pf.estimate(t_ns * 1e-9)
        values = (est.east_m, est.north_m, est.yaw_enu_rad, est.speed_mps)
        if not est.initialized or not all(math.isfinite(v) for v in values) or not np.all(np.isfinite(est.covariance_3x3)):
            self.health.problem("filter estimate not finite: nothing published", "estimate_not_finite")
            return
        frame, cov = self.p["map_frame"], est.covariance_3x3
        self.pub_pose.publish(conv.pose_with_covariance_msg(t_ns, frame, est.east_m, est.north_m, est.yaw_enu_rad, cov))
        self.pub_fix.publish(conv.fused_navsatfix_msg(t_ns, self.p["gnss_frame"], self.datum_owner.datum, est.east_m,
                                                      est.north_m, self.last_up_m, cov, self.last_up_var))
        self.pub_pl.publish(conv.protection_level_msg(t_ns, frame, est.protection_level_m))
        if pose_only:
            return
        if self.tf is not None:
            self.tf.send(t_ns, RigidTransform.planar(est.east_m, est.north_m, est.yaw_enu_rad))
        particles = self.pf.particles
        self.pub_odom.publish(conv.odometry_msg(t_ns, frame, self.p["base_link_frame"], est.east_m, est.north_m,
                                                est.yaw_enu_rad, cov, est.speed_mps, est.speed_variance))
        n = min(self.p["max_published_particles"], len(particles))
        if n > 0 and self.particles_throttle.due(t_ns):
            pick = self.rng.choice(len(particles), n, replace=False, p=self.pf.weights)
            sub = particles[pick]
            self.pub_particles.publish(conv.pose_array_msg(t_ns, frame, sub[:, 0], sub[:, 1], sub[:, 3]))
        self.path.extend(t_ns, est)
        self.health.set_value("ess", float(est.ess))
        self.health.set_value("protection_level_m", round(float(est.protection_level_m), 3))
        self.health.set_value("initialized", "true")

    def publish_diagnostics(self) -> None:
        self.health.note_input_publishers(self.inputs)
        for key, value in self.pf.diagnostics.items():
            self.health.set_value(f"filter_{key}", value if isinstance(value, str) else int(value))
        self.pub_diag.publish(self.health.to_msg(self.get_clock().now().nanoseconds))

    def close(self) -> None:
        self.diag_timer.cancel()


def main(args=None) -> None:
    raise SystemExit(run_node(ParticleFilterNode, args))


if __name__ == "__main__":
    main()
