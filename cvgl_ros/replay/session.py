"""`replay_bag`: a recorded drive through the real nodes, their outputs into a new bag.

0. Checks the bag first: a camera topic, the input topics of the types the nodes subscribe
   with (`INPUT_TYPES`), a valid recorded datum (or none: the nodes then anchor at the first
   fix). Bad input is one InputError line, before any process starts.
1. Leases a private ROS domain (`cvgl_ros.replay.domain`: a free id held by a lock file, or
   the given `domain_id`; localhost-only discovery) and starts `cross_view_node` and
   `particle_filter_node` on it as processes (`cvgl_ros.nodes.launcher`), marked with this
   run's enclave, with the parameter file plus `use_sim_time: true`, the bag's `map` datum,
   the tile cache and the model. They die with this process, even by `kill -9`.
2. Waits until the nodes' subscriptions (camera, camera_info, GNSS, /clock) and outputs are
   matched over DDS, i.e. the model is loaded, on both sides: the player's publishers count
   the subscriptions, and the nodes' /diagnostics count the player's publishers (a
   best-effort subscriber drops messages from a publisher it has not matched yet). Both of
   this run's nodes must be in the graph, and no node of another enclave (a live system, a
   stale run) for at least `DISCOVERY_WINDOW_S` (DDS discovery has no "complete" signal):
   such a foreign node is refused with one line. Then the domain and the nodes' pids are
   printed (with `progress`).
3. Plays the bag with `/clock` (`BagPlayer`) at `rate` x real time, or in **lockstep**: after
   each camera frame it waits for the cross-view node's frame status (processed / skipped)
   and, for a processed frame, for the filter's `/cvgl/pose` at that stamp, as many as the
   status's `filter_inputs` (the filter answers its likelihood and its grid scores each with
   a pose there; the cross-view node has waited for them before sending the status, so the
   filter has taken the frame in when the next message goes out); after each valid
   GNSS fix it waits for the filter's echo on `/cvgl/gnss/pose` (sent once the fix is fused
   and its pose published). The fused pose of one frame (or of the fix after it) is the next
   frame's prior, and it travels to the cross-view node beside the player's next frame: the
   cross-view node waits for it (`lockstep_filter_pose_wait_s`; `FrameLocalizer`). So no
   message is dropped, and the run does not depend on the machine's speed. With
   `frames_in_flight` N > 1 the player keeps up to N frames in the nodes at once (N inference
   workers): every frame still gets its result, at more throughput (`cvgl bench --only
   pipeline` measures it).
4. Records every `/cvgl/*` topic and `/diagnostics` (`Recorder`) into `out` (MCAP rosbag2,
   written atomically, with the datum and the input bag's path and fingerprint in its
   metadata, `cvgl_ros.datasets.bag_identity`), waits until no result has come for 1 s,
   stops the nodes with SIGINT.

Returns a `ReplaySummary`: real-time factor (bag seconds per wall second of playing),
frames processed/skipped (with reasons), poses, lockstep time-outs and per-stage latencies
(decode, patch, inference from the frame statuses; filter from the filter's /diagnostics).
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cvgl_ros.datasets.bag import (MSG_CAMERA_INFO, MSG_COMPRESSED, MSG_IMAGE, MSG_NAVSATFIX, TOPIC_CAMERA_INFO,
                                   TOPIC_GNSS_FIX, TOPIC_IMAGE, TOPIC_IMAGE_COMPRESSED, BagWriter, bag_topics,
                                   read_messages, recorded_datum)
from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum

CAMERA_TOPICS = (TOPIC_IMAGE, TOPIC_IMAGE_COMPRESSED)
# Input topic -> the type the nodes subscribe with: a bag with another type there is refused
# up front (the nodes would never match it and the replay would wait for them in vain).
INPUT_TYPES = {TOPIC_IMAGE: MSG_IMAGE, TOPIC_IMAGE_COMPRESSED: MSG_COMPRESSED, TOPIC_CAMERA_INFO: MSG_CAMERA_INFO,
               TOPIC_GNSS_FIX: MSG_NAVSATFIX}
OWN_NODES = ("/cross_view_node", "/particle_filter_node")
# Input topic -> how many node subscriptions must be matched before playing.
EXPECTED_SUBSCRIBERS = {TOPIC_IMAGE: 1, TOPIC_IMAGE_COMPRESSED: 1, TOPIC_CAMERA_INFO: 1, TOPIC_GNSS_FIX: 2}
# Node -> its inputs that must also be matched from the node's side (its /diagnostics say so):
# a best-effort subscriber drops what comes from a publisher it has not matched yet, even when
# that publisher already counts it.
NODE_INPUTS = {"cross_view_node": (TOPIC_IMAGE, TOPIC_IMAGE_COMPRESSED, TOPIC_CAMERA_INFO, TOPIC_GNSS_FIX),
               "particle_filter_node": (TOPIC_GNSS_FIX,)}
FRAME_STATUS = "/cvgl/cross_view/frame_status"
POSE = "/cvgl/pose"
GNSS_POSE = "/cvgl/gnss/pose"  # the filter node's echo of each valid fix it took in
RESEND_AFTER_S = 10.0          # lockstep: a camera frame with no status by then is published again (once)
FILTER_POSE_WAIT_S = 2.0       # lockstep: the cross-view node waits this long for the previous frame's fused pose
REPEATED_STATUS = "skipped: camera stamp repeated"  # the cross-view node's answer to a frame it has seen
PERIODIC_TOPICS = ("/diagnostics", "/cvgl/path")  # on timers: they never fall quiet, so no sign of a result
QUIET_S = 1.0                  # after playing: the run is over once no result came for this long
DISCOVERY_WINDOW_S = 1.0       # the graph is trusted to show every node on the domain after this long
_ENV_LOCK = threading.Lock()   # replays started from several threads set the discovery range one at a time


@dataclass
class ReplaySummary:
    out_bag: str
    lockstep: bool
    rate: float
    frames_in_flight: int = 1
    bag_duration_s: float = 0.0
    wall_s: float = 0.0
    real_time_factor: float = 0.0
    frames: int = 0
    frames_processed: int = 0
    frames_coarse_only: int = 0     # of those, searched by the coarse stage alone (waiting for the yaw)
    frames_skipped: int = 0
    skip_reasons: dict = field(default_factory=dict)
    poses: int = 0
    poses_at_frames: int = 0
    lockstep_timeouts: int = 0
    lockstep_timeout_details: list = field(default_factory=list)  # what was awaited, at which bag time
    frames_resent: int = 0          # lockstep: frames published again after no status came
    stage_latency_ms: dict = field(default_factory=dict)
    # lockstep: where the wall time goes, mean/p95 ms: frame published -> its status came,
    # status -> its fused pose came, GNSS fix published -> the filter's echo came
    lockstep_wait_ms: dict = field(default_factory=dict)
    recorded: dict = field(default_factory=dict)
    node_exit_codes: dict = field(default_factory=dict)
    domain_id: int = -1             # the ROS domain the run had to itself
    isolation: str = ""             # how that domain was chosen, and the discovery range
    node_pids: dict = field(default_factory=dict)
    topics_not_played: dict = field(default_factory=dict)  # topic -> type this install cannot import

    def to_dict(self) -> dict:
        return asdict(self)


class _Tracker:
    """What the recorder saw, by stamp, for lockstep waits and the summary."""

    def __init__(self):
        self.cond = threading.Condition()
        self.status: dict[int, tuple[int, str]] = {}
        self.status_arrival: dict[int, float] = {}  # stamp -> monotonic time of its first frame status
        self.pose_stamps: dict[int, float] = {}     # stamp -> monotonic time its latest /cvgl/pose came
        self.pose_counts: Counter = Counter()       # stamp -> /cvgl/pose messages at it
        self.answers_due: dict[int, int] = {}       # frame stamp -> poses the filter answers it with
        self.gnss_stamps: dict[int, float] = {}     # stamp -> ... its GNSS echo came
        self.timings: dict[str, list[float]] = {}
        self.node_diag: dict[str, dict[str, str]] = {}  # node name -> its latest /diagnostics values
        self.node_diag_t: dict[str, float] = {}          # node name -> when that came
        self.last_message_t = time.monotonic()
        self.last_result_t = time.monotonic()            # the latest message not on a timer

    def __call__(self, topic: str, cdr: bytes) -> None:
        from rclpy.serialization import deserialize_message

        from cvgl_ros.localization.frame_localizer import FILTER_INPUTS_KEY
        from cvgl_ros.stamps import header_stamp_ns

        with self.cond:
            self.last_message_t = time.monotonic()
            if topic not in PERIODIC_TOPICS:
                self.last_result_t = self.last_message_t
            if topic == POSE:
                self.pose_stamps[header_stamp_ns(cdr)] = self.last_message_t  # the latest: after the frame's update
                self.pose_counts[header_stamp_ns(cdr)] += 1
            elif topic == GNSS_POSE:
                self.gnss_stamps.setdefault(header_stamp_ns(cdr), self.last_message_t)
            elif topic in (FRAME_STATUS, "/diagnostics"):
                from diagnostic_msgs.msg import DiagnosticArray

                msg = deserialize_message(cdr, DiagnosticArray)
                if topic == FRAME_STATUS and msg.status:
                    s = msg.status[0]
                    level = s.level[0] if isinstance(s.level, (bytes, bytearray)) else int(s.level)
                    if header_stamp_ns(cdr) in self.status and s.message == REPEATED_STATUS:
                        return  # a resent frame that had come through after all: its first answer stands
                    self.status[header_stamp_ns(cdr)] = (level, s.message)
                    self.status_arrival.setdefault(header_stamp_ns(cdr), self.last_message_t)
                    for kv in s.values:
                        if kv.key == FILTER_INPUTS_KEY:
                            self.answers_due[header_stamp_ns(cdr)] = int(kv.value)
                        else:
                            self.timings.setdefault(kv.key, []).append(float(kv.value))
                else:
                    for s in msg.status:
                        if s.name.startswith("cvgl_ros: "):
                            self.node_diag[s.name.removeprefix("cvgl_ros: ")] = {kv.key: kv.value for kv in s.values}
                            self.node_diag_t[s.name.removeprefix("cvgl_ros: ")] = self.last_message_t
            self.cond.notify_all()

    def wait(self, predicate, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout=timeout_s)

    def answered(self, stamp_ns: int) -> bool:
        """The filter's poses at a processed frame's stamp have all come (one when the status says
        nothing)."""
        return self.pose_counts[stamp_ns] >= self.answers_due.get(stamp_ns, 1)


def _inputs_matched_by_nodes(tracker: _Tracker, bag_topics_present) -> bool:
    with tracker.cond:
        for node, inputs in NODE_INPUTS.items():
            values = tracker.node_diag.get(node, {})
            if any(int(values.get(f"publishers_{t}", 0)) < 1 for t in inputs if t in bag_topics_present):
                return False
    return True


def check_inputs(bag: Path, topics: dict) -> None:
    """A camera topic, and every input topic of the type the nodes subscribe with (InputError)."""
    if not any(t in topics for t in CAMERA_TOPICS):
        raise InputError(f"bag {bag} has no camera topic ({' or '.join(CAMERA_TOPICS)})")
    for topic, expected in INPUT_TYPES.items():
        if topic in topics and topics[topic][0] != expected:
            raise InputError(f"{topic} in {bag} is {topics[topic][0]}, but the nodes subscribe to it as {expected}")


def _refuse_foreign(node, enclave: str, domain_id: int) -> None:
    from cvgl_ros.replay.domain import foreign_nodes

    foreign = foreign_nodes(node, enclave)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise InputError(f"foreign ROS nodes on domain {domain_id}: {', '.join(foreign[:3])}{more}; a replay "
                         "plays only on a domain of its own (stop them, or pick another --domain-id)")


def _wait_ready(player, recorder, tracker, nodes, bag_topics_present, timeout_s: float,
                node=None, enclave: str | None = None, domain_id: int = -1) -> None:
    from cvgl_ros.replay.domain import own_nodes

    started = time.monotonic()
    deadline = started + timeout_s
    want = {t: n for t, n in EXPECTED_SUBSCRIBERS.items() if t in bag_topics_present}
    while True:
        dead = nodes.exited()
        if dead:
            exe, code = next(iter(dead.items()))
            raise InputError(f"{exe} exited with status {code} before the replay started: "
                             f"{nodes.log_tail(exe, 3).strip().splitlines()[-1:] or ''}")
        own_up = True
        if node is not None:  # this run's nodes in the graph, and nobody else's
            _refuse_foreign(node, enclave, domain_id)
            own_up = (set(own_nodes(node, enclave)) >= set(OWN_NODES)
                      and time.monotonic() - started >= DISCOVERY_WINDOW_S)
        counts = player.subscription_counts()
        inputs_ok = all(counts.get(t, 0) >= n for t, n in want.items())
        clock_ok = player.clock_pub.get_subscription_count() >= 2
        outputs_ok = all(recorder.subscriptions[t].get_publisher_count() >= 1
                         for t in (POSE, GNSS_POSE, "/cvgl/likelihood", FRAME_STATUS))
        matched_by_nodes = _inputs_matched_by_nodes(tracker, bag_topics_present)
        if own_up and inputs_ok and clock_ok and outputs_ok and matched_by_nodes:
            return
        if time.monotonic() > deadline:
            raise InputError(f"the nodes did not come up within {timeout_s:.0f} s "
                             f"(subscribers {counts}, clock {player.clock_pub.get_subscription_count()}, "
                             f"inputs matched on the nodes' side: {matched_by_nodes}, both nodes seen: {own_up})")
        time.sleep(0.1)


def replay_bag(bag: str | Path, out: str | Path, tiles: str | Path | None = None, model: str | Path | None = None,
               rate: float = 1.0, lockstep: bool = False, params_file: str | Path | None = None,
               overrides: dict | None = None, log_dir: str | Path | None = None, frame_timeout_s: float = 60.0,
               pose_timeout_s: float = 5.0, ready_timeout_s: float = 120.0, progress: bool = True,
               frames_in_flight: int = 1, domain_id: int | None = None) -> ReplaySummary:
    """Play `bag` through the nodes, record their outputs into `out` (see the module docstring).

    `domain_id`: the ROS domain to run on (its lock must be free); None picks a free one.
    With `progress`, the domain and the nodes' pids are printed on stderr once they are up.

    `frames_in_flight` > 1 (lockstep only): up to that many camera frames are sent before the
    player waits for the oldest one's result, and the cross-view node runs as many inference
    workers with one ONNX Runtime thread each (unless `overrides` says otherwise): more
    throughput (README, `cvgl replay`), at the price of exact reproducibility (a frame's
    prior is then the filter's pose of up to that many frames back, whichever came).
    """
    from cvgl_ros.datasets.bag_identity import SOURCE_BAG_KEY, SOURCE_FINGERPRINT_KEY, bag_fingerprint
    from cvgl_ros.nodes.launcher import default_params_file

    plan = plan_replay(bag, out, tiles, model, rate, lockstep, overrides, frames_in_flight)   # 0.
    summary = ReplaySummary(out_bag=str(plan.out), lockstep=lockstep, rate=rate, frames_in_flight=frames_in_flight)
    tracker = _Tracker()
    log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="cvgl-replay-logs-"))
    source_fingerprint = bag_fingerprint(plan.bag)
    session = _Session(plan, domain_id, params_file or default_params_file(), log_dir, summary)   # 1.
    steps = _Lockstep(tracker, summary, frames_in_flight, frame_timeout_s, pose_timeout_s) if lockstep else None
    try:
        session.start_nodes(summary)
        with BagWriter(plan.out) as writer:
            if plan.datum is not None:
                writer.set_datum(plan.datum)
            writer.set_custom_data(SOURCE_BAG_KEY, str(plan.bag.resolve()))
            writer.set_custom_data(SOURCE_FINGERPRINT_KEY, source_fingerprint)
            player, recorder = session.connect(writer, tracker, summary)
            session.discover(player, recorder, tracker, ready_timeout_s, progress, summary)   # 2.
            if steps is not None:
                steps.attach(player, session.nodes)
            played = _play(plan, player, steps, rate, summary, progress)   # 3.
            _settle(tracker)                                                # 4.
            summary.node_exit_codes = session.nodes.stop()
            recorder.close()
        summary.recorded = dict(recorder.counts)
    finally:
        session.close(summary)
    _summarize(summary, tracker, played, steps.sent_at if steps is not None else {})
    return summary


# -- 0. the checks ----------------------------------------------------------------------

@dataclass(frozen=True)
class ReplayPlan:
    """What the checks decided before anything starts: the bag's topics to play (one camera
    transport), the camera topic, the nodes' parameters, the bag's recorded datum."""

    bag: Path
    out: Path
    topics: dict          # topic -> (type, count) of what is played
    camera_topic: str
    node_params: dict
    datum: Datum | None = None  # None: the nodes anchor at the first fix


def plan_replay(bag, out, tiles=None, model=None, rate: float = 1.0, lockstep: bool = False,
                overrides: dict | None = None, frames_in_flight: int = 1) -> ReplayPlan:
    """The replay's plan, or InputError (one line) for a bag, argument or file it cannot play."""
    bag, out = Path(bag), Path(out)
    topics = bag_topics(bag)
    check_inputs(bag, topics)
    if not lockstep and not rate > 0:
        raise InputError(f"rate {rate} must be > 0")
    if not (isinstance(frames_in_flight, int) and frames_in_flight >= 1):
        raise InputError(f"frames in flight {frames_in_flight!r} must be an integer >= 1")
    if frames_in_flight > 1 and not lockstep:
        raise InputError("frames in flight > 1 needs lockstep (at a fixed rate the camera sets the pace)")
    if out.resolve() == bag.resolve():
        raise InputError("the output bag must not be the input bag")
    node_params = {"use_sim_time": True}
    datum = recorded_datum(bag)  # an invalid one is refused; None: the nodes anchor at the first fix
    if datum is not None:
        node_params["datum"] = [datum.lat_deg, datum.lon_deg, datum.alt_m]
    for name, path in (("tiles", tiles), ("model", model)):
        if path is not None:
            if not Path(path).exists():
                raise InputError(f"no such {name}: {path}")
            node_params[name] = str(Path(path).resolve())
    if frames_in_flight > 1:
        node_params.update(inference_workers=frames_in_flight, intra_op_threads=1)
    # one image transport: raw when the bag has it, else compressed; the other camera topic is not played
    transport = str((overrides or {}).get("image_transport") or ("raw" if TOPIC_IMAGE in topics else "compressed"))
    camera_topic = TOPIC_IMAGE if transport == "raw" else TOPIC_IMAGE_COMPRESSED
    if camera_topic not in topics:
        raise InputError(f"image_transport {transport}: bag {bag} has no {camera_topic}")
    node_params["image_transport"] = transport
    if lockstep:  # the fused pose of one frame is the prior of the next: not a race with the next frame
        node_params["lockstep_filter_pose_wait_s"] = FILTER_POSE_WAIT_S
    node_params.update(overrides or {})
    played = {t: v for t, v in topics.items() if t not in CAMERA_TOPICS or t == camera_topic}
    return ReplayPlan(bag, out, played, camera_topic, node_params, datum)


