"""Polling a condition that other threads make true (ROS callbacks, worker pools)."""
import time


def wait_until(predicate, lock, timeout_s: float, poll_s: float) -> bool:
    """True as soon as `predicate()` holds (evaluated holding `lock`), False after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with lock:
            if predicate():
                return True
        time.sleep(poll_s)
    return False
