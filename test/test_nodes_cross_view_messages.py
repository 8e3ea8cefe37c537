"""The cross-view node's frame status survives serialization with its level, text and timings."""
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.serialization import deserialize_message, serialize_message

from cvgl_ros.localization.frame_localizer import ERROR, OK, WARN
from cvgl_ros.nodes.cross_view_messages import frame_status_msg
from cvgl_ros.nodes.diagnostics import diagnostic_values
from cvgl_ros.stamps import stamp_to_ns


@pytest.mark.parametrize("level, expected", [(OK, DiagnosticStatus.OK), (WARN, DiagnosticStatus.WARN),
                                             (ERROR, DiagnosticStatus.ERROR)])
def test_a_frame_status_keeps_its_level_text_stamp_and_timings(level, expected):
    msg = frame_status_msg(1_700_000_000_123_456_789, "map", "cross_view_node", level, "processed",
                           {"decode_ms": 1.23456, "total_ms": 20.0})
    back = deserialize_message(serialize_message(msg), DiagnosticArray)
    assert back.status[0].level == expected
    assert stamp_to_ns(back.header.stamp) == 1_700_000_000_123_456_789 and back.header.frame_id == "map"
    values = diagnostic_values(back, "cross_view_node frame")
    assert values == {"decode_ms": "1.235", "total_ms": "20.000", "level": str(level), "message": "processed"}