# -- 1. and 2. the nodes on a private domain, and their discovery ------------------------

class _Session:
    """This run's private domain (module docstring 1.), its enclave, the two node processes,
    and the replay's own rclpy context, node, player, recorder and spinning thread; `close()`
    undoes all of it, whatever happened (the nodes stopped, the domain's lease released last)."""

    def __init__(self, plan: ReplayPlan, domain_id: int | None, params_file, log_dir: Path, summary: ReplaySummary):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from cvgl_ros.nodes.launcher import NodeProcesses
        from cvgl_ros.replay.domain import DISCOVERY_RANGE, lease_domain, new_enclave

        self.plan = plan
        self.lease = lease_domain(domain_id)
        self.enclave = new_enclave()
        summary.domain_id, summary.isolation = self.lease.domain_id, self.lease.isolation
        child_env = dict(os.environ, ROS_DOMAIN_ID=str(self.lease.domain_id),
                         ROS_AUTOMATIC_DISCOVERY_RANGE=DISCOVERY_RANGE)
        _ENV_LOCK.acquire()
        saved_range = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = DISCOVERY_RANGE  # rcl reads it at init, for this context too
        try:
            self.nodes = NodeProcesses(params_file, plan.node_params, log_dir=log_dir, env=child_env,
                                       extra_ros_args=["--enclave", self.enclave], pass_fds=(self.lease.fd,))
            self.context = rclpy.Context()
            rclpy.init(context=self.context, args=["--ros-args", "--enclave", self.enclave],
                       domain_id=self.lease.domain_id, signal_handler_options=SignalHandlerOptions.NO)
            self.restore_sigterm = _sigterm_as_interrupt()
        except BaseException:
            self.lease.release()
            raise
        finally:
            if saved_range is None:
                os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
            else:
                os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved_range
            _ENV_LOCK.release()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.spinner = self.recorder = self.node = None
        self.stop_spin = threading.Event()

    def start_nodes(self, summary: ReplaySummary) -> None:
        import rclpy

        self.nodes.start()
        summary.node_pids = self.nodes.pids()
        self.node = rclpy.create_node("cvgl_replay", context=self.context)

    def connect(self, writer, tracker: _Tracker, summary: ReplaySummary):
        """(BagPlayer of the plan's topics, Recorder into `writer` telling `tracker`), spinning."""
        from cvgl_ros.nodes.runner import RESULT_QOS
        from cvgl_ros.replay.player import BagPlayer
        from cvgl_ros.replay.recorder import Recorder

        player = BagPlayer(self.node, self.plan.bag)
        for other in CAMERA_TOPICS:
            if other != self.plan.camera_topic:
                player.publishers.pop(other, None)
        summary.topics_not_played = dict(player.unplayable)
        self.recorder = Recorder(self.node, writer, lambda: player.now_ns, RESULT_QOS)
        writer.before_close.append(self.recorder.close)  # a late message never hits a closed bag
        self.recorder.listeners.append(tracker)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=_spin, args=(self.executor, self.stop_spin), name="cvgl_replay_spin",
                                        daemon=True)
        self.spinner.start()
        return player, self.recorder

    def discover(self, player, recorder, tracker: _Tracker, timeout_s: float, progress: bool,
                 summary: ReplaySummary) -> None:
        """Module docstring 2.: until both sides have matched, this run's nodes alone on the domain."""
        _wait_ready(player, recorder, tracker, self.nodes, self.plan.topics, timeout_s, node=self.node,
                    enclave=self.enclave, domain_id=self.lease.domain_id)
        if progress:
            import sys

            pids = ", ".join(f"{exe} pid {pid}" for exe, pid in summary.node_pids.items())
            print(f"replay: {self.lease.isolation}; {pids}", file=sys.stderr, flush=True)
        recorder.discover()

    def close(self, summary: ReplaySummary) -> None:
        import rclpy

        if self.nodes.procs and not summary.node_exit_codes:
            summary.node_exit_codes = self.nodes.stop()
        if self.recorder is not None:
            self.recorder.close()
        self.stop_spin.set()
        if self.spinner is not None:
            self.spinner.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=5.0)
        if self.node is not None:
            self.node.destroy_node()  # its participant leaves the domain before the lease is released
        rclpy.try_shutdown(context=self.context)
        self.restore_sigterm()
        self.lease.release()


