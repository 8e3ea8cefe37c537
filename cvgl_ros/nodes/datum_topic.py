"""`/cvgl/datum`: the map frame's datum as the particle-filter node publishes it.

A `sensor_msgs/NavSatFix` (a standard message, RViz- and recorder-friendly) with
header.frame_id = the map frame (`map`), latitude/longitude/altitude = the origin of `map`
(ENU, REP-105; WGS84, ellipsoidal height), status STATUS_FIX, covariance type UNKNOWN, and
header.stamp = the stamp of the fix it was anchored at (or the node's clock when it came
from the `datum` parameter). Published once, latched: transient-local, reliable, depth 1,
so a node that subscribes later (the cross-view node loading its model) still receives it.
"""
from __future__ import annotations

from sensor_msgs.msg import NavSatFix, NavSatStatus

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum
from cvgl_ros.nodes.conversions import to_stamp
from cvgl_ros.nodes.runner import LATCHED_QOS

DATUM_TOPIC = "/cvgl/datum"
DATUM_QOS = LATCHED_QOS  # transient-local, reliable, keep last 1


def datum_msg(datum: Datum, stamp_ns: int, map_frame: str) -> NavSatFix:
    msg = NavSatFix()
    msg.header.stamp = to_stamp(stamp_ns)
    msg.header.frame_id = map_frame
    msg.status.status = NavSatStatus.STATUS_FIX
    msg.status.service = NavSatStatus.SERVICE_GPS
    msg.latitude, msg.longitude, msg.altitude = float(datum.lat_deg), float(datum.lon_deg), float(datum.alt_m)
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
    return msg


def msg_to_datum(msg: NavSatFix, map_frame: str) -> Datum:
    """The datum a `/cvgl/datum` message carries (InputError: another frame, or not a datum)."""
    if msg.header.frame_id != map_frame:
        raise InputError(f"datum for frame {msg.header.frame_id!r}, expected {map_frame!r}")
    try:
        return Datum(float(msg.latitude), float(msg.longitude), float(msg.altitude))
    except InputError as exc:
        raise InputError(f"datum message: {exc}") from None
