"""Bad input on the topics, one test per case: the nodes keep running, say so in /diagnostics
(and in the cross-view node's per-frame status), and never publish NaN."""
import math

import numpy as np
import pytest

from cvgl_ros.datasets import bag as B
from cvgl_ros.nodes.conversions import cloud_points, pose_msg_to_xy_yaw
from test_nodes_support import LiveNodes, camera, shipped_model, write_tiles

pytestmark = pytest.mark.ros  # real rclpy nodes over DDS (`-m "not ros"` leaves them out)

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    return write_tiles(tmp_path_factory.mktemp("tiles") / "tiles.mbtiles")


@pytest.fixture
def nodes(tiles):
    live = LiveNodes(tiles, shipped_model())
    yield live
    live.close()


def _warn(status) -> bool:
    return status.level != b"\x00"


def _no_nan_published(live):
    for topic in ("/cvgl/pose", "/cvgl/cross_view/pose"):
        for msg in live.got[topic]:
            e, n, yaw, cov = pose_msg_to_xy_yaw(msg)
            assert np.all(np.isfinite([e, n, yaw])) and np.all(np.isfinite(cov)), topic
    for msg in live.got["/cvgl/likelihood"]:
        pts = cloud_points(msg)
        for name in ("x", "y", "yaw", "log_likelihood"):
            assert np.all(np.isfinite(pts[name]))


def _still_works(live, stamp_ns):
    """A good fix and frame after the fault are processed: the node kept running."""
    live.fix(stamp_ns - S // 10)
    status = live.frame(stamp_ns)
    assert status.message == "processed", status.message
    assert live.wait(lambda: live.got["/cvgl/likelihood"], 10)
    _no_nan_published(live)


def _diag_says(live, node, text):
    return live.wait(lambda: text in live.last_diag(node).get("recent_problems", ""), 10)


def _image(encoding="rgb8", h=8, w=8, step=None, data=None, stamp=T0):
    msg = B.image_msg(np.zeros((h, w, 3), np.uint8), stamp)
    msg.encoding = encoding
    if step is not None:
        msg.step = step
    if data is not None:
        msg.data = np.frombuffer(data, np.uint8)
    return msg


@pytest.mark.parametrize("case,make,expect", [
    ("empty image", lambda t: _image(data=b"", stamp=t), "empty image"),
    ("unknown encoding", lambda t: _image("yuv422", stamp=t), "unknown image encoding 'yuv422'"),
    ("step mismatch", lambda t: _image(step=20, stamp=t), "step 20 is shorter"),
    ("size mismatch", lambda t: _image(h=9, data=b"\0" * 192, stamp=t), "expected step*height"),
])
def test_bad_camera_frames_are_skipped_and_reported(nodes, case, make, expect):
    nodes.fix(T0)
    status = nodes.frame(T0 + S // 10, make(T0 + S // 10))
    assert _warn(status) and expect in status.message, status.message
    assert _diag_says(nodes, "cross_view_node", expect)
    _still_works(nodes, T0 + S)


@pytest.mark.parametrize("case,kwargs,expect", [
    ("NaN fix", {"lat": float("nan")}, "non-finite position"),
    ("NO_FIX", {"status": -1}, "NO_FIX"),
])
def test_bad_gnss_fixes_are_ignored_and_reported_by_both_nodes(nodes, case, kwargs, expect):
    nodes.fix(T0, **kwargs)
    status = nodes.frame(T0 + S // 10)
    assert _warn(status) and "no position prior" in status.message  # the only fix was unusable
    assert _diag_says(nodes, "cross_view_node", expect)
    assert _diag_says(nodes, "particle_filter_node", expect)
    assert not nodes.got["/cvgl/pose"]
    _still_works(nodes, T0 + S)


def test_a_camera_stamp_going_backwards_is_skipped_and_reported(nodes):
    nodes.fix(T0 + 2 * S)
    assert nodes.frame(T0 + 2 * S + S // 10).message == "processed"
    status = nodes.frame(T0 + S)  # a second earlier
    assert _warn(status) and "went backwards by 1.100 s" in status.message
    assert _diag_says(nodes, "cross_view_node", "went backwards")
    _still_works(nodes, T0 + 3 * S)


def test_no_tiles_under_the_prior_is_skipped_and_reported(nodes):
    nodes.fix(T0, east=4000.0, north=-3000.0)  # far outside the tile cache
    status = nodes.frame(T0 + S // 10)
    assert _warn(status) and "no tiles under the prior" in status.message, status.message
    assert _diag_says(nodes, "cross_view_node", "no tiles under the prior")
    assert nodes.wait(lambda: int(nodes.last_diag("cross_view_node").get("tile_misses", 0)) > 0, 10)
    assert not nodes.got["/cvgl/likelihood"]
    _still_works(nodes, T0 + S)  # a fix back over the tiles (during warm-up the filter re-seeds there)


def test_frames_without_camera_info_or_with_bad_intrinsics_are_reported(nodes):
    nodes.fix(T0)
    h, w = nodes.image_hw
    bad = B.camera_info_msg(np.zeros((3, 3)), w, h, T0)
    nodes.publish("info", bad)
    assert _diag_says(nodes, "cross_view_node", "unusable intrinsics")
    _still_works(nodes, T0 + S)


def _both_transports(live, stamp_ns):
    """The same good frame on camera/image_raw and camera/image_raw/compressed; its statuses."""
    import cv2

    h, w = live.image_hw
    rgb = np.random.default_rng(3).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    k, _, _ = camera((h, w))
    live.fix(stamp_ns - S // 10)
    live.publish("info", B.camera_info_msg(k, w, h, stamp_ns))
    live.publish("image", B.image_msg(rgb, stamp_ns))
    live.publish("compressed", B.compressed_image_msg(jpeg.tobytes(), stamp_ns))
    assert live.wait(lambda: live.status_for(stamp_ns) is not None, 30)
    live.wait(lambda: False, 1.5)  # a second copy would have its status by now
    stamps = [m for m in live.got["/cvgl/cross_view/frame_status"]
              if m.header.stamp.sec * S + m.header.stamp.nanosec == stamp_ns]
    return [m.status[0].message for m in stamps]


def test_one_image_transport_each_frame_once_raw(nodes):
    assert _both_transports(nodes, T0 + S) == ["processed"]


def test_one_image_transport_each_frame_once_compressed_and_a_corrupt_jpeg_is_reported(tiles):
    live = LiveNodes(tiles, shipped_model(), image_transport="compressed")
    try:
        live.fix(T0)
        status = live.frame(T0 + S // 10, B.compressed_image_msg(b"\xff\xd8\xff\xe0" + b"\0" * 50, T0 + S // 10))
        assert _warn(status) and "could not be decoded" in status.message, status.message
        assert _both_transports(live, T0 + 2 * S) == ["processed"]
    finally:
        live.close()
