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

DATUM = Datum(49.0100, 8.4200, 115.0)
REPO = Path(__file__).resolve().parents[1]


def shipped_model() -> Path:
    from cvgl_ros.nodes.cross_view_node import default_model_path

    path = default_model_path()
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
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _add(self, topic, msg):
        with self.lock:
            self.received[topic].append(msg)

    def wait_for(self, predicate, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.received):
                    return True
            time.sleep(0.05)
        return False

    def close(self):
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
