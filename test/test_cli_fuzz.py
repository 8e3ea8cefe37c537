"""Every `cvgl` subcommand on bad input: exit status 2, one line on stderr, no traceback.

The subcommands and their options are discovered from the argparse parser, so a new command
or option is covered without editing this file:
- parse level, for every option of every command: garbage, NaN and infinite numbers, negative
  numbers where only positive ones make sense (unless listed in SIGNED_OPTIONS), latitudes
  beyond the poles, missing input files and directories, a directory where a file is read,
  a file where a directory is read; comma lists accept negative numbers;
- run level, for every command: an unknown option; and for every command with --out, a
  directory of the user's files and an existing file of the user's at --out (the output
  rule of cvgl_ros/atomic.py), with the user's files intact afterwards;
- the data-loss and one-line-error cases a review of the outputs found, one by one.
Everything runs in this process (`cvgl_ros.cli.main.main(argv)`), so the whole file is fast.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cvgl_ros.cli import args as cli_args
from cvgl_ros.cli.main import build_parser, main

PARSER = build_parser()

# Options whose negative values are meaningful (coordinates, offsets, heights).
SIGNED_OPTIONS = {"--lat", "--lon", "--alt", "--east", "--north", "--up",
                  # sensor mounting in base_link: behind, right of and pitched up are negative
                  "--camera-x-m", "--camera-y-m", "--antenna-x-m", "--antenna-y-m", "--camera-pitch-deg"}
INPUT_TYPES = {cli_args.existing_file: "file", cli_args.existing_dir: "dir", cli_args.existing_path: "path"}


def leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command words, parser) of every runnable subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    seen = set()
    for name, sub in subs[0].choices.items():
        if id(sub) not in seen:
            seen.add(id(sub))
            yield from leaves(sub, prefix + (name,))


COMMANDS = list(leaves(PARSER))
COMMAND_IDS = [" ".join(words) for words, _ in COMMANDS]


def _accepts(kind, text):
    try:
        return kind(text)
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return None


def classify(action: argparse.Action):
    """(kind, neutral value): how an option's value is typed, and a value it accepts."""
    t = action.type
    if action.choices:
        return "choice", str(next(iter(action.choices)))
    if t in INPUT_TYPES:
        return INPUT_TYPES[t], None
    if t is None or t is str or t is Path:
        return "text", None
    for text in ("1", "0.5", "10", "64x64"):
        value = _accepts(t, text)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return "number", text
        if value is not None and not isinstance(value, tuple):
            return "other", text
    for count in (2, 3, 4):
        text = ",".join(["1"] * count)
        value = _accepts(t, text)
        if isinstance(value, tuple):
            return f"list{count}", text
    return "other", None


def options(parser):
    return [a for a in parser._actions if a.option_strings and a.nargs != 0 and a.dest != "help"]


@pytest.fixture(scope="module")
def neutral(tmp_path_factory):
    """Existing paths for the required inputs of a command."""
    root = tmp_path_factory.mktemp("neutral")
    (root / "file.bin").write_bytes(b"x")
    (root / "dir").mkdir()
    return root


def base_argv(parser, neutral: Path, skip: argparse.Action | None = None) -> list[str]:
    """Values for the required arguments (and positionals) of a command, other than `skip`."""
    argv = []
    for action in parser._actions:
        if action is skip or action.dest == "help" or not (action.required or not action.option_strings):
            continue
        if isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings and action.nargs == "?":
            continue
        kind, value = classify(action)
        if kind == "file":
            value = str(neutral / "file.bin")
        elif kind in ("dir", "path"):
            value = str(neutral / "dir")
        elif kind == "text":
            value = str(neutral / "fresh" / "x.mbtiles") if action.dest == "out" else str(neutral / "dir")
        if action.option_strings:
            argv.append(action.option_strings[-1])
        argv.append(value)
    for group in parser._mutually_exclusive_groups:
        if group.required and skip not in group._group_actions:
            first = group._group_actions[0]
            kind, value = classify(first)
            value = {"file": str(neutral / "file.bin"), "dir": str(neutral / "dir"),
                     "path": str(neutral / "dir")}.get(kind, value or str(neutral / "dir"))
            argv += [first.option_strings[-1], value]
    return argv


