"""ROS time stamps as integer nanoseconds: the one conversion to and from a message's stamp (ROS-free).

cvgl holds every stamp as an int of nanoseconds of ROS time. A message carries it as a
`builtin_interfaces/Time`: `sec` (int32) and `nanosec` (uint32, in [0, 1e9)), so that

    stamp_ns = sec * 1e9 + nanosec,   (sec, nanosec) = divmod(stamp_ns, 1e9).

Writing (`ns_to_sec_nanosec`; the bag writer's rosbags headers, the nodes' rclpy `Time` and
the replay clock all call it) accepts only what such a stamp can hold: an integer from 0 to
`MAX_STAMP_NS` (2038-01-19T03:14:07.999999999Z, where int32 seconds end); a float (NaN, 1.5,
or a whole 1e18 that has already lost its last nanoseconds), a negative stamp (rclpy and
rclcpp refuse negative times) or a later one is an InputError.

Reading (`stamp_to_ns` of any object with `sec` and `nanosec`, rosbags or rclpy; and
`header_stamp_ns` of a serialized message) is exact and never refuses: a received stamp is
what its sender wrote, and whoever uses it judges it (the nodes' backward-stamp checks).
Every reader and writer of a stamp, on the vehicle and off it, imports these from here.
"""
from __future__ import annotations

import numbers
import struct

from cvgl_ros.errors import InputError

NS_PER_S = 1_000_000_000
MAX_STAMP_NS = (2**31 - 1) * NS_PER_S + NS_PER_S - 1  # int32 seconds, the last nanosecond of 2038-01-19T03:14:07Z


def ns_to_sec_nanosec(stamp_ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> (sec, nanosec) of a builtin_interfaces/Time (InputError: see the module docstring)."""
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, numbers.Integral):
        raise InputError(f"a stamp must be an integer number of nanoseconds, got {stamp_ns!r}")
    value = int(stamp_ns)
    if not 0 <= value <= MAX_STAMP_NS:
        raise InputError(f"stamp {value} ns is outside what a ROS time holds (0 to {MAX_STAMP_NS} ns)")
    return divmod(value, NS_PER_S)


def sec_nanosec_to_ns(sec: int, nanosec: int) -> int:
    """(sec, nanosec) as a message holds them -> integer nanoseconds (exact)."""
    return int(sec) * NS_PER_S + int(nanosec)


def stamp_to_ns(stamp) -> int:
    """A builtin_interfaces/Time (rosbags or rclpy message) -> integer nanoseconds."""
    return sec_nanosec_to_ns(stamp.sec, stamp.nanosec)


def header_stamp_ns(cdr: bytes) -> int:
    """The stamp of a serialized message that starts with std_msgs/Header, read from its CDR bytes:
    after the 4-byte encapsulation header (byte 1 gives the endianness), int32 sec and uint32 nanosec."""
    if len(cdr) < 12:
        raise InputError(f"a CDR message of {len(cdr)} bytes holds no header stamp (12 bytes at least)")
    endian = "<" if cdr[1] == 1 else ">"
    sec, nanosec = struct.unpack_from(f"{endian}iI", cdr, 4)
    return sec_nanosec_to_ns(sec, nanosec)
