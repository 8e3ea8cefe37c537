"""Stamps: integer nanoseconds <-> a message's (sec, nanosec), the same through rosbags headers,
rclpy Time and CDR bytes; what a ROS time cannot hold is refused in one line."""
import math

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from cvgl_ros.datasets import bag as B
from cvgl_ros.errors import InputError
from cvgl_ros.stamps import MAX_STAMP_NS, NS_PER_S, header_stamp_ns, ns_to_sec_nanosec, stamp_to_ns

pytestmark = pytest.mark.core

STAMPS_NS = [0, 1, NS_PER_S - 1, NS_PER_S, 1_700_000_000 * NS_PER_S + 123_456_789, MAX_STAMP_NS]


@pytest.mark.parametrize("stamp_ns", STAMPS_NS)
def test_a_stamp_splits_into_sec_and_nanosec_and_back(stamp_ns):
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    assert 0 <= nanosec < NS_PER_S and 0 <= sec <= 2**31 - 1
    assert sec * NS_PER_S + nanosec == stamp_ns
    header = B.header(stamp_ns, "map")
    assert (header.stamp.sec, header.stamp.nanosec) == (sec, nanosec)
    assert stamp_to_ns(header.stamp) == stamp_ns


def test_numpy_integers_are_stamps_and_the_last_one_is_2038():
    assert ns_to_sec_nanosec(np.int64(2_500_000_001)) == (2, 500_000_001)
    assert ns_to_sec_nanosec(MAX_STAMP_NS) == (2**31 - 1, NS_PER_S - 1)


@pytest.mark.parametrize("bad", [-1, -NS_PER_S, MAX_STAMP_NS + 1, 2**63, math.nan, math.inf, 1.5, 1e18,
                                 np.float64(3.0), True, "12", None])
def test_what_a_ros_time_cannot_hold_is_refused(bad):
    with pytest.raises(InputError, match="stamp"):
        ns_to_sec_nanosec(bad)
    with pytest.raises(InputError, match="stamp"):
        B.header(bad, "map")


def test_the_stamp_of_serialized_messages_is_read_in_either_byte_order():
    store = get_typestore(Stores.ROS2_KILTED)
    stamp_ns = 1_700_000_000 * NS_PER_S + 987_654_321
    msg = B.pose_stamped_msg(1.0, 2.0, 0.0, 0.5, stamp_ns)
    little = store.serialize_cdr(msg, B.MSG_POSE_STAMPED)
    big = store.serialize_cdr(msg, B.MSG_POSE_STAMPED, little_endian=False)
    assert little != big
    assert header_stamp_ns(little) == header_stamp_ns(big) == stamp_ns
    with pytest.raises(InputError, match="no header stamp"):
        header_stamp_ns(little[:8])


def test_reading_a_received_stamp_is_exact_whatever_its_sender_wrote():
    class Time:  # a stamp as a message holds it; its sender's choice, not validated on reading
        def __init__(self, sec, nanosec):
            self.sec, self.nanosec = sec, nanosec

    assert stamp_to_ns(Time(-1, 999_999_999)) == -1
    assert stamp_to_ns(Time(3, 1_500_000_000)) == 4_500_000_000

