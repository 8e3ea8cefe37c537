"""A lockstep replay does not depend on the machine's speed: the same drive replayed twice,
once on a quiet machine and once beside busy processes, gives the same likelihood volumes
(centred on the same priors) and the same fused poses, to the bit.

Each frame's prior is the filter's pose answering the previous frame (or the previous fix),
and that pose reaches the cross-view node over DDS beside the player's next frame: without
the wait for it (`lockstep_filter_pose_wait_s`, and the filter's GNSS echo sent after its
pose), the two runs part from the first frames under load."""
import multiprocessing
import os

import pytest

from cvgl_ros.datasets.bag import read_messages
from cvgl_ros.stamps import stamp_to_ns
from test_nodes_support import model_image_hw, shipped_model, write_drive, write_tiles

pytestmark = pytest.mark.ros  # real rclpy nodes over DDS (`-m "not ros"` leaves them out)


def _burn(stop):
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _outputs(out):
    volumes = {stamp_to_ns(m.header.stamp): bytes(m.data) for _, _, _, m in read_messages(out, ["/cvgl/likelihood"])}
    poses = {stamp_to_ns(m.header.stamp): (m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.orientation.z)
             for _, _, _, m in read_messages(out, ["/cvgl/pose"])}
    return volumes, poses


def test_a_replay_beside_busy_processes_gives_the_same_results_as_on_a_quiet_machine(tmp_path):
    from cvgl_ros.replay import replay_bag

    model = shipped_model()
    tiles = write_tiles(tmp_path / "tiles.mbtiles")
    bag = write_drive(tmp_path / "drive", duration_s=4.0, camera_hz=5.0, gnss_hz=5.0, image_hw=model_image_hw(model))
    overrides = {"prior_yaw_max_std_deg": 360.0, "widen_yaw_search": False}   # one network window per frame
    results = []
    for busy in (False, True):
        stop = multiprocessing.Event()
        burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True)
                   for _ in range(2 * (os.cpu_count() or 1) if busy else 0)]
        for p in burners:
            p.start()
        try:
            out = tmp_path / f"out_{'busy' if busy else 'quiet'}"
            summary = replay_bag(bag, out, tiles=tiles, model=model, lockstep=True, progress=False,
                                 overrides=overrides, log_dir=tmp_path / f"logs_{busy}")
        finally:
            stop.set()
            for p in burners:
                p.join(timeout=10)
        assert summary.lockstep_timeouts == 0, summary.lockstep_timeout_details
        results.append(_outputs(out))
    (quiet_volumes, quiet_poses), (busy_volumes, busy_poses) = results
    assert len(quiet_volumes) >= 15 and quiet_volumes.keys() == busy_volumes.keys()
    differing = sorted(t for t in quiet_volumes if quiet_volumes[t] != busy_volumes[t])
    assert not differing, f"{len(differing)} of {len(quiet_volumes)} volumes differ, the first at {differing[0]}"
    assert quiet_poses == busy_poses
