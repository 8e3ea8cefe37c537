"""The map frame's datum has one owner: the particle-filter node decides it, everyone follows.

`DatumOwner` (the filter node): the `datum` parameter when given, otherwise the first valid
GNSS fix it receives (latitude, longitude and ellipsoidal height of that fix). Once decided
it never changes for the life of the node; the node publishes it latched (transient-local,
reliable, depth 1) so that a node started later receives it too.

`DatumFollower` (the cross-view node): holds no datum until the owner's arrives, and uses
that one and nothing else. A `datum` parameter given to the follower too is only a check:
when the owner's differs from it by more than `tolerance_m` (the distance between the two
origins), `receive` says so and the owner's datum is still the one used (the filter fuses in
its own frame, so a likelihood in any other frame would be wrong). A different datum from
the owner later (the filter node restarted without a datum parameter and anchored at a new
fix) replaces the old one; the follower then clears what it held in the old frame. The nodes
hold no datum of their own: they read the owner's or the follower's `datum`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from cvgl_ros.geo.datum import Datum


def datum_text(datum: Datum) -> str:
    """`lat,lon,alt` as /diagnostics shows a datum."""
    return f"{datum.lat_deg:.8f},{datum.lon_deg:.8f},{datum.alt_m:.3f}"


def datum_offset_m(a: Datum, b: Datum) -> float:
    """Distance between the origins of two datums, m (the origin of b in a's ENU frame)."""
    e, n, u = a.to_enu(b.lat_deg, b.lon_deg, b.alt_m)
    return float(math.sqrt(float(e) ** 2 + float(n) ** 2 + float(u) ** 2))


class DatumOwner:
    """The filter node's datum: the parameter, or the first valid fix (see the module docstring)."""

    def __init__(self, parameter: Datum | None):
        self.datum: Datum | None = parameter
        self.source = "parameter" if parameter is not None else ""
        self.stamp_ns = 0  # of the fix it was anchored at (0: from the parameter)

    def offer_fix(self, stamp_ns: int, lat_deg: float, lon_deg: float, alt_m: float) -> bool:
        """A valid fix came in; True when it has just become the datum (publish it now)."""
        if self.datum is not None:
            return False
        self.datum = Datum(float(lat_deg), float(lon_deg), float(alt_m))
        self.source = "first valid fix"
        self.stamp_ns = int(stamp_ns)
        return True

    def describe(self) -> str:
        if self.datum is None:
            return "unset: anchors at the first valid fix"
        return datum_text(self.datum) + ("" if self.source == "parameter" else f" ({self.source})")


@dataclass(frozen=True)
class DatumUpdate:
    """What a received datum changed: `changed` (the first datum, or a different one than before),
    `replaced` (a different one than before: drop what was held in the old frame) and `mismatch`
    (text when it disagrees with the parameter)."""

    changed: bool
    mismatch: str | None = None
    replaced: bool = False


class DatumFollower:
    """The cross-view node's datum: the owner's, once it arrived (see the module docstring)."""

    def __init__(self, parameter: Datum | None, tolerance_m: float = 0.01):
        self.parameter = parameter
        self.tolerance_m = float(tolerance_m)
        self.datum: Datum | None = None

    def receive(self, datum: Datum) -> DatumUpdate:
        """The owner's datum arrived; one within `tolerance_m` of the held one leaves it as it is."""
        previous = self.datum
        changed = previous is None or datum_offset_m(previous, datum) > self.tolerance_m
        if changed:
            self.datum = datum
        mismatch = None
        if self.parameter is not None:
            offset = datum_offset_m(self.parameter, datum)
            if offset > self.tolerance_m:
                mismatch = (f"the filter's datum {datum_text(datum)} differs from this node's datum parameter "
                            f"{datum_text(self.parameter)} by {offset:.2f} m; using the filter's")
        return DatumUpdate(changed, mismatch, replaced=changed and previous is not None)

    def describe(self) -> str:
        if self.datum is None:
            return "waiting for the filter's datum"
        return datum_text(self.datum) + " (from the filter)"
