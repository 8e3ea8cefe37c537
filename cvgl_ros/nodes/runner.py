"""What every node shares: QoS profiles, a steady-clock timer, and `main` with clean shutdown.

`run_node(NodeClass)` initializes rclpy, builds the node, prints "[name] spinning" on stderr
and spins it until SIGINT or SIGTERM (a signal during start-up ends it cleanly too), then
closes it (worker threads joined, publishers destroyed) and exits 0. A configuration error
(`InputError` from the node's constructor, e.g. a parameter out of range) prints one line
and exits 2.

Signals are handled here, not by rclpy: rclpy's handler runs on its own thread, triggers the
executors' guard conditions and shuts the context down while the main thread is already
tearing the executor down, and that race segfaulted about 1 shutdown in 20 on these machines
(in `unregister_sigint_guard_condition`; the rclpy issues on Ctrl-C crashes are of this kind).
Our handler only sets a flag that the main thread reads between executor waits, so every
step of the shutdown happens on one thread, in order.

Started by `NodeProcesses` (`cvgl replay`, `cvgl launch`), a node dies with its parent
(`cvgl_ros.nodes.supervision`: a parent-death SIGTERM on Linux, a parent poll elsewhere),
so a `kill -9` of the parent leaves no node behind to disturb the next run.
"""
from __future__ import annotations

import signal
import sys
import threading

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from cvgl_ros.errors import InputError

# Sensors: best effort, keep the last 5 (REP-2003 sensor data).
SENSOR_QOS = qos_profile_sensor_data
# Results: reliable, keep the last 10 (what RViz and recorders subscribe with).
RESULT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
# Camera info arrives once or slowly: reliable, latched for late joiners.
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def steady_timer(node, period_s: float, callback):
    """A timer on the monotonic wall clock: it ticks even when /clock (use_sim_time) stalls."""
    from rclpy.clock import Clock, ClockType

    return node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


# How long the executor waits at most before it looks at the stop flag again (the shutdown latency).
STOP_POLL_S = 0.1


def run_node(node_class, args=None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from cvgl_ros.nodes import supervision

    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()
        if supervision.parent_gone():  # the parent-death signal: no one waits for a clean exit
            supervision.arm_deadline()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    if supervision.die_with_parent(stop) == "parent gone":
        print(f"{getattr(node_class, 'NODE_NAME', node_class.__name__)}: the process that started it has exited; "
              "not starting", file=sys.stderr)
        return 1
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = executor = None
    try:
        try:
            executor = SingleThreadedExecutor()
            node = node_class()
            executor.add_node(node)
        except InputError as exc:
            print(f"{getattr(node_class, 'NODE_NAME', node_class.__name__)}: error: {exc}", file=sys.stderr)
            return 2
        print(f"[{node.get_name()}] spinning", file=sys.stderr, flush=True)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=STOP_POLL_S)
        if supervision.parent_gone():
            supervision.arm_deadline()
    except ExternalShutdownException:  # rclpy.shutdown() from elsewhere in the process
        pass
    finally:
        if node is not None:
            print(f"[{node.get_name()}] shutting down", file=sys.stderr, flush=True)
            node.close()
            if executor is not None:
                executor.shutdown()
            node.destroy_node()
        elif executor is not None:
            executor.shutdown()
        rclpy.try_shutdown()
    return 0
