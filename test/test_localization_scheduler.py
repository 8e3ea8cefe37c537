"""The cross-view node's inference pool, ROS-free (`FrameScheduler`), with real threads: results
in the order frames were taken, stale frames dropped not queued, errors in a worker, shutdown."""
import threading
import time

import pytest

from cvgl_ros.localization.scheduler import FrameScheduler
from support.waiting import wait_until

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)


class Pool:
    """A scheduler whose run waits for a per-frame gate; records what is published and dropped."""

    def __init__(self, workers: int, fail_run=(), fail_publish=(), fail_prepare=()):
        self.lock = threading.Lock()
        self.published, self.dropped, self.errors, self.prepared, self.running = [], [], [], [], []
        self.gates: dict = {}
        self.fail_run, self.fail_publish, self.fail_prepare = fail_run, fail_publish, fail_prepare
        self.scheduler = FrameScheduler(workers, run=self._run, publish=self._publish, drop=self._drop,
                                        prepare=self._prepare, on_error=self._error, name="test_worker")

    def gate(self, frame) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(frame, threading.Event())

    def _prepare(self, frame):
        if frame in self.fail_prepare:
            raise ValueError(f"bad stamp {frame}")
        with self.lock:
            self.prepared.append(frame)
        return f"prepared {frame}"

    def _run(self, frame, prepared):
        assert prepared == f"prepared {frame}"
        with self.lock:
            self.running.append(frame)
        assert self.gate(frame).wait(10), f"frame {frame} never released"
        if frame in self.fail_run:
            raise RuntimeError(f"network failed on {frame}")
        return frame

    def _publish(self, result):
        if result in self.fail_publish:
            raise OSError(f"publisher gone for {result}")
        with self.lock:
            self.published.append(result)

    def _drop(self, frame):
        with self.lock:
            self.dropped.append(frame)

    def _error(self, frame, exc):
        with self.lock:
            self.errors.append((frame, type(exc).__name__))

    def wait(self, predicate, timeout_s=10.0) -> bool:
        return wait_until(predicate, self.lock, timeout_s, 0.005)


@pytest.fixture
def pools():
    made = []

    def make(*args, **kwargs):
        made.append(Pool(*args, **kwargs))
        return made[-1]

    yield make
    for pool in made:
        for event in pool.gates.values():
            event.set()
        pool.scheduler.close(timeout_s=5.0)
        assert not any(t.is_alive() for t in pool.scheduler.threads)


def test_results_are_published_in_the_order_frames_were_taken_whoever_finishes_first(pools):
    pool = pools(3)
    for frame in (1, 2, 3):
        pool.scheduler.submit(frame)
        assert pool.wait(lambda: frame in pool.running)  # each taken by an idle worker: none dropped
    pool.gate(3).set()
    pool.gate(2).set()
    time.sleep(0.2)
    assert pool.published == [], "2 and 3 are done but wait for 1's turn"
    pool.gate(1).set()
    assert pool.wait(lambda: len(pool.published) == 3)
    assert pool.published == [1, 2, 3] and pool.prepared == [1, 2, 3] and pool.dropped == []


def test_a_busy_pool_keeps_only_the_newest_waiting_frame_and_drops_the_older_ones(pools):
    pool = pools(1)
    pool.scheduler.submit(1)
    assert pool.wait(lambda: pool.running == [1])
    for frame in (2, 3, 4):  # the one worker is busy: one frame may wait, the newest
        pool.scheduler.submit(frame)
    assert pool.dropped == [2, 3]
    for frame in (1, 4):
        pool.gate(frame).set()
    assert pool.wait(lambda: pool.published == [1, 4])
    assert pool.prepared == [1, 4], "a dropped frame is never prepared nor run"


def test_idle_workers_each_keep_a_waiting_frame(pools):
    """One busy worker of three: two frames back to back both wait for the two idle ones (none
    dropped, whether or not a worker took the first before the second came); then, with no
    worker idle, only the newest of a burst waits."""
    pool = pools(3)
    pool.scheduler.submit(1)
    assert pool.wait(lambda: 1 in pool.running)
    assert pool.wait(lambda: pool.scheduler.idle_workers == 2)
    pool.scheduler.submit(2)
    pool.scheduler.submit(3)
    assert pool.wait(lambda: 2 in pool.running and 3 in pool.running) and pool.dropped == []
    for frame in (4, 5, 6):  # no idle worker: only the newest waits
        pool.scheduler.submit(frame)
    assert pool.dropped == [4, 5]
    for frame in (1, 2, 3, 6):
        pool.gate(frame).set()
    assert pool.wait(lambda: pool.published == [1, 2, 3, 6])


def test_an_error_in_prepare_run_or_publish_is_reported_and_the_next_frames_go_on(pools):
    pool = pools(2, fail_prepare=(2,), fail_run=(3,), fail_publish=(4,))
    for frame in (1, 2, 3, 4, 5):
        pool.gate(frame).set()
        pool.scheduler.submit(frame)
        assert pool.wait(lambda: len(pool.published) + len(pool.errors) == frame), (pool.published, pool.errors)
    assert pool.published == [1, 5]
    assert pool.errors == [(2, "ValueError"), (3, "RuntimeError"), (4, "OSError")]
    assert all(t.is_alive() for t in pool.scheduler.threads), "the workers survive their errors"


def test_an_error_in_an_earlier_frame_does_not_hold_up_a_later_one(pools):
    pool = pools(2, fail_run=(1,))
    pool.scheduler.submit(1)
    assert pool.wait(lambda: 1 in pool.running)
    pool.scheduler.submit(2)
    assert pool.wait(lambda: 2 in pool.running)
    pool.gate(2).set()
    time.sleep(0.1)
    assert pool.published == []
    pool.gate(1).set()
    assert pool.wait(lambda: pool.published == [2] and pool.errors == [(1, "RuntimeError")])


def test_close_stops_idle_workers_publishes_what_waits_for_its_turn_and_runs_nothing_new(pools):
    pool = pools(2)
    pool.scheduler.submit(1)
    assert pool.wait(lambda: 1 in pool.running)
    pool.scheduler.submit(2)
    assert pool.wait(lambda: 2 in pool.running)
    pool.gate(2).set()  # 2 is done and waits for 1's turn, which never comes before close
    closer = threading.Thread(target=pool.scheduler.close, kwargs={"timeout_s": 5.0})
    closer.start()
    assert pool.wait(lambda: pool.published == [2]), "a result waiting for its turn is published on close"
    pool.gate(1).set()
    closer.join(5.0)
    assert not closer.is_alive() and not any(t.is_alive() for t in pool.scheduler.threads)
    assert pool.published == [2, 1]
    pool.scheduler.submit(3)  # after close: neither run nor dropped
    time.sleep(0.1)
    assert 3 not in pool.prepared and pool.dropped == []


def test_close_of_an_idle_pool_returns_at_once():
    scheduler = FrameScheduler(4, run=lambda f, p: f, publish=lambda r: None, drop=lambda f: None)
    t0 = time.monotonic()
    scheduler.close()
    assert time.monotonic() - t0 < 2.0 and not any(t.is_alive() for t in scheduler.threads)


def test_workers_must_be_a_positive_integer():
    for bad in (0, -1, 1.5, None):
        with pytest.raises(ValueError, match="workers"):
            FrameScheduler(bad, run=lambda f, p: f, publish=lambda r: None, drop=lambda f: None)