# -- 3. play, in lockstep or at a rate --------------------------------------------------

@dataclass(frozen=True)
class SentFrame:
    """A camera frame published in lockstep: its status (and, processed, its fused pose) awaited."""

    t_ns: int
    topic: str
    cdr: bytes
    stamp_ns: int


@dataclass(frozen=True)
class SentFix:
    """A valid GNSS fix published in lockstep: the filter's echo on GNSS_POSE awaited."""

    t_ns: int
    stamp_ns: int


@dataclass(frozen=True)
class AwaitedPose:
    """A processed frame whose fused pose is awaited later (several frames in flight)."""

    t_ns: int
    stamp_ns: int


@dataclass(frozen=True)
class Played:
    """Log times of the first and last message played (None: nothing was)."""

    first_ns: int | None = None
    last_ns: int | None = None


def _play(plan: ReplayPlan, player, steps: "_Lockstep | None", rate: float, summary: ReplaySummary,
          progress: bool) -> Played:
    """Every message of the plan's topics, in log order: in lockstep (`steps`) or at `rate`."""
    from tqdm import tqdm

    from cvgl_ros.stamps import header_stamp_ns

    first_ns = last_ns = None
    wall0 = time.monotonic()
    bar = tqdm(total=sum(count for _, count in plan.topics.values()), unit="msg", desc="replay",
               disable=not progress, mininterval=1.0)
    for topic, _msgtype, t_ns, cdr in read_messages(plan.bag, raw=True):
        bar.update(1)
        if topic not in player.publishers:
            continue
        if first_ns is None:
            first_ns, wall0 = t_ns, time.monotonic()
        last_ns = t_ns
        if steps is not None:
            steps.make_room(t_ns)
        else:
            start_ns = first_ns
            player.sleep_until(wall0 + (t_ns - start_ns) * 1e-9 / rate,
                               lambda now: start_ns + int((now - wall0) * rate * 1e9))
        player.publish(topic, t_ns, cdr)
        if topic in CAMERA_TOPICS:
            summary.frames += 1
            if steps is not None:
                steps.published(SentFrame(t_ns, topic, cdr, header_stamp_ns(cdr)))
        elif topic == TOPIC_GNSS_FIX and steps is not None and _valid_fix(cdr):
            steps.published(SentFix(t_ns, header_stamp_ns(cdr)))
    if steps is not None:
        steps.drain()
    bar.close()
    summary.wall_s = time.monotonic() - wall0
    return Played(first_ns, last_ns)


