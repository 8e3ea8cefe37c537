"""Out-of-order measurements: the particle filter applies every measurement at its own stamp.

Rules
-----
* The filter keeps the measurements of the last `window_s` seconds (by stamp, behind the
  newest one), each with a snapshot of the filter state from just before it was applied.
* A measurement newer than the filter time is applied at once and appended.
* One that arrives late but within the window is applied at its stamp: the state is rewound
  to the snapshot of the first newer measurement, the late one is applied, then every newer
  one again, in stamp order (their snapshots are renewed on the way).
* One older than the window is dropped (the filter counts it as `late_dropped`).
* The posterior as it stood at a past stamp is the snapshot of the first measurement after
  it (or the current state), for estimates at the stamp of a late camera frame.

The cost of a late measurement is one re-application of everything newer: at 15 Hz of
measurements and a 1 s window, about 15 updates.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Entry:
    """A measurement (any object with a `stamp_s`) and the filter state before it."""

    stamp_s: float
    measurement: object
    before: object = field(repr=False, default=None)


class MeasurementHistory:
    """The window of applied measurements, oldest first."""

    def __init__(self, window_s: float):
        self.window_s = float(window_s)
        self.entries: list[Entry] = []

    def clear(self) -> None:
        self.entries = []

    def start(self, entry: Entry) -> None:
        """Forget everything: `entry` (an initialization) is the only one."""
        self.entries = [entry]

    def has(self, stamp_s: float, kind: type) -> bool:
        """A measurement of this type with this stamp is in the window."""
        return any(isinstance(e.measurement, kind) and e.stamp_s == stamp_s for e in self.entries)

    def is_too_late(self, stamp_s: float, now_s: float) -> bool:
        return now_s - stamp_s > self.window_s or not self.entries

    def append(self, entry: Entry, now_s: float) -> None:
        self.entries.append(entry)
        horizon = now_s - self.window_s
        drop = 0
        while drop < len(self.entries) - 1 and self.entries[drop].stamp_s < horizon:
            drop += 1
        if drop:
            del self.entries[:drop]

    def first_newer(self, stamp_s: float) -> int:
        """Index of the first entry stamped after `stamp_s` (the filter rewinds to its snapshot)."""
        return next(i for i, e in enumerate(self.entries) if e.stamp_s > stamp_s)

    def insert(self, index: int, entry: Entry) -> None:
        self.entries.insert(index, entry)

    def posterior_at(self, stamp_s: float, current):
        """The state right after the last measurement at or before `stamp_s` (None when the
        window no longer reaches back that far)."""
        entries = self.entries
        i = next((k for k in range(len(entries) - 1, -1, -1) if entries[k].stamp_s <= stamp_s), None)
        if i is None:
            return None
        return entries[i + 1].before if i + 1 < len(entries) else current
