"""Which transform the filter node puts on /tf, as robot_localization does it (REP-105); ROS-free.

The filter estimates base_link in map. With `publish_tf`:
- when odometry publishes odom -> base_link on /tf (its own smooth, drifting frame), the node
  publishes map -> odom = (map -> base_link) (odom -> base_link)^-1, so that the chain
  map -> odom -> base_link is the fused pose and base_link keeps one parent;
- otherwise map -> base_link, the fused pose itself.

The odom -> base_link used is the one at the pose's stamp (`TransformHistory.at`):
interpolated between the two samples around that stamp, as tf2's lookupTransform at a time
does, or the nearest sample when the stamp is outside them; a sample farther than
`max_gap_s` from the stamp counts as no odometry. robot_localization takes the latest
odom -> base_link whatever its age and publishes nothing without one; here a stale or
missing odometry gives map -> base_link instead (issue 14).
A transform is never sent twice at one stamp: tf2 warns of TF_REPEATED_DATA, and
robot_localization skips such corrected publications too.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from cvgl_ros.errors import InputError
from cvgl_ros.geo.transforms import RigidTransform, interpolate


def frame_name(frame_id: str) -> str:
    """A tf2 frame id without the leading '/' tf2 ignores."""
    return frame_id.lstrip("/")


@dataclass(frozen=True)
class TfFrames:
    """REP-105 frame names: the filter's world frame, odometry's frame, the vehicle's frame
    (kept without a leading '/')."""

    map: str = "map"
    odom: str = "odom"
    base_link: str = "base_link"

    def __post_init__(self):
        for field in ("map", "odom", "base_link"):
            object.__setattr__(self, field, frame_name(getattr(self, field)))
        names = [self.map, self.odom, self.base_link]
        if not all(names) or len(set(names)) != 3:
            raise InputError(f"map, odom and base_link frames must be three different names, got {names}")


@dataclass(frozen=True)
class FrameTransform:
    """One transform to send: `transform` is T_parent_child at `stamp_ns`."""

    parent: str
    child: str
    stamp_ns: int
    transform: RigidTransform


class TransformHistory:
    """Recent samples of one frame pair by stamp, the last `span_s` before the newest (tf2's
    buffer keeps 10 s), or one static transform that holds at every stamp."""

    def __init__(self, max_gap_s: float, span_s: float = 10.0):
        if not max_gap_s >= 0.0 or not span_s > 0.0:
            raise InputError(f"max_gap_s must be >= 0 and span_s > 0, got {max_gap_s}, {span_s}")
        self.max_gap_ns = int(max_gap_s * 1e9)
        self.span_ns = int(span_s * 1e9)
        self.stamps: list[int] = []
        self.samples: list[RigidTransform] = []
        self.static: RigidTransform | None = None

    def add(self, stamp_ns: int, transform: RigidTransform) -> None:
        """A sample; one at a stamp already held replaces it, an out-of-order one is placed. One
        older than the span before the newest means time jumped back (a replay restarted): the
        samples held are dropped."""
        stamp_ns = int(stamp_ns)
        if self.stamps and stamp_ns < self.stamps[-1] - self.span_ns:
            self.stamps.clear()
            self.samples.clear()
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.samples[i] = transform
        else:
            self.stamps.insert(i, stamp_ns)
            self.samples.insert(i, transform)
        drop = bisect.bisect_left(self.stamps, self.stamps[-1] - self.span_ns)
        del self.stamps[:drop], self.samples[:drop]

    def set_static(self, transform: RigidTransform) -> None:
        self.static = transform

    def at(self, stamp_ns: int) -> RigidTransform | None:
        """The transform at stamp_ns (module docstring), None when no sample is within max_gap_s."""
        if self.static is not None:
            return self.static
        if not self.stamps:
            return None
        stamp_ns = int(stamp_ns)
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return self.samples[i]
        nearest = min((abs(self.stamps[j] - stamp_ns) for j in (i - 1, i) if 0 <= j < len(self.stamps)))
        if nearest > self.max_gap_ns:
            return None
        if i == 0:
            return self.samples[0]
        if i == len(self.stamps):
            return self.samples[-1]
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        return interpolate(self.samples[i - 1], self.samples[i], (stamp_ns - t0) / (t1 - t0))


class MapTfPolicy:
    """The transform to send for each fused pose (module docstring)."""

    def __init__(self, frames: TfFrames):
        self.frames = frames
        self.last_stamp_ns: int | None = None

    def transform(self, stamp_ns: int, map_to_base: RigidTransform,
                  odom_to_base: RigidTransform | None) -> FrameTransform | None:
        """map -> odom when odom -> base_link is known at this stamp, else map -> base_link;
        None at the stamp of the previous one."""
        stamp_ns = int(stamp_ns)
        if stamp_ns == self.last_stamp_ns:
            return None
        self.last_stamp_ns = stamp_ns
        f = self.frames
        if odom_to_base is None:
            return FrameTransform(f.map, f.base_link, stamp_ns, map_to_base)
        return FrameTransform(f.map, f.odom, stamp_ns, map_to_base @ odom_to_base.inverse())
