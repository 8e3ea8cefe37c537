"""The nodes' policies, ROS-free: which prior the cross-view node searches around and how wide
(`prior`), who owns the map frame's datum (`datum`), and which transform the filter node puts
on /tf (`tf_policy`). The nodes convert messages and call these; each has unit tests of every
branch."""
from cvgl_ros.localization.datum import DatumFollower, DatumOwner, DatumUpdate, datum_offset_m, datum_text
from cvgl_ros.localization.prior import PriorChoice, PriorPolicy, PriorSelector
from cvgl_ros.localization.tf_policy import FrameTransform, MapTfPolicy, TfFrames, TransformHistory

__all__ = ["DatumFollower", "DatumOwner", "DatumUpdate", "FrameTransform", "MapTfPolicy", "PriorChoice",
           "PriorPolicy", "PriorSelector", "TfFrames", "TransformHistory", "datum_offset_m", "datum_text"]
