"""A node process that dies with the process that started it (`cvgl replay`, `cvgl launch`).

`NodeProcesses` puts its own pid into the child's environment as `CVGL_DIE_WITH_PARENT`;
`run_node` then calls `die_with_parent(stop)` before it initializes rclpy:

* Linux: `prctl(PR_SET_PDEATHSIG, SIGTERM)` (ctypes, libc). The kernel sends SIGTERM when
  the parent dies, even by `kill -9`; the node's SIGTERM handler sets `stop` and the node
  shuts down as on Ctrl-C. Note: the kernel ties this to the parent *thread* that forked
  the child, so the nodes must be started from a thread that lives as long as they should.
* Elsewhere (or when prctl fails): a daemon thread compares `os.getppid()` with the parent
  pid once every `POLL_S` and sets `stop` when the node has been re-parented. Slower (up to
  `POLL_S`), and it cannot help a node stuck in a C call that never returns to Python.

Either way, right after arming, `os.getppid()` is compared with the parent pid: a parent
that died while the child was still importing (before prctl) is caught there. And once the
parent is gone, `arm_deadline()` makes sure the shutdown cannot hang: SIGALRM (its default
action ends the process) after `SHUTDOWN_DEADLINE_S`.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

ENV_PARENT_PID = "CVGL_DIE_WITH_PARENT"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 0.5
SHUTDOWN_DEADLINE_S = 5


def parent_pid() -> int | None:
    """The pid the node must not outlive (from `CVGL_DIE_WITH_PARENT`), or None."""
    try:
        pid = int(os.environ.get(ENV_PARENT_PID, ""))
    except ValueError:
        return None
    return pid if pid > 1 else None


def parent_gone() -> bool:
    """True when the node was started supervised and its parent has died (re-parented)."""
    pid = parent_pid()
    return pid is not None and os.getppid() != pid


def arm_deadline() -> None:
    """Once the parent is gone: the process ends by SIGALRM if shutdown takes too long."""
    if hasattr(signal, "alarm") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(SHUTDOWN_DEADLINE_S)


def _pdeathsig(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _poll_parent(stop: threading.Event) -> None:
    while not stop.wait(POLL_S):
        if parent_gone():
            stop.set()
            return


def die_with_parent(stop: threading.Event) -> str | None:
    """Arm the supervision (see the module docstring); which mechanism, or None when the
    node was not started supervised. "parent gone" when the parent died before this ran:
    the caller exits at once."""
    if parent_pid() is None:
        return None
    mechanism = "parent-death signal" if _pdeathsig(signal.SIGTERM) else None
    if parent_gone():
        return "parent gone"
    if mechanism is None:
        threading.Thread(target=_poll_parent, args=(stop,), name="cvgl_parent_watch", daemon=True).start()
        mechanism = "parent poll"
    return mechanism
