"""What a node tells `/diagnostics`: input rates, stage latencies, counters and its last problem.

A node keeps one `NodeHealth`: `tick("image")` per input message, `latency("inference", ms)`
per stage, `count("gnss_rejected")` per event, `problem("...")` for bad input it survived,
`fatal("...")` for a configuration it cannot work with. `to_msg(stamp)` builds the
`diagnostic_msgs/DiagnosticArray` with one `DiagnosticStatus` for the node:

* level ERROR while a fatal condition holds (no model, no tiles), WARN for `warn_hold_s`
  after a problem, OK otherwise; the message is the fatal reason or the last problem;
* values: `rate_<input>_hz` (over the last `window_s` of wall time), `latency_<stage>_ms`
  (mean and p95 of the last 100), every counter, `last_problem`, and `recent_problems`
  (the distinct problems of the last `warn_hold_s`, newest first, " | "-separated), and
  `publishers_<topic>`: how many publishers each input subscription has matched (from the
  subscriber's side: 0 says the topic is not coming in, whatever its publisher believes).
Rates and latencies use the monotonic wall clock, so they are right under `use_sim_time`.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from cvgl_ros.nodes.conversions import to_stamp


def health_name(node_name: str, namespace: str = "/") -> str:
    """The node's name in /diagnostics (shared by every namespace): `node_name` in the root
    namespace, `car1/node_name` under /car1, so that two instances do not share a status."""
    ns = namespace.strip("/")
    return f"{ns}/{node_name}" if ns else node_name


class NodeHealth:
    def __init__(self, name: str, hardware_id: str = "cvgl_ros", window_s: float = 5.0, warn_hold_s: float = 5.0,
                 counters: tuple = ()):
        """`counters`: listed in /diagnostics from the start, at 0."""
        self.name = name
        self.hardware_id = hardware_id
        self.window_s = window_s
        self.warn_hold_s = warn_hold_s
        self._lock = threading.Lock()
        self._ticks: dict[str, deque] = {}
        self._latency: dict[str, deque] = {}
        self.counters: dict[str, int] = dict.fromkeys(counters, 0)
        self.values: dict[str, str] = {}
        self.last_problem = ""
        self._last_problem_t = -1e18
        self._recent: deque = deque(maxlen=5)  # (monotonic time, message), newest last
        self.fatal_reasons: list[str] = []

    def tick(self, stream: str) -> None:
        with self._lock:
            self._ticks.setdefault(stream, deque(maxlen=2000)).append(time.monotonic())

    def latency(self, stage: str, ms: float) -> None:
        with self._lock:
            self._latency.setdefault(stage, deque(maxlen=100)).append(float(ms))

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def set_value(self, key: str, value) -> None:
        with self._lock:
            self.values[key] = value if isinstance(value, str) else f"{value:.6g}" if isinstance(value, float) else str(value)

    def note_input_publishers(self, subscriptions) -> None:
        """`publishers_<topic>` for each rclpy subscription: its matched publisher count now."""
        for sub in subscriptions:
            self.set_value(f"publishers_{sub.topic_name}", sub.get_publisher_count())

    def problem(self, message: str, counter: str | None = None) -> None:
        """Record bad input that the node survived (WARN for a few seconds)."""
        with self._lock:
            self.last_problem = message
            self._last_problem_t = time.monotonic()
            self._recent = deque(((t, m) for t, m in self._recent if m != message), maxlen=5)
            self._recent.append((self._last_problem_t, message))
            if counter:
                self.counters[counter] = self.counters.get(counter, 0) + 1

    def fatal(self, reason: str) -> None:
        """A reason the node cannot work; every one is kept and reported (a later one never
        hides an earlier one: a missing tile cache does not hide a missing model)."""
        if reason not in self.fatal_reasons:
            self.fatal_reasons.append(reason)

    @property
    def fatal_reason(self) -> str:
        """Every fatal reason, in the order they were found ('' when the node works)."""
        return "; ".join(self.fatal_reasons)

    def rate_hz(self, stream: str) -> float:
        now = time.monotonic()
        with self._lock:
            ticks = [t for t in self._ticks.get(stream, ()) if now - t <= self.window_s]
        if len(ticks) < 2:
            return 0.0
        return (len(ticks) - 1) / max(ticks[-1] - ticks[0], 1e-9)

    def latency_stats(self, stage: str) -> tuple[float, float]:
        with self._lock:
            values = np.array(self._latency.get(stage, ()), dtype=float)
        if values.size == 0:
            return 0.0, 0.0
        return float(values.mean()), float(np.percentile(values, 95))

    def level_and_message(self) -> tuple[int, str]:
        if self.fatal_reason:
            return DiagnosticStatus.ERROR, self.fatal_reason
        if time.monotonic() - self._last_problem_t <= self.warn_hold_s:
            return DiagnosticStatus.WARN, self.last_problem
        return DiagnosticStatus.OK, "running"

    def to_msg(self, stamp_ns: int) -> DiagnosticArray:
        level, message = self.level_and_message()
        values = []
        for stream in sorted(self._ticks):
            values.append(KeyValue(key=f"rate_{stream}_hz", value=f"{self.rate_hz(stream):.3f}"))
        for stage in sorted(self._latency):
            mean, p95 = self.latency_stats(stage)
            values.append(KeyValue(key=f"latency_{stage}_ms", value=f"{mean:.3f}"))
            values.append(KeyValue(key=f"latency_{stage}_p95_ms", value=f"{p95:.3f}"))
        with self._lock:
            values += [KeyValue(key=k, value=str(v)) for k, v in sorted(self.counters.items())]
            values += [KeyValue(key=k, value=v) for k, v in sorted(self.values.items())]
            values.append(KeyValue(key="last_problem", value=self.last_problem))
            now = time.monotonic()
            recent = [m for t, m in reversed(self._recent) if now - t <= self.warn_hold_s]
            values.append(KeyValue(key="recent_problems", value=" | ".join(recent)))
        status = DiagnosticStatus(level=level, name=f"cvgl_ros: {self.name}", message=message,
                                  hardware_id=self.hardware_id, values=values)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = to_stamp(stamp_ns)
        return msg


def diagnostic_values(msg: DiagnosticArray, node_name: str) -> dict[str, str] | None:
    """{key: value} of the status of `node_name` in a DiagnosticArray, None when absent."""
    for status in msg.status:
        if status.name == f"cvgl_ros: {node_name}":
            out = {kv.key: kv.value for kv in status.values}
            out["level"] = str(int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level))
            out["message"] = status.message
            return out
    return None
