"""The nodes' policies, ROS-free: which prior the cross-view node searches around and how wide
(`prior`), and who owns the map frame's datum (`datum`). The nodes convert messages and call
these; each has unit tests of every branch."""
from cvgl_ros.localization.datum import DatumFollower, DatumOwner, DatumUpdate, datum_offset_m, datum_text
from cvgl_ros.localization.prior import PriorChoice, PriorPolicy, PriorSelector

__all__ = ["DatumFollower", "DatumOwner", "DatumUpdate", "PriorChoice", "PriorPolicy", "PriorSelector",
           "datum_offset_m", "datum_text"]
