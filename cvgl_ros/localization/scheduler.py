"""Camera frames in flight: never queued, run by a pool of workers, published in camera order.

`FrameScheduler` is the cross-view node's inference pool, ROS-free. `submit(frame)` (the
image callback) keeps only as many frames waiting as there are idle workers, at least the
newest one: a waiting frame pushed out by a newer one before a worker took it goes to
`drop(frame)`, so a camera faster than the inference never builds a queue (the newest frame
is the one processed, however slow the network).

Each of the `workers` threads loops: take the oldest waiting frame (its ticket is the order
in which frames were taken), `prepare(frame)` in that order, one frame at a time (the node
checks the camera stamps there), `run(frame, prepared)` concurrently with the other
workers, then `publish(result)` when it is this ticket's turn: results go out in the order
the frames were taken, never out of camera order, so the filter never receives a likelihood
older than one it already has, whichever worker finishes first.

Errors: an exception in `prepare`, `run` or `publish` goes to `on_error(frame, exc)` in the
frame's turn (one in `on_error` itself is printed); the turn still passes (the next frame
is not held up) and the worker goes on with the next frame. `close()` stops the workers: frames still waiting are not run, a worker waiting
for its turn publishes without waiting (nothing waits for a ticket that will never come),
and the threads are joined.
"""
from __future__ import annotations

import threading
import traceback
from collections import deque
from typing import Any, Callable

_POLL_S = 0.5  # a waiting worker looks at the stop flag at least this often


class FrameScheduler:
    """See the module docstring."""

    def __init__(self, workers: int, run: Callable[[Any, Any], Any], publish: Callable[[Any], None],
                 drop: Callable[[Any], None], prepare: Callable[[Any], Any] = lambda frame: None,
                 on_error: Callable[[Any, BaseException], None] = lambda frame, exc: None,
                 name: str = "frame_worker"):
        if not (isinstance(workers, int) and workers >= 1):
            raise ValueError(f"workers {workers!r} must be an integer >= 1")
        self._run, self._publish, self._drop = run, publish, drop
        self._prepare, self._on_error = prepare, on_error
        self._lock = threading.Lock()
        self._frame_waiting = threading.Condition(self._lock)
        self._turn_changed = threading.Condition(self._lock)
        self._waiting: deque = deque()  # frames no worker has taken yet: at most one per idle worker (>= 1)
        self._idle = 0
        self._next_ticket = 0           # frames taken by a worker, in order
        self._turn = 0                  # the next of them whose result may be published
        self._stopped = False
        self.threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(workers)]
        for thread in self.threads:
            thread.start()

    @property
    def idle_workers(self) -> int:
        """Workers waiting for a frame now."""
        with self._lock:
            return self._idle

    def submit(self, frame) -> None:
        """A new frame: waits for a worker, pushing out (dropping) the oldest beyond one per idle worker."""
        with self._lock:
            if self._stopped:
                return
            self._waiting.append(frame)
            dropped = []
            while len(self._waiting) > max(self._idle, 1):
                dropped.append(self._waiting.popleft())
            self._frame_waiting.notify()
        for old in dropped:
            self._drop(old)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the workers (see the module docstring) and join them."""
        with self._lock:
            self._stopped = True
            self._frame_waiting.notify_all()
            self._turn_changed.notify_all()
        for thread in self.threads:
            thread.join(timeout=timeout_s)

    # -- a worker -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            frame, ticket, prepared = taken
            try:
                result = self._run(frame, prepared) if not isinstance(prepared, _Failed) else prepared
            except Exception as exc:  # noqa: BLE001 - the worker survives; the caller hears of it
                result = _Failed(exc)
            self._publish_in_turn(frame, ticket, result)

    def _take(self):
        """(frame, ticket, what prepare returned) for the oldest waiting frame; None once stopped."""
        with self._lock:
            self._idle += 1
            while not self._waiting and not self._stopped:
                self._frame_waiting.wait(timeout=_POLL_S)
            self._idle -= 1
            if self._stopped:
                return None
            frame = self._waiting.popleft()
            ticket = self._next_ticket
            self._next_ticket += 1
            try:
                prepared = self._prepare(frame)
            except Exception as exc:  # noqa: BLE001
                prepared = _Failed(exc)
            return frame, ticket, prepared

    def _publish_in_turn(self, frame, ticket: int, result) -> None:
        with self._lock:
            while self._turn != ticket and not self._stopped:
                self._turn_changed.wait(timeout=_POLL_S)
        try:
            if isinstance(result, _Failed):
                self._report(frame, result.exc)
            else:
                self._publish(result)
        except Exception as exc:  # noqa: BLE001
            self._report(frame, exc)
        finally:
            with self._lock:
                self._turn = ticket + 1
                self._turn_changed.notify_all()

    def _report(self, frame, exc: BaseException) -> None:
        try:
            self._on_error(frame, exc)
        except Exception:  # noqa: BLE001 - a failing error handler must not stop the worker either
            traceback.print_exc()


class _Failed:
    """What a frame whose prepare or run raised carries to its turn."""

    def __init__(self, exc: BaseException):
        self.exc = exc
