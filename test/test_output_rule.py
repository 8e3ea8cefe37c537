"""The one --out rule (cvgl_ros/atomic.py): the user's files survive every refusal, --force
replaces only the command's own names, cvgl's own earlier output is replaced on a rerun, an
output that is or contains an input is always refused, and SIGTERM leaves no temporaries."""
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cvgl_ros import atomic
from cvgl_ros.cli.main import main
from cvgl_ros.errors import InputError


def cvgl(*argv) -> tuple[int, str]:
    """Run `cvgl ARGV` in this process: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, err.getvalue()


def refused(code: int, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def user_files(directory: Path) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "notes.txt").write_text("my notes\n")
    (directory / "photos").mkdir(exist_ok=True)
    (directory / "photos" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return snapshot(directory)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    code, err = cvgl("sim", "world", "--seed", 3, "--size-m", 200, "--quiet", "--out", out)
    assert code == 0, err
    return out


DRIVE = ("--duration-s", 1, "--camera-hz", 2, "--width", 64, "--height", 32, "--quiet")


# -- the data-loss cases a review of the outputs found ------------------------------------

def test_sim_world_into_a_directory_of_user_files_is_refused_and_force_keeps_them(tmp_path, world):
    target = tmp_path / "mine"
    before = user_files(target)
    code, err = cvgl("sim", "world", "--seed", 3, "--size-m", 200, "--quiet", "--out", target)
    refused(code, err, "cvgl did not write", "notes.txt", "--force")
    assert snapshot(target) == before
    code, err = cvgl("sim", "world", "--seed", 3, "--size-m", 200, "--quiet", "--out", target, "--force")
    assert code == 0, err
    after = snapshot(target)
    assert {k: after[k] for k in before} == before              # the user's files, byte for byte
    assert (target / "world.json").read_bytes() == (world / "world.json").read_bytes()
    assert (target / atomic.MARKER).is_file()
    # The directory now carries cvgl's marker: a rerun replaces cvgl's files without --force
    # and still keeps the user's.
    (target / "world.json").write_text("stale")
    code, err = cvgl("sim", "world", "--seed", 3, "--size-m", 200, "--quiet", "--out", target)
    assert code == 0, err
    assert (target / "world.json").read_bytes() == (world / "world.json").read_bytes()
    assert {k: snapshot(target)[k] for k in before} == before
    assert not [p for p in target.iterdir() if p.name.endswith(".tmp")]


def test_sim_world_out_dot_in_a_directory_of_user_files_is_refused(tmp_path, monkeypatch):
    before = user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, err = cvgl("sim", "world", "--seed", 3, "--size-m", 200, "--quiet", "--out", ".")
    refused(code, err, "cvgl did not write")
    assert snapshot(tmp_path) == before


def test_sim_drive_out_equal_to_its_world_is_refused_even_with_force(world):
    before = snapshot(world)
    for extra in ((), ("--force",)):
        code, err = cvgl("sim", "drive", "--world", world, *DRIVE, "--out", world, *extra)
        refused(code, err, "is the input", "even with --force")
    assert snapshot(world) == before


def test_sim_drive_rerun_replaces_its_own_bag(tmp_path, world):
    bag = tmp_path / "drive"
    assert cvgl("sim", "drive", "--world", world, *DRIVE, "--seed", 1, "--out", bag)[0] == 0
    first = snapshot(bag)
    code, err = cvgl("sim", "drive", "--world", world, *DRIVE, "--seed", 2, "--out", bag)
    assert code == 0, err
    second = snapshot(bag)
    assert set(second) == set(first) and second["drive.mcap"] != first["drive.mcap"]


def test_replay_out_containing_the_input_bag_is_refused(tmp_path, world):
    data = tmp_path / "D"
    bag = data / "bag1"
    assert cvgl("sim", "drive", "--world", world, *DRIVE, "--out", bag)[0] == 0
    (data / "other.txt").write_text("keep me")
    before = snapshot(data)
    for extra in ((), ("--force",)):
        code, err = cvgl("replay", "--bag", bag, "--lockstep", "--out", data, *extra)
        refused(code, err, "contains the input", "bag1")
    assert snapshot(data) == before


def test_replay_and_sim_pairs_refuse_an_existing_file_as_their_output_directory(tmp_path, world):
    existing = tmp_path / "existing.txt"
    existing.write_text("precious\n")
    bag = tmp_path / "bag"
    assert cvgl("sim", "drive", "--world", world, *DRIVE, "--out", bag)[0] == 0
    for extra in ((), ("--force",)):
        code, err = cvgl("sim", "pairs", "--worlds", world, "--n", 4, "--quiet", "--out", existing, *extra)
        refused(code, err, "is a file", "writes a directory")
        code, err = cvgl("replay", "--bag", bag, "--lockstep", "--out", existing, *extra)
        refused(code, err, "is a file", "writes a directory")
    assert existing.read_text() == "precious\n"


def test_replay_summary_over_a_user_file_is_refused(tmp_path, world):
    bag = tmp_path / "bag"
    assert cvgl("sim", "drive", "--world", world, *DRIVE, "--out", bag)[0] == 0
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    code, err = cvgl("replay", "--bag", bag, "--lockstep", "--out", tmp_path / "est", "--summary", summary)
    refused(code, err, "cvgl did not write", "--force")
    assert summary.read_text() == "{}" and not (tmp_path / "est").exists()


# -- single files ---------------------------------------------------------------------------

def test_a_file_output_is_refused_over_a_user_file_and_replaced_when_cvgl_wrote_it(tmp_path, world):
    png = tmp_path / "patch.png"
    png.write_bytes(b"my drawing")
    cache = world / "tiles.mbtiles"
    args = ("tiles", "patch", "--cache", cache, "--lat", 49.0069, "--lon", 8.4037, "--size-px", 32, "--out", png)
    refused(*cvgl(*args), "cvgl did not write", "--force")
    assert png.read_bytes() == b"my drawing"
    assert cvgl(*args, "--force")[0] == 0
    first = png.read_bytes()
    assert first.startswith(b"\x89PNG") and atomic.sidecar_path(png).is_file()
    assert cvgl(*args)[0] == 0                                  # cvgl's own, unchanged: replaced
    png.write_bytes(first + b"edited by hand")                  # changed since: no longer cvgl's
    refused(*cvgl(*args), "cvgl did not write")
    assert png.read_bytes() == first + b"edited by hand"


@pytest.mark.parametrize("command", [
    ("tiles", "patch", "--lat", 49.0069, "--lon", 8.4037),
    ("tiles", "import-geotiff", "{tif}"),
])
def test_a_directory_where_a_file_output_belongs_is_one_line(tmp_path, world, command):
    tif = tmp_path / "x.tif"
    tif.write_bytes(b"II*\x00")
    target = tmp_path / "d.mbtiles" if "import-geotiff" in command else tmp_path / "d.png"
    target.mkdir()
    argv = [str(tif) if a == "{tif}" else a for a in command]
    if "patch" in command:
        argv += ["--cache", world / "tiles.mbtiles"]
    refused(*cvgl(*argv, "--out", target, "--force"), "is a directory")
    assert list(target.iterdir()) == []


def test_output_through_a_symlink_onto_an_input_is_refused(tmp_path, world):
    link = tmp_path / "link"
    link.symlink_to(world / "tiles.mbtiles")
    refused(*cvgl("tiles", "patch", "--cache", world / "tiles.mbtiles", "--lat", 49.0069, "--lon", 8.4037,
                  "--out", link, "--force"), "is the input")
    assert (world / "tiles.mbtiles").read_bytes()[:16] == b"SQLite format 3\x00"


# -- the rule itself ----------------------------------------------------------------------

def test_force_never_removes_entries_that_are_not_the_commands_own(tmp_path):
    target = tmp_path / "out"
    before = user_files(target)
    (target / "world.json").write_text("the user's own world.json")
    with pytest.raises(InputError, match="cvgl did not write"):
        atomic.claim_output(target, kind="dir", command="t", names=("world.json",))
    try:
        atomic.claim_output(target, kind="dir", command="t", names=("world.json",), force=True)
        with atomic.atomic_dir(target) as tmp:
            (tmp / "world.json").write_text("new")
    finally:
        atomic.release_claims()
    assert (target / "world.json").read_text() == "new"
    assert {k: v for k, v in snapshot(target).items() if k in before} == before
    marker = json.loads((target / atomic.MARKER).read_text())
    assert marker["tool"] == "cvgl_ros" and marker["command"] == "t" and marker["files"] == ["world.json"]


def test_an_existing_empty_directory_is_written_into(tmp_path, monkeypatch):
    target = tmp_path / "empty"
    target.mkdir()
    monkeypatch.chdir(target)
    with atomic.atomic_dir(".") as tmp:          # `--out .` in an empty directory
        (tmp / "index.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == [atomic.MARKER, "index.json"]


def test_a_rerun_drops_only_entries_the_marker_lists(tmp_path):
    target = tmp_path / "ds"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "a.npz").write_text("1")
        (tmp / "b.npz").write_text("2")
    (target / "user.txt").write_text("mine")
    with atomic.atomic_dir(target) as tmp:
        (tmp / "a.npz").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == [atomic.MARKER, "a.npz", "user.txt"]
    assert (target / "a.npz").read_text() == "3"


def test_library_writes_without_a_claim_refuse_a_directory_cvgl_did_not_write(tmp_path):
    target = tmp_path / "bag"
    before = user_files(target)
    with pytest.raises(InputError, match="cvgl did not write"):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "metadata.yaml").write_text("x")
    assert snapshot(target) == before and sorted(os.listdir(tmp_path)) == ["bag"]


def test_in_place_claim_is_undone_when_the_command_fails(tmp_path):
    code, err = cvgl("evaluate-track", "--estimate", tmp_path, "--truth", tmp_path, "--out", tmp_path / "new")
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "new").exists()


SLOW_WRITER = """
import sys, time
from cvgl_ros import atomic
kind, path = sys.argv[1], sys.argv[2]
ctx = atomic.atomic_dir(path) if kind == "dir" else atomic.atomic_path(path)
with ctx as tmp:
    if kind == "dir":
        (tmp / "half.bin").write_bytes(b"x" * 1000)
    else:
        tmp.write_bytes(b"x" * 1000)
    print("writing", flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_sigterm_during_a_write_leaves_no_temporaries(tmp_path, kind):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, kind, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]   # the temporary exists now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(tmp_path.iterdir()) == []


def test_a_claimed_file_written_twice_in_one_run_is_replaced_the_second_time(tmp_path):
    """export writes a provisional model card, then the final one."""
    card = tmp_path / "m.json"
    try:
        atomic.claim_output(card, kind="file", command="export", sidecar=False)
        atomic.write_json(card, {"provisional": True})
        atomic.write_json(card, {"provisional": False})
    finally:
        atomic.release_claims()
    assert json.loads(card.read_text()) == {"provisional": False}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
