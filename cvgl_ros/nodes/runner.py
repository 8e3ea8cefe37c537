"""What every node shares: QoS profiles, a steady-clock timer, and `main` with clean shutdown.

`run_node(NodeClass)` initializes rclpy (which installs handlers for SIGINT *and* SIGTERM:
either shuts the context down and the executor returns), builds the node, prints
"[name] spinning" on stderr and spins it (a signal during start-up ends it cleanly too), then
closes it (worker threads joined, publishers destroyed) and exits 0. A configuration error
(`InputError` from the node's constructor, e.g. a parameter out of range) prints one line
and exits 2.
"""
from __future__ import annotations

import sys

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


def run_node(node_class, args=None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args)
    node = executor = None
    try:
        try:
            executor = SingleThreadedExecutor()
            node = node_class()
            executor.add_node(node)
        except InputError as exc:
            print(f"{getattr(node_class, 'NODE_NAME', node_class.__name__)}: error: {exc}", file=sys.stderr)
            return 2
        except Exception:
            if rclpy.ok():
                raise
            return 0  # SIGTERM while starting: the context is gone, nothing to run
        print(f"[{node.get_name()}] spinning", file=sys.stderr, flush=True)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # SIGINT/SIGTERM shut the context down while the executor was building its wait
        # set (rclpy raises RCLError "context is not valid" then): a clean shutdown too.
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
