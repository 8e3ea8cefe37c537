"""The cross-view node over real DDS with the shipped model: outputs, stale-frame dropping,
diagnostics, the default start-up path (no datum yet, then the yaw unknown) and the datum's
one owner (the two nodes started 3 s apart share one map frame)."""
import threading
import time

import numpy as np
import pytest

from cvgl_ros.datasets import bag as B
from cvgl_ros.nodes.conversions import cloud_to_volume, pose_msg_to_xy_yaw
from test_nodes_support import LiveNodes, Recording, shipped_model, write_tiles

pytestmark = pytest.mark.ros  # real rclpy nodes over DDS (`-m "not ros"` leaves them out)

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
RESEND_S = 10.0  # Sensors.frame: a frame with no status by then is published again


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    return write_tiles(tmp_path_factory.mktemp("tiles") / "tiles.mbtiles")


@pytest.fixture
def nodes(tiles):
    live = LiveNodes(tiles, shipped_model(), overlay_every_n=1)
    yield live
    live.close()


def test_a_frame_gives_likelihood_pose_overlay_and_a_fused_pose(nodes):
    nodes.fix(T0, east=3.0, north=-2.0)
    status = nodes.frame(T0 + S // 10)
    assert status.message == "processed"
    assert {kv.key for kv in status.values} >= {"decode_ms", "patch_ms", "inference_ms", "total_ms"}
    assert nodes.wait(lambda: nodes.got["/cvgl/likelihood"] and nodes.got["/cvgl/debug/overlay"]
                      and nodes.got["/cvgl/cross_view/pose"], 10)
    cloud = nodes.got["/cvgl/likelihood"][0]
    assert cloud.header.frame_id == "map" and [f.name for f in cloud.fields][:5] == ["x", "y", "z", "yaw", "log_likelihood"]
    volume = cloud_to_volume(cloud)
    assert volume.stamp_ns == T0 + S // 10
    # the volume is centred on the prior: the filter's estimate around the fix
    assert abs(volume.center_e_m - 3.0) < 8.0 and abs(volume.center_n_m + 2.0) < 8.0
    e, n, yaw, cov = pose_msg_to_xy_yaw(nodes.got["/cvgl/cross_view/pose"][0])
    assert np.all(np.isfinite([e, n, yaw])) and np.all(np.isfinite(cov)) and cov[0, 0] > 0
    overlay = nodes.got["/cvgl/debug/overlay"][0]
    assert overlay.encoding == "rgb8" and overlay.height > 0 and len(overlay.data) == overlay.step * overlay.height
    # the filter fuses the likelihood: a /cvgl/pose at the frame's stamp
    assert nodes.wait(lambda: any(m.header.stamp == cloud.header.stamp for m in nodes.got["/cvgl/pose"]), 10)
    assert nodes.wait(lambda: "latency_inference_ms" in nodes.last_diag("cross_view_node"), 10)
    d = nodes.last_diag("cross_view_node")
    assert float(d["latency_inference_ms"]) > 0 and int(d["frames_processed"]) == 1
    assert float(d["rate_image_hz"]) >= 0 and d["prior_source"].startswith("filter")


def test_frames_arriving_faster_than_inference_are_dropped_not_queued(nodes):
    nodes.fix(T0)
    h, w = nodes.image_hw
    from test_nodes_support import camera

    k, _, _ = camera((h, w))
    nodes.publish("info", B.camera_info_msg(k, w, h, T0))
    stamps = [T0 + S // 10 + i * S // 100 for i in range(30)]
    rng = np.random.default_rng(0)
    for t in stamps:  # 30 frames in a burst: far faster than one inference
        nodes.publish("image", B.image_msg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), t))
    assert nodes.wait(lambda: all(nodes.status_for(t) is not None for t in stamps[-1:]), 60)
    nodes.wait(lambda: len([t for t in stamps if nodes.status_for(t) is not None]) >= 30, 5)
    statuses = {t: nodes.status_for(t) for t in stamps}
    processed = [t for t, s in statuses.items() if s is not None and s.message == "processed"]
    dropped = [t for t, s in statuses.items() if s is not None and s.message.startswith("dropped")]
    assert dropped, "a burst must drop stale frames"
    assert len(processed) < len(stamps) / 2
    assert stamps[-1] in processed, "the newest frame is the one processed"
    assert nodes.wait(lambda: int(nodes.last_diag("cross_view_node").get("frames_dropped_stale", 0)) >= len(dropped) - 1, 10)


