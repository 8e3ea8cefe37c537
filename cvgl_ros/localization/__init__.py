"""The nodes' policies, ROS-free: which prior the cross-view node searches around and how wide
(`prior`), who owns the map frame's datum (`datum`), which camera frames are run and in what
order they are published (`scheduler`), what becomes of each (`frame_localizer`), when the
filter node publishes what (`filter_outputs`), which transform it puts on /tf
(`tf_policy`), where the sensors sit: the parameters, or /tf_static (`mounting`), and when the
coarse stage (seed 001's retrieval grid) runs (`coarse_stage`, imported on use). The
nodes convert messages and call these; each has unit tests of every branch."""
from cvgl_ros.localization.datum import DatumFollower, DatumOwner, DatumUpdate, datum_offset_m, datum_text
from cvgl_ros.localization.frame_localizer import FrameEstimate, FrameLocalizer, FrameOutcome, FrameSettings
from cvgl_ros.localization.mounting import MountingChoice, MountingFromTf, StaticTransforms
from cvgl_ros.localization.prior import PriorChoice, PriorPolicy, PriorSelector
from cvgl_ros.localization.scheduler import FrameScheduler
from cvgl_ros.localization.tf_policy import FrameTransform, MapTfPolicy, TfFrames, TransformHistory

__all__ = ["DatumFollower", "DatumOwner", "DatumUpdate", "FrameEstimate", "FrameLocalizer", "FrameOutcome",
           "FrameScheduler", "FrameSettings", "FrameTransform", "MapTfPolicy", "MountingChoice", "MountingFromTf",
           "PriorChoice", "PriorPolicy", "PriorSelector", "StaticTransforms", "TfFrames", "TransformHistory",
           "datum_offset_m", "datum_text"]