class _Lockstep:
    """Module docstring 3.: what was sent and whose result is still awaited, oldest first.

    One frame in flight: each frame's status and fused pose, and each fix's echo, before
    anything later is sent. N > 1: up to N frames out at once; a processed frame's pose is
    then awaited later (an `AwaitedPose`), so that no worker idles meanwhile. `sent_at` holds
    when each frame and fix went out, for the summary's `lockstep_wait_ms`."""

    def __init__(self, tracker: _Tracker, summary: ReplaySummary, frames_in_flight: int, frame_timeout_s: float,
                 pose_timeout_s: float):
        self.tracker, self.summary = tracker, summary
        self.frames_in_flight = frames_in_flight
        self.frame_timeout_s, self.pose_timeout_s = frame_timeout_s, pose_timeout_s
        self.outstanding: deque[SentFrame | SentFix | AwaitedPose] = deque()
        self.sent_at: dict[tuple[str, int], float] = {}  # ("frame" | "gnss", stamp) -> monotonic time published
        self.player = self.nodes = None

    def attach(self, player, nodes) -> None:
        self.player, self.nodes = player, nodes

    def make_room(self, t_ns: int) -> None:
        """Before sending a message at t_ns: a frame's result is awaited once its stamp's
        messages (camera_info) are out too, and only while N frames are out."""
        while self._frames_out() >= self.frames_in_flight and t_ns > self._newest_frame_ns():
            self._await_oldest()

    def published(self, event: SentFrame | SentFix) -> None:
        kind = "frame" if isinstance(event, SentFrame) else "gnss"
        self.sent_at.setdefault((kind, event.stamp_ns), time.monotonic())
        self.outstanding.append(event)
        if isinstance(event, SentFix) and self.frames_in_flight == 1:
            self._await_oldest()  # one at a time: the fix is in the filter before anything later

    def drain(self) -> None:
        while self.outstanding:
            self._await_oldest()

    def _frames_out(self) -> int:
        return sum(isinstance(event, SentFrame) for event in self.outstanding)

    def _newest_frame_ns(self) -> int:
        return max(event.t_ns for event in self.outstanding if isinstance(event, SentFrame))

    def _await_oldest(self) -> None:
        event = self.outstanding.popleft()
        tracker = self.tracker
        if isinstance(event, SentFrame):
            one_at_a_time = self.frames_in_flight == 1
            if self._wait_frame(event, wait_pose=one_at_a_time) and not one_at_a_time:
                self.outstanding.append(AwaitedPose(event.t_ns, event.stamp_ns))
        elif isinstance(event, AwaitedPose):
            if not tracker.wait(lambda: tracker.answered(event.stamp_ns), self.pose_timeout_s):
                _count_timeout(self.summary, "fused pose on " + POSE, event.stamp_ns)
        elif not tracker.wait(lambda: event.stamp_ns in tracker.gnss_stamps, self.pose_timeout_s):
            _count_timeout(self.summary, "GNSS echo on " + GNSS_POSE, event.stamp_ns)

    def _wait_frame(self, frame: SentFrame, wait_pose: bool) -> bool:
        """This frame's status, and its pose when it was processed (and `wait_pose`); True:
        processed. The camera is subscribed with sensor-data QoS (best effort), so a frame
        can be lost on the way; one that has no status after `RESEND_AFTER_S` is published
        again, once."""
        tracker, summary, nodes, stamp = self.tracker, self.summary, self.nodes, frame.stamp_ns
        arrived = tracker.wait(lambda: stamp in tracker.status, min(RESEND_AFTER_S, self.frame_timeout_s))
        if not arrived and not nodes.exited():
            summary.frames_resent += 1
            self.player.publish(frame.topic, frame.t_ns, frame.cdr)
            arrived = tracker.wait(lambda: stamp in tracker.status, max(self.frame_timeout_s - RESEND_AFTER_S, 0.0))
        if not arrived:
            _count_timeout(summary, "frame status", stamp)
            if nodes.exited():
                exe, code = next(iter(nodes.exited().items()))
                raise InputError(f"{exe} died during the replay (status {code}): {nodes.log_tail(exe, 3)}")
            return False
        processed = tracker.status[stamp][0] == 0
        if processed and wait_pose and not tracker.wait(lambda: tracker.answered(stamp), self.pose_timeout_s):
            _count_timeout(summary, "fused pose on " + POSE, stamp)
        return processed


