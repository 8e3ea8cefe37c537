"""Helpers of the node, replay and demo tests (no tests here): a small satellite tile cache,
a short synthetic drive bag, and real rclpy probes that collect what the nodes publish."""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np

from cvgl_ros.datasets import bag as B
from cvgl_ros.geo.datum import Datum
from cvgl_ros.stamps import stamp_to_ns
from support.waiting import wait_until

DATUM = Datum(49.0100, 8.4200, 115.0)
REPO = Path(__file__).resolve().parents[1]


def shipped_model() -> Path:
    """The shipped models/*.onnx (CVGL_TEST_MODEL=path runs the node tests on another export)."""
    import os

    from cvgl_ros.share import default_model_path

    path = Path(os.environ["CVGL_TEST_MODEL"]) if os.environ.get("CVGL_TEST_MODEL") else default_model_path()
    assert path is not None, "no shipped model in models/*.onnx"
    return path


def write_tiles(path: Path, half_size_m: float = 120.0, mpp: float = 0.5, seed: int = 0) -> Path:
    """An MBTiles cache of a textured square of +-half_size_m around the datum (z19)."""
    import cv2

    from cvgl_ros.tiles import EnuRaster, MBTilesStore, add_enu_raster

    n = int(2 * half_size_m / mpp)
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(40, 220, (n // 16, n // 16, 3), dtype=np.uint8), (n, n),
                      interpolation=cv2.INTER_CUBIC)
    for k in range(0, n, 40):  # roads: a grid of grey lines
        base[k:k + 6] = 90
        base[:, k:k + 6] = 90
    with MBTilesStore.create(path, name="test", image_format="png") as store:
        add_enu_raster(store, EnuRaster(base, DATUM, 0.0, 0.0, mpp), zoom=19)
    return path


def camera(image_hw=(128, 512)):
    h, w = image_hw
    f = 0.5 * w / math.tan(math.radians(45))  # 90 deg horizontal field of view
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]]), w, h


def write_drive(path: Path, duration_s: float = 4.0, camera_hz: float = 5.0, gnss_hz: float = 5.0,
                image_hw=(128, 512), speed_mps: float = 5.0, seed: int = 0, compressed: bool = False,
                frames: list | None = None, fixes: list | None = None) -> Path:
    """A straight eastward drive through the tile square: camera frames (random texture, the
    nodes only need them to decode), camera_info, noisy GNSS and ground truth.

    `frames`/`fixes` replace the generated ones: lists of (stamp_ns, message) for the camera
    topic / (stamp_ns, NavSatFix) — the bad-input tests inject their faults that way.
    """
    import cv2

    rng = np.random.default_rng(seed)
    k, w, h = camera(image_hw)
    t0 = 1_700_000_000_000_000_000
    msgs = []
    for i in range(int(duration_s * gnss_hz)):
        t = t0 + int(i * 1e9 / gnss_hz)
        e = -10.0 + speed_mps * (t - t0) * 1e-9
        lat, lon, alt = DATUM.to_wgs84(e + rng.normal(0, 2.0), rng.normal(0, 2.0), 0.0)
        msgs.append((t, B.TOPIC_GNSS_FIX, B.MSG_NAVSATFIX, B.navsatfix_msg(float(lat), float(lon), float(alt), t, sigma_m=2.0)))
        msgs.append((t, B.TOPIC_GT_POSE, B.MSG_POSE_STAMPED, B.pose_stamped_msg(e, 0.0, 0.0, 0.0, t)))
    if fixes is not None:
        msgs = [m for m in msgs if m[1] != B.TOPIC_GNSS_FIX]
        msgs += [(t, B.TOPIC_GNSS_FIX, B.MSG_NAVSATFIX, m) for t, m in fixes]
    topic = B.TOPIC_IMAGE_COMPRESSED if compressed else B.TOPIC_IMAGE
    msgtype = B.MSG_COMPRESSED if compressed else B.MSG_IMAGE
    generated = []
    for i in range(int(duration_s * camera_hz)):
        t = t0 + int((i + 0.5) * 1e9 / camera_hz)
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        rgb[h // 2:] = 100  # a grey ground
        if compressed:
            ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1])
            generated.append((t, B.compressed_image_msg(data.tobytes(), t)))
        else:
            generated.append((t, B.image_msg(rgb, t)))
    for t, m in (frames if frames is not None else generated):
        msgs.append((t, topic, msgtype, m))
        msgs.append((t, B.TOPIC_CAMERA_INFO, B.MSG_CAMERA_INFO, B.camera_info_msg(k, w, h, t)))
    msgs.sort(key=lambda m: (m[0], m[1] != B.TOPIC_GNSS_FIX))
    with B.BagWriter(path) as bag:
        bag.set_datum(DATUM)
        for t, top, typ, m in msgs:
            bag.write(top, typ, t, m)
    return path


