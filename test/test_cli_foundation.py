"""The `cvgl` entry point: help, doctor, geo, bench, and one-line errors for bad input."""
import json
import subprocess

import pytest


def run(cvgl_bin, *args, timeout=120):
    return subprocess.run([cvgl_bin, *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_subcommands(cvgl_bin):
    out = run(cvgl_bin, "--help")
    assert out.returncode == 0
    for name in ("doctor", "geo", "bench"):
        assert name in out.stdout


def test_doctor_names_rmw_and_onnxruntime_providers(cvgl_bin):
    out = run(cvgl_bin, "doctor")
    assert out.returncode == 0, out.stderr
    assert "rmw_implementation" in out.stdout and "rmw_fastrtps_cpp" in out.stdout
    assert "onnxruntime_providers" in out.stdout and "CPUExecutionProvider" in out.stdout


def test_geo_enu_and_back(cvgl_bin):
    out = run(cvgl_bin, "geo", "enu", "--datum", "49,8.4", "--lat", "49.001", "--lon", "8.4")
    assert out.returncode == 0, out.stderr
    east, north, _ = (float(v) for v in out.stdout.strip().splitlines()[1].split(","))
    assert abs(east) < 1e-3 and 111.0 < north < 111.4
    out = run(cvgl_bin, "geo", "wgs84", "--datum", "49,8.4", "--east", "0", "--north", f"{north}")
    assert "lat_deg=49.001000" in out.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["frobnicate"], "invalid choice"),
        (["geo", "enu", "--datum", "91,8", "--lat", "1", "--lon", "1"], "latitude 91"),
        (["geo", "tile", "--lat", "91", "--lon", "0"], "latitude 91"),
        (["geo", "enu", "--datum", "49,8", "--csv", "/nonexistent/points.csv"], "no such file"),
        (["geo", "tile", "--lat", "10", "--lon", "0", "--zoom", "40"], "zoom 40"),
        (["bench", "--only", "no_such_benchmark"], "unknown benchmark"),
        (["geo", "tile", "--lat", "90", "--lon", "0"], "latitude 90"),
        (["geo", "tile", "--lat", "10", "--lon", "0", "--zoom", "-5"], "zoom -5"),
        (["geo", "enu", "--datum", "-33.86,nan", "--lat", "1", "--lon", "1"], "not a finite number"),
        (["sim", "drive", "--world", ".", "--duration-s", "1e9", "--out", "x"], "longer than 3600"),
        (["launch", "--dry-run", "-p", "use_sim_tme:=true"], "did you mean use_sim_time"),
    ],
)
def test_bad_input_is_one_line_exit_2(cvgl_bin, args, words):
    out = run(cvgl_bin, *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert words in lines[0]
    assert "Traceback" not in out.stderr


def test_bench_geo_writes_json(cvgl_bin, tmp_path):
    path = tmp_path / "b.json"
    out = run(cvgl_bin, "bench", "--only", "geo", "--out", str(path), timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(path.read_text())
    machine = report["machine"]
    for key in ("cpu_model", "cpu_cores", "versions", "git_commit", "timestamp_utc"):
        assert machine[key], key
    geo = report["benchmarks"]["geo"]
    assert geo["ok"] and geo["peak_rss_mb"] > 0
    case = geo["cases"]["wgs84_to_enu_1e6"]
    assert case["items_per_call"] == 1_000_000
    assert 0 < case["median_ms"] <= case["p95_ms"]
    assert case["throughput_per_s"] > 0


def test_negative_numbers_in_comma_lists_are_values(cvgl_bin):
    """West of Greenwich and south of the equator: `--datum -33.86,-151.2` is a value, not an option."""
    out = run(cvgl_bin, "geo", "wgs84", "--datum", "-33.86,-151.2", "--east", "-100", "--north", "0")
    assert out.returncode == 0, out.stderr
    values = dict(item.split("=") for item in out.stdout.split())
    assert float(values["lat_deg"]) == pytest.approx(-33.86, abs=1e-6)
    assert float(values["lon_deg"]) == pytest.approx(-151.2 - 100 / 92_500, abs=2e-5)
