"""When the particle-filter node publishes what, ROS-free.

* `LateMeasurements`: after each measurement the node publishes the estimate at its stamp.
  One that came late (the camera's likelihood arrives an inference after its frame; other
  fixes may be in by then) was applied at its stamp by replaying the newer ones: so
  `after(stamp)` asks for the pose at its stamp (`pose_only`), then every output again at
  the newest stamp, corrected. A filter reset forgets the newest stamp (`reset()`).
* `Throttle`: an output on a period of message time (`/cvgl/particles`, `/cvgl/path`); a
  jump back in time makes it due at once.
* `PathRecorder`: `/cvgl/path` thinned: a pose is kept after moving `min_step_m` from the
  last one kept, at most `max_poses` of them (the oldest go), published on its `Throttle`.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Publication:
    """Publish the estimate at `stamp_ns`: the pose outputs only, or every output."""

    stamp_ns: int
    pose_only: bool = False


class LateMeasurements:
    """See the module docstring."""

    def __init__(self):
        self.newest_ns: int | None = None  # stamp of the newest measurement the filter took in

    def after(self, stamp_ns: int) -> tuple[Publication, ...]:
        """What to publish after the filter took in a measurement stamped `stamp_ns` (a late
        one's first publication is `pose_only`)."""
        if self.newest_ns is None or stamp_ns >= self.newest_ns:
            self.newest_ns = stamp_ns
            return (Publication(stamp_ns),)
        return Publication(stamp_ns, pose_only=True), Publication(self.newest_ns)

    def reset(self) -> None:
        """The filter starts over: no measurement is newer than the next one."""
        self.newest_ns = None


class Throttle:
    """An output due at most every `period_s` of message time (0: always)."""

    def __init__(self, period_s: float):
        self.period_ns = int(period_s * 1e9)
        self.last_ns: int | None = None

    def due(self, stamp_ns: int) -> bool:
        """Due at `stamp_ns` (then the period starts again from it), or not yet."""
        if self.last_ns is not None and abs(stamp_ns - self.last_ns) < self.period_ns:
            return False
        self.last_ns = stamp_ns
        return True


@dataclass(frozen=True)
class PathUpdate:
    """What `PathRecorder.add` changed: a pose appended, how many of the oldest dropped, and
    whether the path is due for publishing."""

    appended: bool
    dropped: int
    publish: bool


class PathRecorder:
    """See the module docstring. `poses`: (stamp_ns, east_m, north_m, yaw_enu_rad), oldest first."""

    def __init__(self, min_step_m: float, max_poses: int, period_s: float):
        if max_poses < 1:
            raise ValueError(f"max_poses {max_poses} must be >= 1")
        self.min_step_m = min_step_m
        self.max_poses = max_poses
        self.throttle = Throttle(period_s)
        self.poses: deque[tuple[int, float, float, float]] = deque()

    def add(self, stamp_ns: int, east_m: float, north_m: float, yaw_enu_rad: float) -> PathUpdate:
        appended = not self.poses or math.hypot(east_m - self.poses[-1][1], north_m - self.poses[-1][2]) \
            >= self.min_step_m
        dropped = 0
        if appended:
            self.poses.append((stamp_ns, east_m, north_m, yaw_enu_rad))
            while len(self.poses) > self.max_poses:
                self.poses.popleft()
                dropped += 1
        return PathUpdate(appended, dropped, self.throttle.due(stamp_ns))
