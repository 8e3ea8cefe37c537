"""`cvgl demo` end to end on small data it reuses (a synthetic world cache and drive in the
places the demo looks): lockstep replay through the node processes, evaluate_track, and a
report with the Table-III-style table and the PNGs."""
import json
import math
import subprocess

import cv2
import numpy as np
import pytest

from cvgl_ros.datasets.bag import read_messages
from cvgl_ros.stamps import stamp_to_ns
from test_nodes_support import DATUM, REPO, model_image_hw, shipped_model, write_drive, write_tiles

pytestmark = pytest.mark.ros  # real rclpy nodes over DDS (`-m "not ros"` leaves them out)

T0 = 1_700_000_000_000_000_000  # write_drive's first stamp


def test_demo_replays_evaluates_and_writes_the_report(cvgl_bin, tmp_path):
    model = shipped_model()
    h, w = model_image_hw(model)
    data, out = tmp_path / "data", tmp_path / "report"
    world = data / "world"
    world.mkdir(parents=True)
    write_tiles(world / "tiles.mbtiles")
    (world / "world.json").write_text(json.dumps({"note": "test stand-in for `cvgl sim world`"}))
    drive = write_drive(data / f"drive_urban_canyon_seed1_3s_{w}x{h}_4hz", duration_s=3.0, camera_hz=4.0,
                        image_hw=(h, w))
    done = subprocess.run([cvgl_bin, "demo", "--data", str(data), "--out", str(out), "--model", str(model),
                           "--duration-s", "3", "--camera-hz", "4", "-p", "prior_yaw_max_std_deg:=360.0",
                           "-p", "widen_yaw_search:=false"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reusing the world" in done.stderr and "reusing the drive" in done.stderr
    report = (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    for method in ("fused", "gnss_raw", "gnss_particle_filter", "kalman_cv"):
        label = metrics["methods"][method]["label"]
        assert label in report and label in done.stdout  # the table is in the report and printed
    assert "| mean (m) |" in report
    assert "camera frames: 12, processed 12" in report
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 3
    for png in pngs:
        image = cv2.imread(str(png))                     # a whole picture, not just a PNG header
        assert image is not None and min(image.shape[:2]) >= 200 and image.std() > 0, png.name
        assert f"]({png.name})" in report

    # The numbers, recomputed from the bags: the drive goes straight east at 5 m/s from -10 m
    # (write_drive), so the truth at any stamp is known without interpolating anything.
    def truth_error(t_ns, east, north):
        return math.hypot(east - (-10.0 + 5.0 * (t_ns - T0) * 1e-9), north)

    first, last = T0, T0 + 14 * 200_000_000              # the 15 ground-truth poses (5 Hz)
    fused = {}                                           # one pose per stamp: the last one recorded
    for _, _, _, msg in read_messages(data / f"estimate_{drive.name}", ["/cvgl/pose"]):
        fused[stamp_to_ns(msg.header.stamp)] = (msg.pose.pose.position.x, msg.pose.pose.position.y)
    fused_errors = [truth_error(t, *xy) for t, xy in fused.items() if first <= t <= last]
    raw_errors = []
    for _, _, _, msg in read_messages(drive, ["/gnss/fix"]):
        east, north, _ = DATUM.to_enu(msg.latitude, msg.longitude, msg.altitude)
        raw_errors.append(truth_error(stamp_to_ns(msg.header.stamp), float(east), float(north)))
    expected = {"fused": fused_errors, "gnss_raw": raw_errors}
    for method, errors in expected.items():
        row = metrics["methods"][method]
        assert row["n"] == len(errors) and row["mean_m"] == pytest.approx(np.mean(errors), abs=1e-6), method
        assert row["p50_m"] == pytest.approx(np.median(errors), abs=1e-6), method
        assert f"| {row['label']} | {np.mean(errors):.2f} | {np.median(errors):.2f} |" in report
    fused_mean, raw_mean = np.mean(fused_errors), np.mean(raw_errors)
    verdict = "the fusion beats GNSS" if fused_mean < raw_mean else "the fusion does NOT beat GNSS"
    assert f"fused mean error {fused_mean:.2f} m vs raw GNSS {raw_mean:.2f} m: {verdict}" in report
