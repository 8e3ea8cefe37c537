"""`cvgl replay` and `cvgl launch` refuse bad input with one line on stderr and exit 2."""
import subprocess

import pytest

from cvgl_ros.datasets import bag as B
from test_nodes_support import DATUM, REPO


def _run(cvgl_bin, *args):
    return subprocess.run([cvgl_bin, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def _bag_without_camera(path):
    with B.BagWriter(path) as bag:
        bag.set_datum(DATUM)
        bag.write(B.TOPIC_GNSS_FIX, B.MSG_NAVSATFIX, 10**9, B.navsatfix_msg(49.01, 8.42, 115.0, 10**9, sigma_m=2.0))
    return path


def _one_frame_bag(path, datum_text=None, camera_as=B.MSG_IMAGE):
    """A camera frame and a fix; the datum text as given (None: DATUM), the camera topic written
    with the type `camera_as`."""
    import numpy as np

    with B.BagWriter(path) as bag:
        if datum_text is None:
            bag.set_datum(DATUM)
        else:
            bag.set_custom_data(B.DATUM_KEY, datum_text)
        bag.write(B.TOPIC_GNSS_FIX, B.MSG_NAVSATFIX, 10**9, B.navsatfix_msg(49.01, 8.42, 115.0, 10**9, sigma_m=2.0))
        rgb = np.zeros((8, 8, 3), np.uint8)
        frame = B.image_msg(rgb, 10**9) if camera_as == B.MSG_IMAGE else B.compressed_image_msg(b"\xff\xd8", 10**9)
        bag.write(B.TOPIC_IMAGE, camera_as, 10**9, frame)
    return path


@pytest.mark.parametrize("case", ["missing bag", "not a bag", "no camera", "bad rate", "bad override", "same out",
                                  "datum nan", "datum latitude 95", "datum garbage", "camera of another type"])
def test_replay_bad_input_is_one_line_exit_2(cvgl_bin, tmp_path, case):
    bag = _bag_without_camera(tmp_path / "gnss_only")
    bad_bag = {"datum nan": lambda: _one_frame_bag(tmp_path / "b", datum_text="nan,nan,0"),
               "datum latitude 95": lambda: _one_frame_bag(tmp_path / "b", datum_text="95,8.42,115"),
               "datum garbage": lambda: _one_frame_bag(tmp_path / "b", datum_text="garbage"),
               "camera of another type": lambda: _one_frame_bag(tmp_path / "b", camera_as=B.MSG_COMPRESSED),
               }.get(case, lambda: None)()
    args = {
        "missing bag": ["--bag", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
        "not a bag": ["--bag", str(tmp_path), "--out", str(tmp_path / "o")],
        "no camera": ["--bag", str(bag), "--out", str(tmp_path / "o")],
        "bad rate": ["--bag", str(bag), "--out", str(tmp_path / "o"), "--rate", "-1"],
        "bad override": ["--bag", str(bag), "--out", str(tmp_path / "o"), "-p", "tiles"],
        "same out": ["--bag", str(bag), "--out", str(bag)],
    }.get(case, ["--bag", str(bad_bag), "--out", str(tmp_path / "o")])
    out = _run(cvgl_bin, "replay", *args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in out.stderr
    expected = {"datum nan": "finite", "datum latitude 95": "latitude 95", "datum garbage": "'garbage'",
                "camera of another type": "sensor_msgs/msg/CompressedImage, but the nodes subscribe to it as "
                                          "sensor_msgs/msg/Image"}.get(case, "")
    assert expected in lines[0]
    assert not (tmp_path / "o").exists()


def test_launch_bad_params_file_is_one_line_exit_2(cvgl_bin, tmp_path):
    out = _run(cvgl_bin, "launch", "--params", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no such parameter file" in out.stderr


@pytest.mark.ros
def test_replay_stopped_by_sigterm_stops_its_nodes(cvgl_bin, tmp_path):
    import os
    import signal
    import time

    from test_nodes_support import write_drive

    bag = write_drive(tmp_path / "drive", duration_s=60.0, camera_hz=2.0)
    proc = subprocess.Popen([cvgl_bin, "replay", "--bag", str(bag), "--out", str(tmp_path / "o"), "--rate", "1",
                             "--log-dir", str(tmp_path / "logs")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (tmp_path / "logs" / "particle_filter_node.log").is_file():
        time.sleep(0.2)
    while time.monotonic() < deadline and "spinning" not in (tmp_path / "logs" / "particle_filter_node.log").read_text():
        time.sleep(0.2)
    time.sleep(3.0)  # playing
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-2000:]
    for exe in ("cross_view_node", "particle_filter_node"):
        assert "shutting down" in (tmp_path / "logs" / f"{exe}.log").read_text()
    assert not (tmp_path / "o").exists()  # an interrupted recording leaves no half bag
    assert not any(str(tmp_path) in line for line in os.popen("ps -eo args").read().splitlines())


@pytest.mark.ros
def test_rate_playback_follows_the_bag_clock(tmp_path):
    from cvgl_ros.datasets.bag import read_messages
    from cvgl_ros.stamps import stamp_to_ns
    from cvgl_ros.replay import replay_bag
    from test_nodes_support import write_drive

    bag = write_drive(tmp_path / "drive", duration_s=3.0, camera_hz=2.0)
    # no tiles/model: the cross-view node reports every frame as skipped; the filter runs on GNSS
    s = replay_bag(bag, tmp_path / "out", rate=2.0, progress=False, log_dir=tmp_path / "logs")
    assert s.frames == 6 and s.frames_skipped == 6 and s.poses > 0
    assert s.wall_s >= 0.9 * s.bag_duration_s / 2.0  # paced by the bag's stamps, not as fast as possible
    assert s.real_time_factor <= 2.2
    start = min(t for _, _, t, _ in read_messages(bag))
    end = max(t for _, _, t, _ in read_messages(bag))
    poses = [(t, stamp_to_ns(m.header.stamp)) for _, _, t, m in read_messages(tmp_path / "out", ["/cvgl/pose"])]
    assert poses and all(log >= start for log, _ in poses)  # logged on the replayed /clock
    # the output's start and duration are the recording's (what the nodes said while coming up
    # is logged at its start, not at time 0)
    from rosbags.rosbag2 import Reader

    with Reader(tmp_path / "out") as reader:
        assert start <= reader.start_time and reader.end_time <= end + 10**9
    assert s.domain_id >= 0 and f"ROS domain {s.domain_id}" in s.isolation and "localhost" in s.isolation