# -- 4. record: the last results, and the summary ----------------------------------------

def _settle(tracker: _Tracker, longest_s: float = 10.0) -> None:
    """Let the last results arrive: none for QUIET_S (the timers' topics do not count), and
    each node's /diagnostics once more, for latencies over the whole run (at most `longest_s`)."""
    played_t = time.monotonic()
    end = played_t + longest_s

    def settled():
        with tracker.cond:
            quiet = time.monotonic() - tracker.last_result_t >= QUIET_S
            return quiet and all(tracker.node_diag_t.get(n, 0.0) > played_t for n in NODE_INPUTS)
    while time.monotonic() < end and not settled():
        time.sleep(0.1)


def _summarize(summary: ReplaySummary, tracker: _Tracker, played: Played, sent_at: dict) -> None:
    """The summary's counts, reasons and latencies from what the recorder saw."""
    from cvgl_ros.localization.frame_localizer import COARSE_ONLY

    if played.first_ns is not None:
        summary.bag_duration_s = (played.last_ns - played.first_ns) * 1e-9
        summary.real_time_factor = summary.bag_duration_s / max(summary.wall_s, 1e-9)
    levels = Counter()
    for level, message in tracker.status.values():
        if level == 0:
            summary.frames_processed += 1
            summary.frames_coarse_only += message.startswith(COARSE_ONLY)
        else:
            levels[message.split(" (")[0][:80]] += 1
    summary.frames_skipped = sum(levels.values())
    summary.skip_reasons = dict(levels.most_common(10))
    summary.poses = summary.recorded.get(POSE, 0)
    processed = {t for t, (lvl, _) in tracker.status.items() if lvl == 0}
    summary.poses_at_frames = len(processed & tracker.pose_stamps.keys())
    for key, values in tracker.timings.items():
        arr = np.asarray(values)
        summary.stage_latency_ms[key.removesuffix("_ms")] = {"mean": float(arr.mean()), "p95": float(np.percentile(arr, 95))}
    if summary.lockstep and played.first_ns is not None:
        summary.lockstep_wait_ms = _lockstep_waits(tracker, sent_at)
    for stat, key in (("mean", "latency_filter_ms"), ("p95", "latency_filter_p95_ms")):
        filter_diag = tracker.node_diag.get("particle_filter_node", {})
        if key in filter_diag:
            summary.stage_latency_ms.setdefault("filter", {})[stat] = float(filter_diag[key])


