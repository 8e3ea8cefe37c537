"""`cvgl federated` refuses bad input with one line on stderr and exit status 2, before starting any process."""
import subprocess

import pytest

from cvgl_ros.cli.main import main
from support.federated_fixtures import write_tiny_model_config, write_tiny_pairs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return write_tiny_pairs(root / "ds", worlds=2, drives_per_world=2, pairs_per_drive=4), \
        write_tiny_model_config(root / "tiny.yaml"), root


def _status(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:          # argparse usage errors
        return exc.code


@pytest.mark.parametrize("extra, message", [
    (["--clients", "5"], "too small for 5 vehicles: it has 4 drive(s)"),
    (["compare", "--clients", "9"], "too small for 9 vehicles"),
    (["--clients", "4", "--max-train-pairs", "1"], "vehicle 0 gets 1 training pair(s), fewer than one batch of 2"),
    (["--strategy", "fedprox"], "argument --strategy: invalid choice: 'fedprox'"),
    (["--clients", "1"], "federated setting vehicles = 1: must be greater than or equal to 2"),
    (["--clients", "3", "--min-clients", "4"], "min available vehicles must be in [1, 3]"),
    (["--rounds", "0"], "must be a positive integer"),
    (["--engine", "ray"], "argument --engine: invalid choice"),
    (["--eval-split", "val"], "has no split 'val'"),
])
def test_bad_input_is_one_line_and_exit_2(tiny, capsys, extra, message):
    data, config, root = tiny
    out = root / "never"
    status = _status(["federated", *extra, "--data", str(data), "--out", str(out), "--config", str(config)])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not out.exists()


def test_missing_data_set_and_config_are_one_line(tiny, capsys):
    data, config, root = tiny
    for args, message in [
        (["--data", str(root / "nothing"), "--config", str(config)], "no such data set directory"),
        (["--data", str(root), "--config", str(config)], "is not a pair data set"),
        (["--data", str(data), "--config", str(root / "missing.yaml")], "no such config file"),
    ]:
        assert _status(["federated", *args, "--out", str(root / "never")]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err


def test_the_installed_command_exits_2_with_one_line(cvgl_bin, tiny):
    data, _, root = tiny
    result = subprocess.run([cvgl_bin, "federated", "--clients", "6", "--data", str(data), "--out", str(root / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"cvgl: error: data set {data} is too small for 6 vehicles: it has 4 drive(s) "
                                     f"and 16 pair(s) in its training split; each vehicle needs at least one drive "
                                     f"of its own")
