"""`cvgl demo` end to end on small data it reuses (a synthetic world cache and drive in the
places the demo looks): lockstep replay through the node processes, evaluate_track, and a
report with the Table-III-style table and the PNGs."""
import json
import shutil
import subprocess

from test_nodes_support import REPO, model_image_hw, shipped_model, write_drive, write_tiles


def test_demo_replays_evaluates_and_writes_the_report(cvgl_bin, tmp_path):
    model = shipped_model()
    h, w = model_image_hw(model)
    data, out = tmp_path / "data", tmp_path / "report"
    world = data / "world"
    world.mkdir(parents=True)
    write_tiles(world / "tiles.mbtiles")
    (world / "world.json").write_text(json.dumps({"note": "test stand-in for `cvgl sim world`"}))
    write_drive(data / f"drive_urban_canyon_seed1_3s_{w}x{h}_4hz", duration_s=3.0, camera_hz=4.0, image_hw=(h, w))
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
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in report
    assert "fused mean error" in report.lower()
