"""The coarse stage over real DDS: the cross-view node with a small descriptor grid publishes
/cvgl/retrieval for a frame; the particle-filter node fuses such a message and moves toward
the best cell; bad clouds are one-line diagnostics."""
import math

import numpy as np
import pytest

from cvgl_ros.filter.measurements import GridScores
from cvgl_ros.nodes.conversions import pose_msg_to_xy_yaw
from cvgl_ros.nodes.retrieval_messages import cloud_to_scores, scores_to_cloud
from cvgl_ros.stamps import stamp_to_ns
from test_nodes_support import DATUM, LiveNodes, shipped_model, write_tiles

pytestmark = pytest.mark.ros  # real rclpy nodes over DDS

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    """A tiny exported descriptor model and a 5 m grid of random unit descriptors at the test datum."""
    import torch

    from cvgl_ros.models.descriptor import DescriptorConfig, DescriptorNet
    from cvgl_ros.retrieval.encoders import DescriptorModel
    from cvgl_ros.retrieval.index import DescriptorIndex
    from cvgl_ros.train.retrieval import RetrievalConfig
    from cvgl_ros.train.retrieval_export import export_descriptor

    root = tmp_path_factory.mktemp("coarse")
    torch.manual_seed(0)
    config = RetrievalConfig(model=DescriptorConfig(image_hw=(32, 128), patch_px=32, patch_mpp=1.6,
                                                    polar_hw=(32, 128), channels=(8, 8, 16, 16), attention_maps=2,
                                                    sector_dim=4))
    export_descriptor(DescriptorNet(config.model).eval(), config, root / "model", history=[], provenance={})
    model = DescriptorModel(root / "model")
    axis = np.arange(-60.0, 61.0, 5.0)
    ee, nn = np.meshgrid(axis, axis)
    desc = np.random.default_rng(0).normal(size=(ee.size, model.descriptor_dim)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    meta = {"model": {"card": str(model.card_path), "ground_sha256": model.sha256("ground")}}
    return DescriptorIndex(np.column_stack([ee.ravel(), nn.ravel()]), desc, DATUM, 5.0, meta).save(root / "grid.npz")


def test_the_cross_view_node_publishes_grid_scores_for_a_frame(tmp_path, grid_file):
    nodes = LiveNodes(write_tiles(tmp_path / "tiles.mbtiles"), shipped_model(), retrieval_index=str(grid_file),
                      retrieval_max_cells=30)
    try:
        nodes.fix(T0, east=3.0, north=-2.0)
        stamp = T0 + S // 10
        assert nodes.frame(stamp).message == "processed"
        assert nodes.wait(lambda: nodes.got["/cvgl/retrieval"], 10)
        cloud = nodes.got["/cvgl/retrieval"][0]
        assert cloud.header.frame_id == "map" and [f.name for f in cloud.fields] == ["x", "y", "z", "score"]
        grid = cloud_to_scores(cloud)
        assert grid.stamp_ns == stamp and 2 <= len(grid) <= 30 and grid.spacing_m == 5.0
        assert np.all((grid.scores > 0) & (grid.scores <= 1)) and np.all(np.isfinite(grid.scores))
        near = np.linalg.norm(grid.positions_en_m - [3.0, -2.0], axis=1)
        assert near.max() < 40.0                                     # the cells nearest the prior
        assert nodes.wait(lambda: "latency_retrieval_ms" in nodes.last_diag("cross_view_node"), 10)
        d = nodes.last_diag("cross_view_node")
        assert d["coarse_stage"] == "on" and int(d["retrieval_searches"]) >= 1 and d["coarse_stage_reason"]
        assert float(d["latency_retrieval_ms"]) > 0
        # the filter node took it in (its estimate is unverified: 3 sigma beyond the dense patch)
        assert nodes.wait(lambda: nodes.last_diag("particle_filter_node").get("coarse_stage") == "on", 10)
    finally:
        nodes.close()


def test_a_frame_waiting_for_the_yaw_is_searched_by_the_coarse_stage_alone_and_the_filter_answers_it(
        tmp_path, grid_file):
    # the filter's yaw is never certain enough for the dense network (1 deg), always for the sectors
    nodes = LiveNodes(write_tiles(tmp_path / "tiles.mbtiles"), shipped_model(), retrieval_index=str(grid_file),
                      retrieval_max_cells=30, prior_yaw_max_std_deg=1.0, retrieval_yaw_max_std_deg=180.0)
    try:
        nodes.fix(T0, east=3.0, north=-2.0)
        assert nodes.wait(lambda: nodes.got["/cvgl/pose"], 10)
        first, second = T0 + S // 10, T0 + 2 * S // 10
        full_circle, waiting = nodes.frame(first), nodes.frame(second)
        values = lambda status: {kv.key: kv.value for kv in status.values}  # noqa: E731
        assert full_circle.message == "processed" and values(full_circle)["filter_inputs"] == "2"
        assert waiting.message == ("processed: coarse stage only (yaw prior unknown: full-circle search on every "
                                   "10th frame only)")
        assert waiting.level == b"\x00" and values(waiting)["filter_inputs"] == "1"
        stamps = lambda topic: [stamp_to_ns(m.header.stamp) for m in nodes.got[topic]]  # noqa: E731
        assert nodes.wait(lambda: second in stamps("/cvgl/retrieval") and second in stamps("/cvgl/pose"), 10)
        assert second not in stamps("/cvgl/likelihood") and first in stamps("/cvgl/likelihood")
        assert nodes.wait(lambda: nodes.last_diag("cross_view_node").get("frames_coarse_only") == "1", 10)
    finally:
        nodes.close()


def test_the_cross_view_node_without_an_index_or_with_a_bad_one_runs_as_before(tmp_path):
    nodes = LiveNodes(write_tiles(tmp_path / "tiles.mbtiles"), shipped_model(),
                      retrieval_index=str(tmp_path / "missing.npz"))
    try:
        nodes.fix(T0)
        assert nodes.frame(T0 + S // 10).message == "processed"
        assert nodes.wait(lambda: nodes.got["/cvgl/likelihood"], 10)
        assert nodes.wait(lambda: "unavailable" in nodes.last_diag("cross_view_node").get("coarse_stage_reason", ""),
                          10)
        assert not nodes.got["/cvgl/retrieval"]
    finally:
        nodes.close()


def test_the_filter_node_fuses_grid_scores_and_moves_toward_the_best_cell():
    from test_nodes_filter_node import Harness
    from sensor_msgs.msg import PointCloud2

    from cvgl_ros.nodes.runner import RESULT_QOS

    h = Harness()
    try:
        pub = h.probe.create_publisher(PointCloud2, "/cvgl/retrieval", RESULT_QOS)
        assert h.spin_until(lambda: pub.get_subscription_count() > 0)
        h.drive(5, speed=0.0)
        best = np.array([4.0, 2.0])                                  # 4.5 m from the fixes at the origin
        axis = np.arange(-30.0, 31.0, 5.0)
        ee, nn = np.meshgrid(axis, axis)
        pos = np.column_stack([ee.ravel(), nn.ravel()])
        scores = np.exp(-np.minimum(4.0, np.linalg.norm(pos - best, axis=1) / 3.0))
        before = pose_msg_to_xy_yaw(h.got["/cvgl/pose"][-1])
        for j in range(8):
            stamp = T0 + S + j * S // 10
            n = len(h.got["/cvgl/pose"])
            pub.publish(scores_to_cloud(GridScores(pos, scores, stamp)))
            assert h.spin_until(lambda: len(h.got["/cvgl/pose"]) > n), f"no pose after retrieval {j}"
        after = pose_msg_to_xy_yaw(h.got["/cvgl/pose"][-1])
        gap = lambda p: math.hypot(p[0] - best[0], p[1] - best[1])  # noqa: E731
        assert gap(after) < 0.5 * gap(before), (before[:2], after[:2])
        assert h.spin_until(lambda: int(h.diag().get("retrieval_applied", 0)) == 8)
        d = h.diag()
        assert d["coarse_stage"] == "on" and "dense patch" in d["coarse_stage_reason"]
        pub.publish(scores_to_cloud(GridScores(pos, scores, T0 + 3 * S), frame_id="odom"))
        assert h.spin_until(lambda: int(h.diag().get("retrieval_rejected", 0)) == 1)
        assert "'odom'" in h.diag()["last_problem"]
    finally:
        h.close()


def test_the_coarse_stage_of_the_node_runs_without_torch(grid_file):
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["torch"] = None          # any import of torch now fails
import numpy as np
import cvgl_ros.nodes.cross_view_node, cvgl_ros.nodes.particle_filter_node
from cvgl_ros.localization.coarse_stage import CoarseSearch, CoarseStage
search = CoarseSearch.open({str(grid_file)!r}, "", 30, CoarseStage(20.8))
scores = search.search(np.zeros((128, 512, 3), np.uint8), np.array([[256.0, 0, 256], [0, 256, 64], [0, 0, 1]]), 0.5,
                       0.0, 0.0, None, 1)
assert 2 <= len(scores) <= 30 and np.isfinite(scores.scores).all() and sys.modules["torch"] is None
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]
