"""The cross-view node over real DDS with the shipped model: outputs, stale-frame dropping,
diagnostics."""
import numpy as np
import pytest

from cvgl_ros.datasets import bag as B
from cvgl_ros.nodes.conversions import cloud_to_volume, pose_msg_to_xy_yaw
from test_nodes_support import LiveNodes, shipped_model, write_tiles

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


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
    from cvgl_ros.nodes.conversions import stamp_ns
    from test_nodes_support import camera

    live = LiveNodes(tiles, shipped_model(), inference_workers=2, intra_op_threads=1)
    try:
        live.fix(T0)
        h, w = live.image_hw
        k, _, _ = camera((h, w))
        live.publish("info", B.camera_info_msg(k, w, h, T0))
        assert live.wait(lambda: live.cross_view.filter_prior is not None and live.cross_view.k is not None, 20)
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
        clouds = [stamp_ns(m.header.stamp) for m in live.got["/cvgl/likelihood"]]
        assert len(clouds) >= 3 and clouds == sorted(clouds) and len(set(clouds)) == len(clouds), clouds
        assert clouds[:2] == pair
    finally:
        live.close()