def parse(words, argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            PARSER.parse_args([*words, *argv])
            return 0, err.getvalue()
        except SystemExit as exc:
            return exc.code, err.getvalue()


def cvgl(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def one_line(code, err, *words):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def option_cases(kind_filter):
    cases = []
    for words, parser in COMMANDS:
        for action in options(parser):
            kind, value = classify(action)
            if kind_filter(kind, action):
                cases.append(pytest.param(words, parser, action, id=f"{' '.join(words)} {action.option_strings[-1]}"))
    return cases


# -- parse level ------------------------------------------------------------------------------

def test_every_command_is_discovered():
    names = set(COMMAND_IDS)
    for expected in ("doctor", "geo tile", "sim world", "sim drive", "tiles patch", "replay", "evaluate-track",
                     "export", "train", "launch"):
        assert expected in names
    assert len(names) >= 20


@pytest.mark.parametrize("words, parser, action", option_cases(lambda kind, a: kind == "number"))
def test_numbers_reject_garbage_nan_infinity_and_unwarranted_negatives(neutral, words, parser, action):
    flag = action.option_strings[-1]
    base = base_argv(parser, neutral, skip=action)
    bad = ["abc", "nan", "inf", "-inf", "1e999"]
    if flag not in SIGNED_OPTIONS:
        bad.append("-5")
    if "lat" in action.dest:
        bad += ["95", "-95"]
    for text in bad:
        one_line(*parse(words, [*base, flag, text]), flag)


@pytest.mark.parametrize("words, parser, action", option_cases(lambda kind, a: kind.startswith("list")))
def test_comma_lists_take_negative_numbers_and_reject_nan(neutral, words, parser, action):
    flag = action.option_strings[-1]
    count = int(classify(action)[0][4:])
    base = base_argv(parser, neutral, skip=action)
    values = ["-33.86", "-151.2", "-0.5", "-1"][:count]
    code, err = parse(words, [*base, flag, ",".join(values)])
    assert code == 0, err
    args = PARSER.parse_args([*words, *base, flag, ",".join(values)])
    assert list(getattr(args, action.dest))[:2] == [float(v) for v in values][:2]
    for text in (",".join(["nan"] * count), "abc", ",".join(["1"] * (count + 2))):
        one_line(*parse(words, [*base, flag, text]), flag)


@pytest.mark.parametrize("words, parser, action",
                         option_cases(lambda kind, a: kind in ("file", "dir", "path")))
def test_missing_inputs_and_the_wrong_kind_of_path_are_refused(neutral, words, parser, action):
    flag = action.option_strings[-1]
    kind = classify(action)[0]
    base = base_argv(parser, neutral, skip=action)
    one_line(*parse(words, [*base, flag, "/nonexistent/cvgl/input"]), flag)
    if kind == "file":
        one_line(*parse(words, [*base, flag, str(neutral / "dir")]), flag)
    if kind == "dir":
        one_line(*parse(words, [*base, flag, str(neutral / "file.bin")]), flag)


POSITIONAL_INPUTS = [pytest.param(w, p, a, id=f"{' '.join(w)} {a.dest}") for w, p in COMMANDS for a in p._actions
                     if not a.option_strings and not a.choices and a.nargs != "?"
                     and not isinstance(a, argparse._SubParsersAction)]


@pytest.mark.parametrize("words, parser, action", POSITIONAL_INPUTS)
def test_a_missing_positional_input_is_one_line(tmp_path, monkeypatch, neutral, words, parser, action):
    monkeypatch.chdir(tmp_path)
    argv = [*base_argv(parser, neutral, skip=action), "/nonexistent/cvgl/input"]
    if any(a.dest == "out" for a in options(parser)) and "--out" not in argv:
        argv += ["--out", str(tmp_path / "o.mbtiles")]
    one_line(*cvgl(*words, *argv), "/nonexistent/cvgl/input")
    assert list(tmp_path.iterdir()) == []


def test_negative_comma_lists_named_in_the_issue():
    args = PARSER.parse_args(["tiles", "prefetch", "--url", "http://127.0.0.1:1/{z}/{x}/{y}.png",
                              "--bbox", "-122.5,37.7,-122.4,37.8", "--out", "x.mbtiles"])
    assert args.bbox == (-122.5, 37.7, -122.4, 37.8)
    args = PARSER.parse_args(["sim", "world", "--seed", "1", "--origin", "-33.86,151.2", "--out", "w"])
    assert args.origin[:2] == (-33.86, 151.2)
    code, err = cvgl("geo", "enu", "--datum", "-33.86,151.2", "--lat", "-33.861", "--lon", "151.2")
    assert code == 0, err


# -- run level, every command ---------------------------------------------------------------

@pytest.mark.parametrize("words, parser", [pytest.param(w, p, id=i) for (w, p), i in zip(COMMANDS, COMMAND_IDS)])
def test_an_unknown_option_is_one_line(neutral, words, parser):
    one_line(*cvgl(*words, *base_argv(parser, neutral), "--no-such-option"), "--no-such-option")


OUT_COMMANDS = [pytest.param(w, p, id=i) for (w, p), i in zip(COMMANDS, COMMAND_IDS)
                if any(a.dest == "out" for a in options(p))]


@pytest.mark.parametrize("words, parser", OUT_COMMANDS)
def test_out_over_the_users_files_is_refused_and_they_survive(tmp_path, monkeypatch, neutral, words, parser):
    monkeypatch.chdir(tmp_path)
    out_action = next(a for a in options(parser) if a.dest == "out")
    base = base_argv(parser, neutral, skip=out_action)
    users_dir = tmp_path / "users_dir.mbtiles"
    users_dir.mkdir()
    (users_dir / "thesis.tex").write_text("years of work")
    users_file = tmp_path / "users_file.mbtiles"
    users_file.write_text("irreplaceable")
    for target in (users_dir, users_file):
        code, err = cvgl(*words, *base, out_action.option_strings[-1], target)
        one_line(code, err)
    assert (users_dir / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in users_dir.iterdir()) == ["thesis.tex"]
    assert users_file.read_text() == "irreplaceable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users_dir.mbtiles", "users_file.mbtiles"]


# -- the cases a review of the outputs found ------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz_world") / "w"
    code, err = cvgl("sim", "world", "--seed", 5, "--size-m", 200, "--quiet", "--out", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, world) -> Path:
    out = tmp_path_factory.mktemp("fuzz_pairs") / "ds"
    code, err = cvgl("sim", "pairs", "--worlds", world, "--n", 6, "--ground-size", "64x32", "--sat-px", 64, "--sat-mpp", 1.0, "--max-shift-m", 5,
                     "--frames-per-drive", 3, "--workers", 1, "--quiet", "--out", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad input files: empty checkpoint, model with a card of wrong field types, GeoTIFFs,
    a bag with the datum text 'garbage', a training config with lr: nan."""
    import rasterio
    from rasterio.transform import from_origin

    from cvgl_ros.datasets import bag as bagio

    root = tmp_path_factory.mktemp("fuzz_files")
    (root / "empty.pt").write_bytes(b"")
    model = root / "model.onnx"
    model.write_bytes(Path("models/cvgl_pose.onnx").read_bytes() if Path("models/cvgl_pose.onnx").is_file()
                      else b"onnx")
    card = json.loads(Path("models/cvgl_pose.json").read_text())
    card["patch_px"] = "one hundred and twenty-eight"
    (root / "model.json").write_text(json.dumps(card))

    def tif(name, x0, y0, size=64):
        with rasterio.open(root / name, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                           crs="EPSG:32632", transform=from_origin(x0, y0, 0.5, 0.5)) as dst:
            dst.write(np.random.default_rng(0).integers(0, 255, (3, size, size), dtype=np.uint8))

    tif("good.tif", 456000, 5430000, size=256)
    data = (root / "good.tif").read_bytes()
    (root / "truncated.tif").write_bytes(data[: len(data) // 2])
    tif("far.tif", 40_000_000, 5430000)
    tif("far_zone.tif", 3_000_000, 5430000)
    garbage = root / "garbage_bag"
    with bagio.BagWriter(garbage) as bag:
        bag.set_custom_data(bagio.DATUM_KEY, "garbage")
        bag.write(bagio.TOPIC_GT_POSE, bagio.MSG_POSE_STAMPED, 1, bagio.pose_stamped_msg(0, 0, 0, 0, 1))
    (root / "lr_nan.yaml").write_text("train:\n  lr: nan\n")
    return root


def issue_cases():
    """(id, argv with {placeholders}, words the line must hold)."""
    return [
        ("geo tile --lat 90", ["geo", "tile", "--lat", "90", "--lon", "0"], ["latitude 90"]),
        ("tiles patch --out DIR", ["tiles", "patch", "--cache", "{world}/tiles.mbtiles", "--lat", "49.0069",
                                   "--lon", "8.4037", "--out", "{tmp}"], ["is a directory"]),
        ("tiles import-geotiff --out DIR", ["tiles", "import-geotiff", "{files}/good.tif", "--out", "{dir_mbtiles}"],
         ["is a directory"]),
        ("evaluate --out DIR", ["evaluate", "--model", "{files}/empty.pt", "--data", "{pairs}", "--out", "{tmp}"],
         ["is a directory"]),
        ("export --out DIR", ["export", "--ckpt", "{files}/empty.pt", "--out", "{dir_onnx}"], ["is a directory"]),
        ("export card path is a DIR", ["export", "--ckpt", "{files}/empty.pt", "--out", "{card_blocked}"],
         ["is a directory"]),
        ("sim world --out .", ["sim", "world", "--seed", "1", "--size-m", "200", "--out", "."], ["cvgl did not write"]),
        ("truncated GeoTIFF", ["tiles", "import-geotiff", "{files}/truncated.tif", "--out", "{tmp}/t.mbtiles",
                               "--quiet"], ["truncated.tif"]),
        ("GeoTIFF far outside the world", ["tiles", "import-geotiff", "{files}/far.tif", "--out", "{tmp}/f.mbtiles",
                                           "--quiet"], ["far.tif"]),
        ("GeoTIFF far outside its UTM zone", ["tiles", "import-geotiff", "{files}/far_zone.tif", "--out",
                                              "{tmp}/z.mbtiles", "--quiet"], ["outside the area of use"]),
        ("prefetch unknown placeholder", ["tiles", "prefetch", "--url", "http://127.0.0.1:1/{q}/{z}/{x}/{y}.png",
                                          "--bbox", "8.40,49.00,8.41,49.01", "--out", "{tmp}/p.mbtiles"], ["{q}"]),
        ("export empty checkpoint", ["export", "--ckpt", "{files}/empty.pt", "--out", "{tmp}/m.onnx"], ["empty"]),
        ("evaluate empty checkpoint", ["evaluate", "--model", "{files}/empty.pt", "--data", "{pairs}", "--split",
                                       "train", "--out", "{tmp}/r.json", "--quiet"], ["empty"]),
        ("model card field of the wrong type", ["evaluate", "--model", "{files}/model.onnx", "--data", "{pairs}",
                                                "--split", "train", "--out", "{tmp}/r.json", "--quiet"],
         ["bad model card", "patch_px"]),
        ("evaluate-track --seed -5", ["evaluate-track", "--estimate", "{tmp}", "--truth", "{tmp}", "--out",
                                      "{tmp}/t", "--seed", "-5"], ["--seed"]),
        ("bag datum garbage", ["evaluate-track", "--estimate", "{files}/garbage_bag", "--truth",
                               "{files}/garbage_bag", "--out", "{tmp}/track"], ["garbage"]),
        ("training config lr: nan", ["train", "--data", "{pairs}", "--config", "{files}/lr_nan.yaml", "--out",
                                     "{tmp}/run", "--quiet"], ["lr"]),
        ("export --yaw-bins 100000", ["export", "--ckpt", "{files}/empty.pt", "--out", "{tmp}/m.onnx",
                                      "--yaw-bins", "100000"], ["--yaw-bins"]),
        ("sim drive --duration-s 1e9", ["sim", "drive", "--world", "{world}", "--duration-s", "1e9", "--out",
                                        "{tmp}/b"], ["--duration-s"]),
        ("-p with a misspelled name", ["launch", "--dry-run", "-p", "use_sim_tme:=true"], ["use_sim_time"]),
        ("replay -p with a misspelled name", ["replay", "--bag", "{tmp}", "--out", "{tmp}/o", "-p",
                                              "particle_count:=10"], ["did you mean"]),
    ]


@pytest.mark.parametrize("argv, words", [pytest.param(a, w, id=i) for i, a, w in issue_cases()])
def test_each_case_of_issue_15_is_one_line(tmp_path, monkeypatch, world, pairs, files, argv, words):
    (tmp_path / "users.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.mbtiles").mkdir()
    (tmp_path / "d.onnx").mkdir()
    (tmp_path / "blocked.json").mkdir()
    where = {"{world}": str(world), "{pairs}": str(pairs), "{files}": str(files), "{tmp}": str(tmp_path),
             "{dir_mbtiles}": str(tmp_path / "d.mbtiles"), "{dir_onnx}": str(tmp_path / "d.onnx"),
             "{card_blocked}": str(tmp_path / "blocked.onnx")}
    filled = []
    for a in argv:
        for key, value in where.items():
            a = a.replace(key, value)
        filled.append(a)
    one_line(*cvgl(*filled), *words)
    assert (tmp_path / "users.txt").read_text() == "mine"
    assert not (tmp_path / "blocked.onnx").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


def test_a_bad_card_field_type_is_an_input_error_for_the_runtime(files):
    """What cross_view_node reports as its fatal 'model ...' reason instead of crashing."""
    from cvgl_ros.errors import InputError
    from cvgl_ros.runtime.card import read_card

    with pytest.raises(InputError, match="bad model card .*patch_px"):
        read_card(files / "model.onnx")
    card = json.loads((files / "model.json").read_text())
    for key, value in (("image_hw", [64, "256"]), ("patch_mpp", math.inf), ("volume", {"cells": 26}),
                       ("sha256", 12), ("inputs", None)):
        bad = dict(card, patch_px=128, **{key: value})
        (files / "other.json").write_text(json.dumps(bad))
        (files / "other.onnx").write_bytes(b"")
        with pytest.raises(InputError, match=f"bad model card .*{key}"):
            read_card(files / "other.onnx")


@pytest.mark.ros
def test_cross_view_node_reports_a_bad_card_as_its_fatal_reason_instead_of_crashing(files, world):
    import rclpy
    from rclpy.parameter import Parameter

    from cvgl_ros.nodes.cross_view_node import CrossViewNode

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        params = {"model": str(files / "model.onnx"), "tiles": str(world / "tiles.mbtiles"), "providers": ["cpu"]}
        node = CrossViewNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        try:
            reason = node.health.fatal_reason or ""
            assert "bad model card" in reason and "patch_px" in reason, reason
            assert node.estimator is None
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
