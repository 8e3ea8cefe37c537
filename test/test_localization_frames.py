"""What becomes of a camera frame, ROS-free (`FrameLocalizer`), on the shipped model and a real
tile cache: every skip and its reason, the counters, the processed frame's pose, likelihood
and timings, the overlay cadence; and the model pin and the tile cache it opens."""
import json
import math

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.localization import FrameLocalizer, FrameSettings, PriorPolicy, PriorSelector
from cvgl_ros.localization.frame_localizer import (DEFAULT_WINDOW_REACH_RAD, ERROR, OK, WARN, StampOrder,
                                                   load_estimator, open_sampler, window_reach_rad)

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

S = 1_000_000_000
T0 = 1_700_000_000 * S


class Health:
    """What the node's NodeHealth would be told (count, set_value, latency, fatal_reason)."""

    def __init__(self, fatal_reason: str = ""):
        self.counters, self.values, self.latencies = {}, {}, {}
        self.fatal_reason = fatal_reason

    def count(self, key, n=1):
        self.counters[key] = self.counters.get(key, 0) + n

    def set_value(self, key, value):
        self.values[key] = value

    def latency(self, stage, ms):
        self.latencies.setdefault(stage, []).append(ms)


@pytest.fixture(scope="module")
def model():
    from test_nodes_support import shipped_model

    return shipped_model()


@pytest.fixture(scope="module")
def estimator(model):
    return load_estimator(model, providers=("cpu",), intra_op_threads=1)


@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    from test_nodes_support import write_tiles

    with open_sampler(str(write_tiles(tmp_path_factory.mktemp("tiles") / "tiles.mbtiles")), 64.0) as opened:
        yield opened


@pytest.fixture(scope="module")
def camera(estimator):
    from test_nodes_support import camera as pinhole

    h, w = estimator.card["image_hw"]
    return pinhole((h, w))


def frame(camera, seed=0):
    k, w, h = camera
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def localizer(estimator, sampler, health=None, **settings):
    from test_nodes_support import DATUM

    priors = PriorSelector(PriorPolicy(yaw_max_std_deg=360.0, widen_yaw_search=False), window_reach_rad(estimator))
    frames = FrameLocalizer(estimator, sampler, priors, health or Health(), FrameSettings(**settings))
    frames.datum = DATUM
    return frames


def run(frames, camera, stamp_ns, datum="default", out_of_order=None, rgb=None, outputs=None):
    datum = frames.datum if datum == "default" else datum
    image = frame(camera) if rgb is None else rgb
    made = []

    def make_outputs(estimate):
        made.append(estimate)
        return ["cloud", "pose"] if outputs is None else outputs(estimate)

    outcome = frames.run(stamp_ns, out_of_order, lambda: image, lambda: (camera, datum), make_outputs)
    return outcome, (made[0] if made else None)