def image_frames(n: int, camera_hz: float = 5.0, image_hw=(128, 512), seed: int = 1):
    """n good (stamp_ns, Image) camera frames at the stamps write_drive uses."""
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000_000_000_000
    h, w = image_hw
    return [(t0 + int((i + 0.5) * 1e9 / camera_hz), B.image_msg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
                                                              t0 + int((i + 0.5) * 1e9 / camera_hz)))
            for i in range(n)]


def spin_until_stopped(executor, stop: threading.Event) -> None:
    """Spin in small steps until `stop` is set (no executor shutdown racing a spin)."""
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)


class Probe:
    """A real rclpy node in its own context that records what arrives on given topics."""

    def __init__(self, topics: dict, name: str = "probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from cvgl_ros.nodes.runner import RESULT_QOS

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.received = {t: [] for t in topics}
        self.lock = threading.Lock()
        for topic, cls in topics.items():
            self.node.create_subscription(cls, topic, lambda m, t=topic: self._add(t, m), RESULT_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=spin_until_stopped, args=(self.executor, self.stop), daemon=True)
        self.thread.start()

    def _add(self, topic, msg):
        with self.lock:
            self.received[topic].append(msg)

    def wait_for(self, predicate, timeout_s: float = 30.0) -> bool:
        return wait_until(lambda: predicate(self.received), self.lock, timeout_s, 0.05)

    def close(self):
        import rclpy

        self.stop.set()
        self.thread.join(timeout=10.0)
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def model_image_hw(model: Path) -> tuple[int, int]:
    import json

    card = json.loads(model.with_suffix(".json").read_text())
    return int(card["image_hw"][0]), int(card["image_hw"][1])


class Recording:
    """What a probe node received, by topic (`got`, filled by `_add` from its subscriptions),
    and what it publishes (`pub`: key -> publisher). `wait` holds the lock while its
    predicate reads `got` (and may call `status_for` or `last_diag`, which take it again)."""

    def __init__(self, topics):
        self.lock = threading.RLock()
        self.got = {t: [] for t in topics}
        self.pub = {}

    def _add(self, topic, msg):
        with self.lock:
            self.got[topic].append(msg)

    def wait(self, predicate, timeout_s: float = 30.0) -> bool:
        return wait_until(predicate, self.lock, timeout_s, 0.02)

    def publish(self, key: str, msg) -> None:
        """Publish an rclpy message, CDR bytes, or a rosbags message (as its CDR bytes)."""
        if isinstance(msg, (bytes, bytearray, memoryview)):
            msg = bytes(msg)
        elif type(msg).__module__.startswith("rosbags"):
            msg = bytes(B.TYPESTORE.serialize_cdr(msg, type(msg).__msgtype__))
        self.pub[key].publish(msg)

    def status_for(self, stamp_ns: int):
        """The cross-view node's status of the frame stamped `stamp_ns`, None before it came."""
        with self.lock:
            for m in self.got["/cvgl/cross_view/frame_status"]:
                if stamp_to_ns(m.header.stamp) == stamp_ns:
                    return m.status[0]
        return None

    def last_diag(self, node_name: str) -> dict:
        from cvgl_ros.nodes.diagnostics import diagnostic_values

        with self.lock:
            for m in reversed(self.got["/diagnostics"]):
                values = diagnostic_values(m, node_name)
                if values is not None:
                    return values
        return {}


class LiveNodes(Recording):
    """Both nodes in-process (own context, one executor thread) plus a probe that publishes
    sensor messages and records every output."""

    OUTPUTS = None

    def __init__(self, tiles: Path, model: Path, **params):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, NavSatFix, PointCloud2

        from cvgl_ros.nodes.cross_view_node import CrossViewNode
        from cvgl_ros.nodes.particle_filter_node import ParticleFilterNode
        from cvgl_ros.nodes.runner import RESULT_QOS

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        # prior_yaw_max_std_deg 360 and widen_yaw_search false: the filter's yaw is always the
        # yaw prior, so each frame is one network window rather than a wider or full-circle
        # search (fast tests on 2 cores)
        common = {"datum": [DATUM.lat_deg, DATUM.lon_deg, DATUM.alt_m], "diagnostics_period_s": 0.1,
                  "tiles": str(tiles), "model": str(model), "providers": ["cpu"], "prior_yaw_max_std_deg": 360.0,
                  "widen_yaw_search": False, **params}
        overrides = [Parameter(k, value=v) for k, v in common.items()]
        self.cross_view = CrossViewNode(context=self.context, parameter_overrides=overrides)
        self.filter = ParticleFilterNode(context=self.context, parameter_overrides=overrides)
        self.probe = rclpy.create_node("probe", context=self.context)
        topics = {"/cvgl/pose": PoseWithCovarianceStamped, "/cvgl/cross_view/pose": PoseWithCovarianceStamped,
                  "/cvgl/likelihood": PointCloud2, "/cvgl/cross_view/frame_status": DiagnosticArray,
                  "/diagnostics": DiagnosticArray, "/cvgl/debug/overlay": Image, "/cvgl/retrieval": PointCloud2}
        super().__init__(topics)
        for topic, cls in topics.items():
            self.probe.create_subscription(cls, topic, lambda m, t=topic: self._add(t, m), RESULT_QOS)
        self.pub = {"image": self.probe.create_publisher(Image, B.TOPIC_IMAGE, RESULT_QOS),
                    "compressed": self.probe.create_publisher(CompressedImage, B.TOPIC_IMAGE_COMPRESSED, RESULT_QOS),
                    "info": self.probe.create_publisher(CameraInfo, B.TOPIC_CAMERA_INFO, RESULT_QOS),
                    "fix": self.probe.create_publisher(NavSatFix, B.TOPIC_GNSS_FIX, RESULT_QOS)}
        self.executor = SingleThreadedExecutor(context=self.context)
        for n in (self.cross_view, self.filter, self.probe):
            self.executor.add_node(n)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=spin_until_stopped, args=(self.executor, self.stop), daemon=True)
        self.thread.start()
        unused = "image" if common.get("image_transport") == "compressed" else "compressed"  # one transport
        assert self.wait(lambda: all(p.get_subscription_count() for k, p in self.pub.items() if k != unused), 20)
        self.image_hw = model_image_hw(model)

    def frame(self, stamp_ns: int, msg=None, timeout_s: float = 30.0):
        """Publish camera_info + a frame (default: a good one) and wait for its status."""
        h, w = self.image_hw
        k, _, _ = camera((h, w))
        self.publish("info", B.camera_info_msg(k, w, h, stamp_ns))
        time.sleep(0.05)
        if msg is None:
            rgb = np.random.default_rng(stamp_ns % 1000).integers(0, 255, (h, w, 3), dtype=np.uint8)
            msg = B.image_msg(rgb, stamp_ns)
        kind = "compressed" if type(msg).__name__.startswith("sensor_msgs__msg__CompressedImage") else "image"
        self.publish(kind, msg)
        assert self.wait(lambda: self.status_for(stamp_ns) is not None, timeout_s), "no frame status"
        return self.status_for(stamp_ns)

    def fix(self, stamp_ns: int, east=0.0, north=0.0, status=0, lat=None):
        la, lo, al = DATUM.to_wgs84(east, north, 0.0)
        msg = B.navsatfix_msg(float(la) if lat is None else lat, float(lo), float(al), stamp_ns, sigma_m=2.0,
                              status=status)
        self.publish("fix", msg)

    def close(self):
        import rclpy

        self.stop.set()
        self.thread.join(timeout=10.0)
        self.cross_view.close()
        self.filter.close()
        self.executor.shutdown(timeout_sec=10.0)
        for n in (self.cross_view, self.filter, self.probe):
            n.destroy_node()
        rclpy.try_shutdown(context=self.context)
