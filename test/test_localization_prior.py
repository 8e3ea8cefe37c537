"""The cross-view node's policies, ROS-free: which prior a frame gets and how wide its yaw
search is (`PriorSelector`), and who owns the datum (`DatumOwner`, `DatumFollower`). Every
branch of the rule in prior.py's docstring has a test here."""
import math

import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum
from cvgl_ros.localization import DatumFollower, DatumOwner, PriorPolicy, PriorSelector, datum_offset_m

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

S = 1_000_000_000
T0 = 1_700_000_000 * S
REACH = math.radians(12.0)  # the shipped model's one window: prior +- 12 deg
DEG = math.radians(1.0)


def selector(**policy) -> PriorSelector:
    return PriorSelector(PriorPolicy(**policy), REACH)


def test_a_fresh_filter_pose_with_a_certain_yaw_is_one_window():
    sel = selector()
    sel.add_gnss_fix(T0, 50.0, 50.0)
    sel.add_filter_pose(T0, 10.0, -4.0, 0.7, 2.0 * DEG)
    choice = sel.select(T0 + S // 10)
    assert choice.prior.east_m == 10.0 and choice.prior.north_m == -4.0 and choice.prior.yaw_enu_rad == 0.7
    assert choice.prior.yaw_half_width_rad is None and choice.source == "filter"
    # h = 3 * 2 + 0 * tau + 1.5 = 7.5 deg fits the window
    assert choice.yaw_std_rad == pytest.approx(2.0 * DEG) and choice.age_s == pytest.approx(0.1)


def test_an_uncertain_yaw_widens_the_search_by_k_sigma_plus_margin():
    sel = selector(yaw_search_sigmas=3.0, yaw_search_margin_deg=1.5)
    sel.add_filter_pose(T0, 0.0, 0.0, -3.0, 10.0 * DEG)
    choice = sel.select(T0)
    assert choice.prior.yaw_enu_rad == -3.0
    assert choice.prior.yaw_half_width_rad == pytest.approx(31.5 * DEG)
    assert choice.yaw_half_width_rad == choice.prior.yaw_half_width_rad
    assert "widened" in choice.source and choice.counters == ("yaw_search_widened",)


def test_turning_widens_the_search_by_yaw_rate_times_the_prior_age_plus_latency():
    sel = selector(yaw_search_sigmas=3.0, yaw_search_margin_deg=1.5, yaw_search_latency_s=0.1)
    # the filter's yaw turns 0.5 rad/s (about 29 deg/s) over its last poses, sigma 1 deg
    for i in range(6):
        sel.add_filter_pose(T0 + i * S // 10, 0.0, 0.0, 0.05 * i, 1.0 * DEG)
    newest = T0 + 5 * S // 10
    assert sel.yaw_rate_radps(newest) == pytest.approx(0.5)
    near = sel.select(newest + S // 10)            # tau = 0.1 + 0.1 s: 3 + 5.7 + 1.5 = 10.2 deg: one window
    assert near.prior.yaw_half_width_rad is None
    stale = sel.select(newest + 3 * S // 5)        # tau = 0.6 + 0.1 s: 3 + 20 + 1.5 = 24.6 deg: widened
    assert stale.prior.yaw_half_width_rad == pytest.approx(3 * DEG + 0.5 * 0.7 + 1.5 * DEG)
    assert stale.yaw_rate_radps == pytest.approx(0.5) and stale.age_s == pytest.approx(0.6)


def test_an_imu_yaw_rate_widens_the_search_while_the_filter_has_not_seen_the_turn():
    sel = selector()
    sel.add_filter_pose(T0, 0.0, 0.0, 1.0, 1.0 * DEG)
    sel.add_filter_pose(T0 + S // 5, 0.0, 0.0, 1.0, 1.0 * DEG)      # the filter goes straight on
    assert sel.select(T0 + S).prior.yaw_half_width_rad is None       # 3 + 0 + 1.5 deg
    sel.add_yaw_rate(T0 + S, -0.6)                                    # the car turns right at 34 deg/s
    choice = sel.select(T0 + S)
    assert choice.yaw_rate_radps == pytest.approx(0.6)
    assert choice.prior.yaw_half_width_rad == pytest.approx(3 * DEG + 0.6 * 0.9 + 1.5 * DEG)
    # an IMU sample older than max_age_s no longer counts
    late = selector(max_age_s=2.0)
    late.add_filter_pose(T0, 0.0, 0.0, 1.0, 1.0 * DEG)
    late.add_yaw_rate(T0 - 5 * S, 1.0)
    assert late.select(T0).yaw_rate_radps == 0.0


def test_a_search_wider_than_the_maximum_is_an_unknown_yaw():
    sel = selector(yaw_search_max_half_width_deg=60.0, unknown_yaw_search_every_n=10)
    sel.add_filter_pose(T0, 5.0, 6.0, 0.3, 19.0 * DEG)             # below yaw_max_std 20 deg; h = 58.5 deg
    assert sel.select(T0).prior.yaw_half_width_rad == pytest.approx(58.5 * DEG)
    sel.add_filter_pose(T0 + 1, 5.0, 6.0, 0.3, 19.9 * DEG)          # h = 61.2 deg > 60: full circle
    choice = sel.select(T0 + 2)
    assert choice.prior.yaw_enu_rad is None and (choice.prior.east_m, choice.prior.north_m) == (5.0, 6.0)
    assert "yaw unknown" in choice.source and "yaw_search_too_wide" in choice.counters


def test_a_yaw_sigma_above_the_gate_is_an_unknown_yaw():
    sel = selector(yaw_max_std_deg=20.0, widen_yaw_search=False)
    sel.add_filter_pose(T0, 1.0, 2.0, 0.3, 25.0 * DEG)
    choice = sel.select(T0)
    assert choice.prior.yaw_enu_rad is None and choice.source == "filter (yaw unknown)"


def test_without_widening_a_known_yaw_is_always_one_window():
    sel = selector(widen_yaw_search=False, yaw_max_std_deg=360.0)
    sel.add_filter_pose(T0, 1.0, 2.0, 0.3, 100.0 * DEG)
    sel.add_yaw_rate(T0, 2.0)
    choice = sel.select(T0)
    assert choice.prior.yaw_enu_rad == 0.3 and choice.prior.yaw_half_width_rad is None and choice.source == "filter"


def test_unknown_yaw_searches_the_full_circle_on_the_first_and_every_nth_frame():
    sel = selector(unknown_yaw_search_every_n=3)
    sel.add_gnss_fix(T0, 7.0, 8.0)                                   # GNSS only: yaw unknown
    choices = [sel.select(T0 + i) for i in range(7)]
    searched = [c.prior is not None for c in choices]
    assert searched == [True, False, False, True, False, False, True]
    assert choices[0].prior.yaw_enu_rad is None and choices[0].source == "gnss (yaw unknown)"
    assert choices[1].skip_reason == "yaw prior unknown: full-circle search on every 3th frame only"
    assert "frames_waiting_for_yaw" in choices[1].counters
    waiting = choices[1].waiting_prior                              # where the coarse stage may still search
    assert (waiting.east_m, waiting.north_m, waiting.yaw_enu_rad) == (7.0, 8.0, None)
    assert choices[0].waiting_prior is None
    # a frame with a known yaw ends the stretch: the next unknown-yaw frame is searched at once
    sel.add_filter_pose(T0 + 10, 7.0, 8.0, 0.0, 1.0 * DEG)
    assert sel.select(T0 + 10).prior.yaw_enu_rad == 0.0
    sel.add_filter_pose(T0 + 20, 7.0, 8.0, 0.0, 90.0 * DEG)
    assert sel.select(T0 + 20).prior is not None and sel.select(T0 + 21).prior is None


@pytest.mark.parametrize("every, expect", [(1, [True] * 4), (0, [False] * 4)])
def test_unknown_yaw_every_frame_or_never(every, expect):
    sel = selector(unknown_yaw_search_every_n=every)
    sel.add_gnss_fix(T0, 0.0, 0.0)
    choices = [sel.select(T0 + i) for i in range(4)]
    assert [c.prior is not None for c in choices] == expect
    if not every:
        assert choices[0].skip_reason == "yaw prior unknown (full-circle search disabled)"


def test_a_stale_filter_pose_falls_back_to_a_fresh_gnss_fix():
    sel = selector(max_age_s=2.0)
    sel.add_filter_pose(T0, 1.0, 1.0, 0.0, 1.0 * DEG)
    sel.add_gnss_fix(T0 + 2 * S, 30.0, -20.0)
    assert sel.select(T0 + 2 * S).source == "filter"                 # exactly max_age_s old: still fresh
    choice = sel.select(T0 + 2 * S + 1)
    assert choice.source == "gnss (yaw unknown)"
    assert (choice.prior.east_m, choice.prior.north_m, choice.prior.yaw_enu_rad) == (30.0, -20.0, None)
    assert math.isnan(choice.yaw_std_rad)


def test_no_fresh_prior_at_all_is_an_input_error():
    sel = selector(max_age_s=1.0)
    with pytest.raises(InputError, match="no position prior"):
        sel.select(T0)
    sel.add_gnss_fix(T0, 0.0, 0.0)
    sel.add_filter_pose(T0, 0.0, 0.0, 0.0, DEG)
    with pytest.raises(InputError, match="within 1 s"):
        sel.select(T0 + 2 * S)
    # a prior newer than the frame (a worker still on an old frame) counts by |age|
    assert sel.select(T0 - S // 2).source == "filter"
    with pytest.raises(InputError):
        sel.select(T0 - 2 * S)


def test_the_gnss_gate_centres_the_patch_on_the_fix_when_the_filter_ran_off():
    sel = selector(gnss_gate_m=25.0)
    sel.add_filter_pose(T0, 0.0, 0.0, 0.5, DEG)
    sel.add_gnss_fix(T0, 30.0, 40.0)                                 # 50 m away
    choice = sel.select(T0)
    assert (choice.prior.east_m, choice.prior.north_m, choice.prior.yaw_enu_rad) == (30.0, 40.0, None)
    assert choice.source == "gnss (filter 50 m away; yaw unknown)"
    assert choice.counters == ("prior_filter_far_from_gnss",)
    sel.add_gnss_fix(T0 + 1, 15.0, 20.0)                             # 25 m: within the gate
    assert sel.select(T0 + 1).source == "filter"
    off = selector(gnss_gate_m=0.0)                                  # 0: the gate is off
    off.add_filter_pose(T0, 0.0, 0.0, 0.5, DEG)
    off.add_gnss_fix(T0, 300.0, 400.0)
    assert off.select(T0).source == "filter"
    stale_fix = selector(gnss_gate_m=25.0, max_age_s=1.0)            # a stale fix cannot gate
    stale_fix.add_filter_pose(T0 + 3 * S, 0.0, 0.0, 0.5, DEG)
    stale_fix.add_gnss_fix(T0, 300.0, 400.0)
    assert stale_fix.select(T0 + 3 * S).source == "filter"


def test_out_of_order_stamps_keep_the_newest_and_a_repeated_stamp_replaces():
    sel = selector()
    assert sel.add_filter_pose(T0 + S, 10.0, 0.0, 0.2, DEG)
    assert not sel.add_filter_pose(T0, 99.0, 99.0, 2.0, DEG)          # the filter's late republish: older
    assert sel.select(T0 + S).prior.east_m == 10.0
    assert sel.add_filter_pose(T0 + S, 11.0, 0.0, 0.25, DEG)          # corrected pose at the same stamp
    assert sel.select(T0 + S).prior.east_m == 11.0
    assert sel.add_gnss_fix(T0 + S, 1.0, 1.0) and not sel.add_gnss_fix(T0, 5.0, 5.0)
    assert sel.add_yaw_rate(T0 + S, 0.1) and not sel.add_yaw_rate(T0, 3.0)
    assert sel.yaw_rate_radps(T0 + S) == pytest.approx(0.1)
    # non-finite inputs are never taken
    assert not sel.add_filter_pose(T0 + 2 * S, math.nan, 0.0, 0.0, DEG)
    assert not sel.add_filter_pose(T0 + 2 * S, 0.0, 0.0, 0.0, math.inf)
    assert not sel.add_gnss_fix(T0 + 2 * S, math.inf, 0.0) and not sel.add_yaw_rate(T0 + 2 * S, math.nan)
    sel.clear()                                                       # the camera went back in time
    with pytest.raises(InputError):
        sel.select(T0 + S)


def test_the_yaw_rate_is_taken_over_the_window_and_across_the_pi_seam():
    sel = selector(yaw_rate_window_s=0.5)
    for i in range(11):  # 0.1 s apart, crossing +pi -> -pi at 0.4 rad/s
        sel.add_filter_pose(T0 + i * S // 10, 0.0, 0.0, math.remainder(3.0 + 0.04 * i, 2 * math.pi), DEG)
    assert sel.yaw_rate_radps(T0 + S) == pytest.approx(0.4, rel=1e-6)
    one = selector()
    one.add_filter_pose(T0, 0.0, 0.0, 1.0, DEG)
    assert one.yaw_rate_radps(T0) == 0.0                              # a single pose has no rate


def test_bad_policies_are_refused():
    with pytest.raises(InputError, match="yaw_search_sigmas"):
        PriorPolicy(yaw_search_sigmas=-1.0)
    with pytest.raises(InputError, match="unknown_yaw_search_every_n"):
        PriorPolicy(unknown_yaw_search_every_n=-2)
    with pytest.raises(InputError, match="window reach"):
        PriorSelector(PriorPolicy(), 0.0)


# -- the datum's one owner ----------------------------------------------------------------

def test_the_owner_takes_the_parameter_or_else_the_first_valid_fix_once():
    param = Datum(49.01, 8.42, 115.0)
    owner = DatumOwner(param)
    assert owner.datum == param and not owner.offer_fix(T0, 48.0, 8.0, 0.0) and owner.datum == param
    assert owner.describe() == "49.01000000,8.42000000,115.000"
    unset = DatumOwner(None)
    assert unset.datum is None and "first valid fix" in unset.describe()
    assert unset.offer_fix(T0, 49.0, 8.4, 110.0)
    assert unset.datum == Datum(49.0, 8.4, 110.0) and unset.stamp_ns == T0
    assert not unset.offer_fix(T0 + S, 49.001, 8.4, 110.0) and unset.datum == Datum(49.0, 8.4, 110.0)
    assert unset.describe().endswith("(first valid fix)")


def test_the_follower_waits_uses_the_owners_datum_and_reports_a_mismatch():
    follower = DatumFollower(None)
    assert follower.datum is None and follower.describe() == "waiting for the filter's datum"
    first = follower.receive(Datum(49.0, 8.4, 110.0))
    assert first.changed and not first.replaced and first.mismatch is None
    assert follower.datum == Datum(49.0, 8.4, 110.0)
    again = follower.receive(Datum(49.0, 8.4, 110.0))              # the latched message again
    assert not again.changed and not again.replaced
    near = follower.receive(Datum(49.0, 8.4, 110.005))             # 5 mm: within the tolerance, the same frame
    assert not near.replaced and follower.datum == Datum(49.0, 8.4, 110.0)
    moved = follower.receive(Datum(49.0, 8.4001, 110.0))           # the filter restarted elsewhere: 7 m
    assert moved.changed and moved.replaced and follower.datum == Datum(49.0, 8.4001, 110.0)

    checked = DatumFollower(Datum(49.0, 8.4, 110.0))
    assert checked.datum is None                                    # the parameter alone is not used
    assert checked.receive(Datum(49.0, 8.4, 110.0)).mismatch is None
    wrong = checked.receive(Datum(49.0001, 8.4, 110.0))
    assert wrong.mismatch and "11.1" in wrong.mismatch and "using the filter's" in wrong.mismatch
    assert checked.datum == Datum(49.0001, 8.4, 110.0)
    assert datum_offset_m(Datum(49.0, 8.4, 0.0), Datum(49.0, 8.4, 3.0)) == pytest.approx(3.0, abs=1e-6)


def test_waiting_for_the_filter_pose_returns_when_it_comes_or_at_the_timeout():
    """A lockstep replay's wait (wall time) for the filter's answer to the previous frame."""
    import threading
    import time

    sel = selector()
    sel.add_filter_pose(T0, 0.0, 0.0, 0.0, 0.01)
    assert sel.wait_for_filter_pose(T0, 0.0)                        # held already: no wait
    late = threading.Timer(0.2, sel.add_filter_pose, args=(T0 + S, 1.0, 0.0, 0.0, 0.01))
    late.start()
    t = time.monotonic()
    assert sel.wait_for_filter_pose(T0 + S, 10.0) and time.monotonic() - t < 5.0   # woken by the pose
    assert sel.newest_filter_pose_ns == T0 + S
    t = time.monotonic()
    assert not sel.wait_for_filter_pose(T0 + 2 * S, 0.3)            # never comes: False after the timeout
    assert time.monotonic() - t >= 0.29


def test_waiting_for_several_answers_at_one_stamp_counts_the_poses_there():
    """A frame whose likelihood and grid scores the filter both fused is answered by two poses."""
    sel = selector()
    sel.add_filter_pose(T0, 0.0, 0.0, 0.0, 0.01)
    assert sel.wait_for_filter_pose(T0, 0.0, count=1) and not sel.wait_for_filter_pose(T0, 0.0, count=2)
    sel.add_filter_pose(T0, 0.5, 0.0, 0.0, 0.01)                    # the second answer, same stamp
    assert sel.wait_for_filter_pose(T0, 0.0, count=2) and not sel.wait_for_filter_pose(T0, 0.0, count=3)
    assert not sel.add_filter_pose(T0 - S, 0.0, 0.0, 0.0, 0.01)    # an older pose counts for nothing
    assert not sel.wait_for_filter_pose(T0, 0.0, count=3)
    sel.add_filter_pose(T0 + S, 1.0, 0.0, 0.0, 0.01)                # a later pose: the frame was answered
    assert sel.wait_for_filter_pose(T0, 0.0, count=3) and not sel.wait_for_filter_pose(T0 + S, 0.0, count=2)
    sel.clear()
    assert not sel.wait_for_filter_pose(T0, 0.0)
