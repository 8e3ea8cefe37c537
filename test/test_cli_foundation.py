"""The `cvgl` entry point: help, doctor, geo, bench, and one-line errors for bad input."""
import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(cvgl_bin, *args, timeout=120):
    return subprocess.run([cvgl_bin, *args], capture_output=True, text=True, timeout=timeout)


# Every command of `cvgl`: a command that goes missing (or one added without a README row)
# fails here.
COMMANDS = {"doctor", "geo", "bench", "sim", "import", "tiles", "train", "evaluate", "export", "evaluate-track",
            "launch", "replay", "demo", "evaluate-fleet", "federated", "train-retrieval", "retrieval"}


def test_help_lists_every_command_and_the_readme_documents_each(cvgl_bin):
    out = run(cvgl_bin, "--help")
    assert out.returncode == 0, out.stderr
    listed = set(re.findall(r"^    ([a-z][a-z-]*)(?:\s|$)", out.stdout, re.MULTILINE))
    assert listed == COMMANDS
    documented = set(re.findall(r"^\| `cvgl ([a-z][a-z-]*)", (REPO / "README.md").read_text(), re.MULTILINE))
    assert documented == COMMANDS


def subcommands(parser) -> dict:
    """{name: parser} of a parser's subcommands."""
    import argparse

    return {name: sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()}


def test_every_command_module_is_registered_and_a_missing_one_fails_loudly(monkeypatch):
    from cvgl_ros.cli import main

    modules = {p.stem for p in (REPO / "cvgl_ros" / "cli").glob("*.py") if "def register(" in p.read_text()}
    assert modules == {*main.SUBCOMMAND_MODULES, "sim_drive"}           # sim_drive registers `cvgl sim drive`
    commands = subcommands(main.build_parser())
    assert set(commands) == COMMANDS
    assert set(subcommands(commands["sim"])) == {"world", "drive", "pairs", "preview"}
    monkeypatch.setattr(main, "SUBCOMMAND_MODULES", [*main.SUBCOMMAND_MODULES, "no_such_command"])
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        main.build_parser()


def test_doctor_names_rmw_and_onnxruntime_providers(cvgl_bin):
    out = run(cvgl_bin, "doctor")
    assert out.returncode == 0, out.stderr
    assert "rmw_implementation" in out.stdout and "rmw_fastrtps_cpp" in out.stdout
    assert "onnxruntime_providers" in out.stdout and "CPUExecutionProvider" in out.stdout
    # .venv has tf2_msgs (built by make setup) and no tf2_ros: TF is on, through TFMessage
    assert "tf2_msgs only" in out.stdout, out.stdout


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