def test_two_workers_take_two_frames_at_once_and_publish_in_camera_order(tiles):
    from cvgl_ros.stamps import stamp_to_ns
    from test_nodes_support import camera

    live = LiveNodes(tiles, shipped_model(), inference_workers=2, intra_op_threads=1)
    try:
        live.fix(T0)
        h, w = live.image_hw
        k, _, _ = camera((h, w))
        live.publish("info", B.camera_info_msg(k, w, h, T0))
        assert live.wait(lambda: live.cross_view.priors.newest_filter_pose_ns is not None and live.cross_view.k is not None, 20)
        rng = np.random.default_rng(1)
        image = lambda t: B.image_msg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), t)  # noqa: E731
        pair = [T0 + S // 10, T0 + S // 10 + S // 100]
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image

        for t in pair:  # straight into the callback, back to back: one per idle worker, neither dropped
            cdr = bytes(B.TYPESTORE.serialize_cdr(image(t), "sensor_msgs/msg/Image"))
            live.cross_view.on_image(deserialize_message(cdr, Image))
        assert live.wait(lambda: all(live.status_for(t) is not None for t in pair), 60)
        assert [live.status_for(t).message for t in pair] == ["processed", "processed"]
        burst = [pair[-1] + (i + 1) * S // 100 for i in range(30)]
        for t in burst:  # far faster than two inferences: stale frames are still dropped
            live.publish("image", image(t))
        assert live.wait(lambda: live.status_for(burst[-1]) is not None, 60)
        statuses = {t: live.status_for(t) for t in burst}
        assert any(s is not None and s.message.startswith("dropped") for s in statuses.values())
        assert statuses[burst[-1]].message == "processed"
        clouds = [stamp_to_ns(m.header.stamp) for m in live.got["/cvgl/likelihood"]]
        assert len(clouds) >= 3 and clouds == sorted(clouds) and len(set(clouds)) == len(clouds), clouds
        assert clouds[:2] == pair
    finally:
        live.close()


# -- nodes started on their own (each its own context: its own DDS participant) ----------------

class Started:
    """A node built by `make(context)` in its own rclpy context, spun on its own thread."""

    def __init__(self, make):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from test_nodes_support import spin_until_stopped

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = make(self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=spin_until_stopped, args=(self.executor, self.stop), daemon=True)
        self.thread.start()

    def close(self):
        import rclpy

        self.stop.set()
        self.thread.join(timeout=10.0)
        if hasattr(self.node, "close"):
            self.node.close()
        self.executor.shutdown(timeout_sec=10.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class Sensors(Recording):
    """A probe node: publishes raw CDR on the sensor topics (and optionally a datum), records outputs."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from sensor_msgs.msg import CameraInfo, Image, Imu, NavSatFix, PointCloud2

        from cvgl_ros.nodes.datum_topic import DATUM_QOS, DATUM_TOPIC
        from cvgl_ros.nodes.runner import RESULT_QOS

        kinds = {"/cvgl/pose": PoseWithCovarianceStamped, "/cvgl/likelihood": PointCloud2,
                 "/cvgl/cross_view/frame_status": DiagnosticArray, "/diagnostics": DiagnosticArray}
        super().__init__([*kinds, DATUM_TOPIC])

        def make(context):
            node = rclpy.create_node("sensors", context=context)
            self.sub = {topic: node.create_subscription(cls, topic, lambda m, t=topic: self._add(t, m), RESULT_QOS)
                        for topic, cls in kinds.items()}
            node.create_subscription(NavSatFix, DATUM_TOPIC, lambda m: self._add(DATUM_TOPIC, m), DATUM_QOS)
            self.pub = {B.TOPIC_GNSS_FIX: node.create_publisher(NavSatFix, B.TOPIC_GNSS_FIX, RESULT_QOS),
                        B.TOPIC_IMAGE: node.create_publisher(Image, B.TOPIC_IMAGE, RESULT_QOS),
                        B.TOPIC_CAMERA_INFO: node.create_publisher(CameraInfo, B.TOPIC_CAMERA_INFO, RESULT_QOS),
                        DATUM_TOPIC: node.create_publisher(NavSatFix, DATUM_TOPIC, DATUM_QOS),
                        "/cvgl/pose": node.create_publisher(PoseWithCovarianceStamped, "/cvgl/pose", RESULT_QOS),
                        B.TOPIC_IMU: node.create_publisher(Imu, B.TOPIC_IMU, RESULT_QOS)}
            return node

        self.started = Started(make)

    def wait_connected(self, node_name: str, inputs, outputs=("/cvgl/cross_view/frame_status",),
                       timeout_s: float = 30.0) -> bool:
        """Matched both ways before anything is published once: the node's subscriptions to
        `inputs` (its `publishers_<topic>` diagnostics) and this probe's subscriptions to the
        node's `outputs`. Matching is per direction in DDS; a message sent before its reader
        matched is lost, whatever the QoS (volatile durability)."""
        return self.wait(lambda: all(int(self.last_diag(node_name).get(f"publishers_{t}", 0)) >= 1 for t in inputs)
                         and all(self.sub[t].get_publisher_count() >= 1 for t in outputs), timeout_s)

    def frame(self, stamp_ns: int, image_hw, seed: int = 0, timeout_s: float = 60.0):
        from test_nodes_support import camera

        h, w = image_hw
        k, _, _ = camera((h, w))
        self.publish(B.TOPIC_CAMERA_INFO, B.camera_info_msg(k, w, h, stamp_ns))
        rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
        # the camera is best effort (sensor-data QoS): a frame can be lost on the way, under load
        # too; as `cvgl replay` does, one with no status after RESEND_S is published again (a
        # frame that was only slow then gets a second status, "repeated"; the first one counts)
        for attempt in range(3):
            self.publish(B.TOPIC_IMAGE, B.image_msg(rgb, stamp_ns))
            if self.wait(lambda: self.status_for(stamp_ns) is not None, RESEND_S if attempt < 2 else timeout_s):
                return self.status_for(stamp_ns)
        raise AssertionError(f"no frame status for {stamp_ns} after 3 publications")

    def close(self):
        self.started.close()


def start_node(cls, **params):
    from rclpy.parameter import Parameter

    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return Started(lambda context: cls(context=context, parameter_overrides=overrides))


def test_default_start_waits_for_the_datum_then_searches_the_full_circle_every_nth_frame(tiles):
    """The defaults (no datum, prior_yaw_max_std_deg 20, unknown_yaw_search_every_n 10), with a
    GNSS prior only: frames wait for the filter's datum, then the first unknown-yaw frame is a
    full-circle search (one batch of windows) and the next ones wait for the yaw."""
    from cvgl_ros.nodes.conversions import cloud_to_volume
    from cvgl_ros.nodes.cross_view_node import CrossViewNode
    from cvgl_ros.nodes.datum_topic import DATUM_TOPIC, datum_msg
    from test_nodes_support import DATUM, model_image_hw

    model = shipped_model()
    hw = model_image_hw(model)
    sensors = Sensors()
    cross_view = start_node(CrossViewNode, tiles=str(tiles), model=str(model), providers=["cpu"],
                            diagnostics_period_s=0.1)
    try:
        assert sensors.wait_connected("cross_view_node", (B.TOPIC_GNSS_FIX, B.TOPIC_IMAGE, B.TOPIC_CAMERA_INFO, DATUM_TOPIC))
        la, lo, al = DATUM.to_wgs84(3.0, -2.0, 0.0)
        sensors.publish(B.TOPIC_GNSS_FIX, B.navsatfix_msg(float(la), float(lo), float(al), T0, sigma_m=2.0))
        status = sensors.frame(T0 + S // 10, hw)
        assert status.message == "skipped: waiting for the filter's datum on /cvgl/datum"
        assert sensors.wait(lambda: int(sensors.last_diag("cross_view_node").get("frames_waiting_for_datum", 0)) >= 1
                            and sensors.last_diag("cross_view_node")["datum"] == "waiting for the filter's datum", 10)
        assert not sensors.got["/cvgl/likelihood"]

        sensors.publish(DATUM_TOPIC, datum_msg(DATUM, T0, "map"))       # as the filter node would, latched
        assert sensors.wait(lambda: sensors.last_diag("cross_view_node").get("datum", "").endswith("(from the filter)"), 10)
        # the fix that came before the datum is the GNSS prior now (converted when the datum came)
        status = sensors.frame(T0 + 2 * S // 10, hw)
        assert status.message == "processed"
        assert sensors.wait(lambda: sensors.got["/cvgl/likelihood"], 10)
        volume = cloud_to_volume(sensors.got["/cvgl/likelihood"][0])
        assert volume.wraps_yaw, "no yaw prior: the full circle"
        assert (volume.center_e_m, volume.center_n_m) == pytest.approx((3.0, -2.0), abs=1e-3)
        span = np.ptp(np.asarray(cross_view.node.estimator.yaw_offsets))
        windows = int(np.ceil(2 * np.pi / span - 1e-9))
        assert sensors.wait(lambda: sensors.last_diag("cross_view_node").get("yaw_windows") == str(windows), 10)
        d = sensors.last_diag("cross_view_node")
        assert d["prior_source"] == "gnss (yaw unknown)" and int(d["yaw_windows_searched"]) == windows

        status = sensors.frame(T0 + 3 * S // 10, hw)
        assert status.message == "skipped: yaw prior unknown: full-circle search on every 10th frame only"
        assert sensors.wait(lambda: int(sensors.last_diag("cross_view_node").get("frames_waiting_for_yaw", 0)) == 1, 10)
        assert len(sensors.got["/cvgl/likelihood"]) == 1
    finally:
        cross_view.close()
        sensors.close()


def test_nodes_started_3_s_apart_without_a_datum_share_the_filters_map_frame(tiles, tmp_path):
    """The filter node anchors the map at the first valid fix and publishes it latched; the
    cross-view node, started 3 s (15 m of driving) later, takes that datum instead of
    anchoring at its own first fix: its likelihood volumes and the fused pose line up with
    the truth in the filter's frame, and a datum parameter that disagrees is reported."""
    from cvgl_ros.geo.datum import Datum
    from cvgl_ros.nodes.conversions import cloud_to_volume
    from cvgl_ros.stamps import stamp_to_ns
    from cvgl_ros.nodes.cross_view_node import CrossViewNode
    from cvgl_ros.nodes.datum_topic import DATUM_TOPIC
    from cvgl_ros.nodes.particle_filter_node import ParticleFilterNode
    from test_nodes_support import DATUM, model_image_hw, write_drive

    model = shipped_model()
    hw = model_image_hw(model)
    bag = write_drive(tmp_path / "drive", duration_s=6.0, camera_hz=2.0, gnss_hz=5.0, image_hw=hw)
    messages = list(B.read_messages(bag, raw=True))
    truth = {stamp: (m.pose.position.x, m.pose.position.y)
             for _, _, stamp, m in B.read_messages(bag, [B.TOPIC_GT_POSE])}
    t_start = messages[0][2]
    sensors = Sensors()
    fast = {"prior_yaw_max_std_deg": 360.0, "widen_yaw_search": False}   # one network window per frame
    filter_node = start_node(ParticleFilterNode, diagnostics_period_s=0.1)
    cross_view = None
    try:
        # matched from the filter's side too (a best-effort subscriber drops what comes before)
        assert sensors.wait(lambda: int(sensors.last_diag("particle_filter_node").get(
            f"publishers_{B.TOPIC_GNSS_FIX}", 0)) >= 1, 30)
        wall0 = time.monotonic()
        late = [m for m in messages if m[2] - t_start >= 3 * S]
        for topic, _, stamp, cdr in messages:                       # the first 3 s: only the filter runs
            if stamp - t_start >= 3 * S:
                break
            time.sleep(max(0.0, wall0 + (stamp - t_start) * 1e-9 - time.monotonic()))
            if topic == B.TOPIC_GNSS_FIX:
                sensors.publish(topic, cdr)
        assert sensors.wait(lambda: sensors.got[DATUM_TOPIC], 10), "the filter publishes its datum"
        owner = sensors.got[DATUM_TOPIC][0]
        filter_datum = Datum(owner.latitude, owner.longitude, owner.altitude)
        assert owner.header.frame_id == "map" and stamp_to_ns(owner.header.stamp) == t_start  # the first fix
        time.sleep(max(0.0, wall0 + 3.0 - time.monotonic()))     # then, 3 s after the filter's first fix:

        # a datum parameter 11 m off: the cross-view node says so and still uses the filter's
        wrong = [DATUM.lat_deg + 1e-4, DATUM.lon_deg, DATUM.alt_m]
        cross_view = start_node(CrossViewNode, tiles=str(tiles), model=str(model), providers=["cpu"],
                                diagnostics_period_s=0.1, datum=wrong, **fast)
        assert sensors.wait_connected("cross_view_node", (B.TOPIC_IMAGE, B.TOPIC_CAMERA_INFO, B.TOPIC_GNSS_FIX))
        assert sensors.wait(lambda: sensors.last_diag("cross_view_node").get("datum", "").endswith("(from the filter)"),
                            10), "the latched datum reaches a node started later"
        d = sensors.last_diag("cross_view_node")
        assert d["datum"].split(" ")[0] == sensors.last_diag("particle_filter_node")["datum"].split(" ")[0]
        assert "using the filter's" in d["datum_mismatch"]
        assert cross_view.node.datum_follower.datum == filter_datum

        frames = []
        infos = {stamp: cdr for topic, _, stamp, cdr in late if topic == B.TOPIC_CAMERA_INFO}
        for topic, _, stamp, cdr in late:                           # then the rest, a frame at a time
            if topic == B.TOPIC_IMAGE:
                frames.append(stamp)
                sensors.publish(B.TOPIC_CAMERA_INFO, infos[stamp])
                sensors.publish(topic, cdr)
                assert sensors.wait(lambda: sensors.status_for(stamp) is not None, 60), "no frame status"
            elif topic == B.TOPIC_GNSS_FIX:
                sensors.publish(topic, cdr)
                time.sleep(0.05)
        assert sensors.wait(lambda: len(sensors.got["/cvgl/likelihood"]) >= len(frames), 10)
        assert all(sensors.status_for(t).message == "processed" for t in frames), \
            [sensors.status_for(t).message for t in frames]

        def truth_in_filter_frame(stamp):              # the bag's truth is in DATUM's frame
            e, n = truth[min(truth, key=lambda t: abs(t - stamp))]
            lat, lon, alt = DATUM.to_wgs84(e, n, 0.0)
            te, tn, _ = filter_datum.to_enu(float(lat), float(lon), float(alt))
            return float(te), float(tn)

        for cloud in sensors.got["/cvgl/likelihood"]:
            volume = cloud_to_volume(cloud)
            te, tn = truth_in_filter_frame(volume.stamp_ns)
            assert np.hypot(volume.center_e_m - te, volume.center_n_m - tn) < 8.0
        poses = [m for m in sensors.got["/cvgl/pose"] if stamp_to_ns(m.header.stamp) >= frames[0]]
        assert poses
        for m in poses:
            te, tn = truth_in_filter_frame(stamp_to_ns(m.header.stamp))
            assert np.hypot(m.pose.pose.position.x - te, m.pose.pose.position.y - tn) < 8.0
        # the cross-view node's own first fix was 15 m of driving later than the filter's
        first_late_fix = next(cdr for topic, _, _, cdr in late if topic == B.TOPIC_GNSS_FIX)
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import NavSatFix

        fix = deserialize_message(first_late_fix, NavSatFix)
        e, n, _ = filter_datum.to_enu(fix.latitude, fix.longitude, fix.altitude)
        assert np.hypot(float(e), float(n)) > 8.0, "a map anchored at its own first fix would not line up"
    finally:
        if cross_view is not None:
            cross_view.close()
        filter_node.close()
        sensors.close()


def test_the_datum_message_round_trips_and_names_its_frame():
    from cvgl_ros.errors import InputError
    from cvgl_ros.stamps import stamp_to_ns
    from cvgl_ros.nodes.datum_topic import datum_msg, msg_to_datum
    from test_nodes_support import DATUM

    msg = datum_msg(DATUM, T0, "map")
    assert msg.header.frame_id == "map" and stamp_to_ns(msg.header.stamp) == T0 and msg.status.status >= 0
    assert msg_to_datum(msg, "map") == DATUM
    with pytest.raises(InputError, match="expected 'world'"):
        msg_to_datum(msg, "world")
    msg.latitude = float("nan")
    with pytest.raises(InputError, match="datum message"):
        msg_to_datum(msg, "map")


def test_a_turn_on_imu_data_widens_the_yaw_search_to_adjacent_windows(tiles):
    """The filter's yaw is certain (1 deg) but /imu/data says the car turns at 1 rad/s: with
    the defaults (k 3, margin 1.5 deg, latency 0.1 s) the search goes from the one +-12 deg
    window to three (+-36 deg), and the likelihood carries the whole arc."""
    import math

    from sensor_msgs.msg import Imu

    from cvgl_ros.nodes.conversions import cloud_to_volume, pose_with_covariance_msg, to_stamp
    from cvgl_ros.nodes.cross_view_node import CrossViewNode
    from cvgl_ros.nodes.datum_topic import DATUM_TOPIC, datum_msg
    from test_nodes_support import DATUM, model_image_hw

    model = shipped_model()
    hw = model_image_hw(model)
    sensors = Sensors()
    cross_view = start_node(CrossViewNode, tiles=str(tiles), model=str(model), providers=["cpu"],
                            diagnostics_period_s=0.1)
    try:
        assert sensors.wait_connected("cross_view_node", (B.TOPIC_IMAGE, B.TOPIC_CAMERA_INFO, "/cvgl/pose", B.TOPIC_IMU,
                                                          DATUM_TOPIC))
        sensors.publish(DATUM_TOPIC, datum_msg(DATUM, T0, "map"))
        cov = np.diag([1.0, 1.0, math.radians(1.0) ** 2])
        yaw = 0.5
        sensors.publish("/cvgl/pose", pose_with_covariance_msg(T0, "map", 2.0, 1.0, yaw, cov))
        assert sensors.frame(T0 + S // 10, hw).message == "processed"
        assert sensors.wait(lambda: sensors.last_diag("cross_view_node").get("yaw_windows") == "1", 10)

        imu = Imu()
        imu.header.stamp = to_stamp(T0 + S // 10)
        imu.angular_velocity.z = 1.0
        sensors.publish(B.TOPIC_IMU, imu)
        sensors.publish("/cvgl/pose", pose_with_covariance_msg(T0 + S // 10, "map", 2.5, 1.0, yaw, cov))
        # both are in before the frame: the IMU (its rate shows in /diagnostics) and the pose
        assert sensors.wait(lambda: "rate_imu_hz" in sensors.last_diag("cross_view_node"), 10)
        assert sensors.wait(lambda: cross_view.node.priors.newest_filter_pose_ns == T0 + S // 10, 10)
        assert sensors.frame(T0 + 2 * S // 10, hw).message == "processed"
        assert sensors.wait(lambda: sensors.last_diag("cross_view_node").get("yaw_windows") == "3", 10)
        d = sensors.last_diag("cross_view_node")
        assert d["prior_source"] == "filter (yaw search widened to +-16 deg)"   # 3 + 1 rad/s * 0.2 s + 1.5
        assert int(d["yaw_windows_searched"]) == 4
        assert sensors.wait(lambda: len(sensors.got["/cvgl/likelihood"]) == 2, 10)
        volume = cloud_to_volume(sensors.got["/cvgl/likelihood"][1])
        offsets = np.asarray(cross_view.node.estimator.yaw_offsets)
        span = offsets[-1] - offsets[0]
        assert volume.shape[0] == 3 * (len(offsets) - 1) + 1 and not volume.wraps_yaw
        assert volume.yaw_bins_rad[0] == pytest.approx(yaw - span - offsets[-1], abs=1e-5)
        assert volume.yaw_bins_rad[-1] == pytest.approx(yaw + span + offsets[-1], abs=1e-5)
    finally:
        cross_view.close()
        sensors.close()


def _bare_cross_view_node(**params):
    import rclpy
    from rclpy.parameter import Parameter

    from cvgl_ros.nodes.cross_view_node import CrossViewNode

    context = rclpy.Context()
    rclpy.init(context=context)
    node = CrossViewNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    return context, node


def _close_bare(context, node):
    import rclpy

    node.close()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def test_every_fatal_reason_is_reported_at_once_and_a_model_outside_the_pin_is_refused(tiles):
    """An unpinned model and no tile cache: both reasons, the later never hiding the earlier;
    the shipped model's own sha256 in the pin loads it."""
    import json

    model = shipped_model()
    sha = json.loads(model.with_suffix(".json").read_text())["sha256"]
    context, node = _bare_cross_view_node(model=str(model), tiles="", providers=["cpu"],
                                          allowed_model_sha256="00" * 32)
    try:
        reason = node.health.fatal_reason
        assert "not in allowed_model_sha256" in reason and "no tile cache" in reason, reason
        assert node.estimator is None
    finally:
        _close_bare(context, node)
    context, node = _bare_cross_view_node(model=str(model), tiles=str(tiles), providers=["cpu"],
                                          allowed_model_sha256=f"{'11' * 32}, {sha.upper()}")
    try:
        assert node.health.fatal_reason == "" and node.estimator is not None
    finally:
        _close_bare(context, node)


def test_prior_and_yaw_search_parameters_are_live_the_model_is_not(tiles):
    from rclpy.parameter import Parameter

    context, node = _bare_cross_view_node(model=str(shipped_model()), tiles=str(tiles), providers=["cpu"])
    try:
        results = node.set_parameters([Parameter("yaw_search_sigmas", value=2.0),
                                       Parameter("prior_max_age_s", value=1.0)])
        assert all(r.successful for r in results), [r.reason for r in results]
        assert node.priors.policy.yaw_search_sigmas == 2.0 and node.priors.policy.max_age_s == 1.0
        for name, value in (("model", "/elsewhere.onnx"), ("image_transport", "compressed"),
                            ("yaw_search_sigmas", -1.0)):
            assert not node.set_parameters([Parameter(name, value=value)])[0].successful, name
        assert node.priors.policy.yaw_search_sigmas == 2.0
    finally:
        _close_bare(context, node)


def test_a_pitched_camera_at_its_mounted_height_is_levelled_and_processed(tiles):
    live = LiveNodes(tiles, shipped_model(), camera_pitch_deg=3.0, camera_roll_deg=-1.0, camera_mount_height_m=1.5)
    try:
        assert live.cross_view.estimator.camera_height_m == 1.5  # the network's BEV projection input
        live.fix(T0)
        assert live.frame(T0 + S // 10).message == "processed"
        assert live.wait(lambda: live.got["/cvgl/likelihood"], 10)
    finally:
        live.close()