def _lockstep_waits(tracker: _Tracker, sent: dict) -> dict:
    def stats(deltas_s):
        if not deltas_s:
            return {"mean": 0.0, "p95": 0.0, "n": 0}
        arr = np.asarray(deltas_s) * 1e3
        return {"mean": float(arr.mean()), "p95": float(np.percentile(arr, 95)), "n": int(arr.size)}

    frames = {stamp: t for (kind, stamp), t in sent.items() if kind == "frame"}
    gnss = {stamp: t for (kind, stamp), t in sent.items() if kind == "gnss"}
    return {
        "frame_to_status": stats([tracker.status_arrival[s] - t for s, t in frames.items() if s in tracker.status_arrival]),
        "status_to_pose": stats([tracker.pose_stamps[s] - tracker.status_arrival[s] for s in frames
                                 if s in tracker.pose_stamps and s in tracker.status_arrival]),
        "gnss_to_echo": stats([tracker.gnss_stamps[s] - t for s, t in gnss.items() if s in tracker.gnss_stamps]),
    }


def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt (so the nodes are stopped, not orphaned); returns a restorer."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _spin(executor, stop: threading.Event) -> None:
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)


def _valid_fix(cdr: bytes) -> bool:
    """True when a NavSatFix (CDR) is one the filter node takes in, and so echoes
    (`conversions.check_navsatfix`: a fix status and a finite position in WGS84 range)."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import NavSatFix

    from cvgl_ros.nodes.conversions import check_navsatfix

    try:
        check_navsatfix(deserialize_message(cdr, NavSatFix))
    except InputError:
        return False
    return True


def _count_timeout(summary: ReplaySummary, awaited: str, stamp_ns: int) -> None:
    summary.lockstep_timeouts += 1
    summary.lockstep_timeout_details.append(f"{awaited} for the message stamped {stamp_ns * 1e-9:.3f} s")