def test_a_frame_with_a_prior_is_processed_into_a_stamped_finite_pose_and_likelihood(estimator, sampler, camera):
    health = Health()
    frames = localizer(estimator, sampler, health)
    frames.priors.add_filter_pose(T0, 3.0, -2.0, 0.4, math.radians(2.0))
    outcome, estimate = run(frames, camera, T0 + S // 10)
    assert (outcome.level, outcome.text, outcome.is_problem) == (OK, "processed", False)
    assert outcome.outputs == ["cloud", "pose"] and outcome.stamp_ns == T0 + S // 10
    assert set(outcome.timings) == {"decode_ms", "patch_ms", "inference_ms", "total_ms"}
    assert outcome.timings["total_ms"] >= outcome.timings["inference_ms"] > 0
    volume = estimate.result.volume
    assert volume.stamp_ns == T0 + S // 10 and (volume.center_e_m, volume.center_n_m) == (3.0, -2.0)
    assert estimate.covariance.dtype == np.float64 and np.all(np.isfinite(estimate.covariance))
    assert (estimate.prior.east_m, estimate.prior.yaw_enu_rad) == (3.0, 0.4)
    assert health.counters == {"yaw_windows_searched": 1, "frames_processed": 1}
    assert health.values["prior_source"] == "filter" and health.values["yaw_windows"] == 1
    assert set(health.latencies) == {"decode", "patch", "inference", "total"}


def test_every_nth_processed_frame_asks_for_the_overlay_the_first_one_included(estimator, sampler, camera):
    frames = localizer(estimator, sampler, overlay_every_n=3)
    due = []
    for i in range(1, 8):
        frames.priors.add_filter_pose(T0 + i * S // 10, 0.0, 0.0, 0.0, 0.01)
        due.append(run(frames, camera, T0 + i * S // 10)[1].overlay)
    assert due == [True, False, False, True, False, False, True]
    never = localizer(estimator, sampler, overlay_every_n=0)
    never.priors.add_filter_pose(T0, 0.0, 0.0, 0.0, 0.01)
    assert run(never, camera, T0 + S // 10)[1].overlay is False


@pytest.mark.parametrize("case, text", [
    ("out of order", "skipped: camera stamp repeated"),
    ("undecodable", "skipped: image is undecodable"),
    ("no camera_info", "skipped: no camera_info received yet"),
    ("other size", "skipped: image is 100x50 but camera_info says"),
    ("no prior", "skipped: no position prior (filter pose or GNSS fix) within 2 s"),
    ("no tiles", "skipped: no tiles under the prior at (5000.0, 0.0) m: 0% of the patch covered"),
])
def test_bad_input_skips_the_frame_as_a_problem_saying_why(estimator, sampler, camera, case, text):
    health = Health()
    frames = localizer(estimator, sampler, health)
    frames.priors.add_filter_pose(T0, 5000.0 if case == "no tiles" else 0.0, 0.0, 0.0, 0.01)
    stamp = T0 + (10 * S if case == "no prior" else S // 10)
    rgb = np.zeros((50, 100, 3), np.uint8) if case == "other size" else None

    def undecodable():
        raise InputError("image is undecodable")

    decode = undecodable if case == "undecodable" else (lambda: frame(camera) if rgb is None else rgb)
    inputs = (lambda: (None, frames.datum)) if case == "no camera_info" else (lambda: (camera, frames.datum))
    outcome = frames.run(stamp, "camera stamp repeated" if case == "out of order" else None, decode, inputs,
                         lambda estimate: pytest.fail("a skipped frame has no outputs"))
    assert (outcome.level, outcome.is_problem, outcome.outputs) == (WARN, True, [])
    assert outcome.text.startswith(text), outcome.text
    assert health.counters.get("frames_without_tiles", 0) == (case == "no tiles")
    assert "frames_processed" not in health.counters


def test_a_node_that_cannot_work_skips_every_frame_with_its_fatal_reason_as_an_error(camera):
    health = Health(fatal_reason="no tile cache: set the `tiles` parameter")
    frames = FrameLocalizer(None, None, PriorSelector(PriorPolicy(), DEFAULT_WINDOW_REACH_RAD), health, FrameSettings())
    outcome = frames.run(T0, None, lambda: frame(camera), lambda: (camera, None), lambda e: pytest.fail("no outputs"))
    assert (outcome.level, outcome.text, outcome.is_problem) == (ERROR, "skipped: no tile cache: set the `tiles` "
                                                                        "parameter", True)
    assert set(outcome.timings) == {"decode_ms"}


def test_waiting_for_the_datum_or_the_yaw_is_a_skip_by_design_not_a_problem(estimator, sampler, camera):
    health = Health()
    frames = localizer(estimator, sampler, health)
    frames.priors.add_gnss_fix(T0, 0.0, 0.0)
    outcome, _ = run(frames, camera, T0 + S // 10, datum=None)
    assert (outcome.level, outcome.is_problem) == (WARN, False)
    assert outcome.text == "skipped: waiting for the filter's datum on /cvgl/datum"
    assert health.counters == {"frames_waiting_for_datum": 1}
    processed, _ = run(frames, camera, T0 + 2 * S // 10)    # the yaw unknown: the first frame is searched
    assert processed.text == "processed" and health.values["prior_source"] == "gnss (yaw unknown)"
    waiting, _ = run(frames, camera, T0 + 3 * S // 10)       # and the next one waits for the yaw
    assert waiting.text == "skipped: yaw prior unknown: full-circle search on every 10th frame only"
    assert (waiting.level, waiting.is_problem) == (WARN, False) and health.counters["frames_waiting_for_yaw"] == 1


def test_a_network_that_returns_a_non_finite_pose_is_a_skipped_frame(estimator, sampler, camera):
    class NanPose:
        """The shipped network, but its pose comes back NaN (as a broken export's would)."""

        card, yaw_offsets = estimator.card, estimator.yaw_offsets

        def estimate(self, *args, **kwargs):
            result = estimator.estimate(*args, **kwargs)
            result.east_m = float("nan")
            return result

    frames = localizer(NanPose(), sampler)
    frames.priors.add_filter_pose(T0, 0.0, 0.0, 0.0, 0.01)
    outcome, _ = run(frames, camera, T0 + S // 10)
    assert (outcome.text, outcome.is_problem) == ("skipped: the network returned a non-finite pose", True)


def test_a_stamp_that_does_not_move_forward_clears_the_priors_and_says_how_far_back(estimator, sampler):
    health = Health()
    frames = localizer(estimator, sampler, health)
    frames.priors.add_filter_pose(T0, 0.0, 0.0, 0.0, 0.01)
    assert frames.take(T0 + 2 * S) is None and frames.take(T0 + 3 * S) is None
    assert frames.priors.newest_filter_pose_ns == T0
    assert frames.take(T0 + 3 * S) == "camera stamp repeated"
    assert frames.priors.newest_filter_pose_ns is None and health.counters["stamp_backwards"] == 1
    assert frames.take(T0 + S + S // 4) == "camera stamp went backwards by 1.750 s (priors cleared)"
    assert frames.take(T0 + 2 * S) is None and health.counters["stamp_backwards"] == 2
    order = StampOrder()
    assert [order.check(t) for t in (5, 6, 6, 4, 7)] == [None, None, "camera stamp repeated",
                                                       "camera stamp went backwards by 0.000 s (priors cleared)", None]


def test_the_model_pin_and_the_mount_height(model):
    sha = json.loads(model.with_suffix(".json").read_text())["sha256"]
    with pytest.raises(InputError, match=r"sha256 .*\.\.\. is not in allowed_model_sha256"):
        load_estimator(model, "00" * 32, providers=("cpu",))
    pinned = load_estimator(model, f" {'11' * 32}, {sha.upper()} ", providers=("cpu",), mount_height_m=1.5)
    assert pinned.camera_height_m == 1.5
    assert window_reach_rad(pinned) == pytest.approx(min(-pinned.yaw_offsets[0], pinned.yaw_offsets[-1]))
    assert window_reach_rad(None) == DEFAULT_WINDOW_REACH_RAD
    with pytest.raises(InputError, match="no model: set the `model` parameter"):
        load_estimator(None)
    with pytest.raises(InputError, match="model /nowhere/x.onnx: "):
        load_estimator("/nowhere/x.onnx")


def test_the_tile_cache_must_be_given_and_readable(tmp_path):
    with pytest.raises(InputError, match="no tile cache: set the `tiles` parameter"):
        open_sampler("", 16.0)
    with pytest.raises(InputError, match=f"tile cache {tmp_path / 'none.mbtiles'}: "):
        open_sampler(str(tmp_path / "none.mbtiles"), 16.0)


def test_in_lockstep_the_prior_waits_for_the_filter_pose_at_the_newest_fix(estimator, sampler, camera):
    """The filter's pose at a fix between two frames races the next frame over DDS: the frame
    waits for it, and a pose that never comes is awaited once (filter_pose_wait_s)."""
    import threading

    health = Health()
    frames = localizer(estimator, sampler, health, filter_pose_wait_s=5.0)
    frames.priors.add_filter_pose(T0, 3.0, -2.0, 0.4, math.radians(2.0))
    first, _ = run(frames, camera, T0 + S // 10)
    assert first.filter_inputs == 1                                    # the likelihood: one answer due
    frames.priors.add_filter_pose(T0 + S // 10, 3.0, -2.0, 0.4, math.radians(2.0))   # that answer
    frames.priors.add_gnss_fix(T0 + 15 * S // 100, 9.0, -2.0)
    late = threading.Timer(0.3, frames.priors.add_filter_pose, args=(T0 + 15 * S // 100, 9.0, -2.0, 0.4,
                                                                     math.radians(2.0)))
    late.start()
    _, estimate = run(frames, camera, T0 + 2 * S // 10)
    assert estimate.prior.east_m == 9.0                                # the fix's pose, not the frame's
    assert "filter_pose_waits_timed_out" not in health.counters
    frames.settings = FrameSettings(filter_pose_wait_s=0.2)
    frames.priors.add_gnss_fix(T0 + 25 * S // 100, 20.0, -2.0)         # its pose never comes
    run(frames, camera, T0 + 3 * S // 10)
    run(frames, camera, T0 + 4 * S // 10)                              # the answer to the previous frame: none
    assert health.counters["filter_pose_waits_timed_out"] == 2
    frames.priors.add_filter_pose(T0 + 4 * S // 10, 3.0, -2.0, 0.4, math.radians(2.0))   # answered in time
    run(frames, camera, T0 + 5 * S // 10)
    assert health.counters["filter_pose_waits_timed_out"] == 2


def test_in_lockstep_a_frame_s_status_waits_for_the_filter_s_answers_not_for_a_fix_at_its_stamp(
        estimator, sampler, camera):
    """A fix and a frame of the same stamp: the filter's pose at the fix does not count as the
    frame's answer."""
    import threading
    import time

    health = Health()
    frames = localizer(estimator, sampler, health, filter_pose_wait_s=5.0)
    frames.priors.add_gnss_fix(T0, 3.0, -2.0)
    frames.priors.add_filter_pose(T0, 3.0, -2.0, 0.4, math.radians(2.0))   # the filter's pose at that fix
    outcome, _ = run(frames, camera, T0)
    answer = threading.Timer(0.3, frames.priors.add_filter_pose, args=(T0, 3.5, -2.0, 0.4, math.radians(2.0)))
    answer.start()
    t = time.monotonic()
    frames.await_answers(outcome.stamp_ns)
    assert time.monotonic() - t >= 0.25 and "filter_pose_waits_timed_out" not in health.counters
    frames.await_answers(outcome.stamp_ns)                              # awaited once
    assert "filter_pose_waits_timed_out" not in health.counters
