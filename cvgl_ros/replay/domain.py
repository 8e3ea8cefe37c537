"""A private ROS 2 domain for each replay, and the check that nobody else is on it.

Every ROS 2 process on a machine shares domain 0 unless `ROS_DOMAIN_ID` differs, and two
replays on one domain feed each other's nodes (errors of 200 m were seen). So a replay:

1. **Leases a domain** (`lease_domain`): the first id of `CANDIDATE_DOMAINS` whose lock
   file `<tmp>/cvgl_ros-domains/domain-<id>.lock` it can `fcntl.flock` exclusively without
   waiting. The lock is held for the run and inherited by the node processes, so the id
   stays taken while any process of the run lives; the kernel drops it when the last one
   exits, however it exits (`kill -9` included): no stale lock files to clean up. The
   directory is shared by every user of the machine (sticky and world-writable, like /tmp;
   a lock file made by another user is locked through a read-only descriptor).
   An explicit id (`--domain-id`) takes that id's lock too, and is refused when another
   replay holds it. (ROS 2's own `domain_coordinator` reserves test domains for a scope the
   same way, with a held port instead of a lock file.)
2. **Discovers on localhost only** (`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`), so a replay
   never talks to another machine that happens to use the same id.
3. **Marks its own nodes** with an enclave name unique to the run (`--ros-args --enclave`;
   without ROS security enabled it is only a label that the graph carries with each node),
   and refuses to play while a node of another enclave is on the domain (`foreign_nodes`):
   a live system, a test, or the nodes of a stale run.

`CANDIDATE_DOMAINS` starts with 215-232, the ids above the Linux ephemeral port range that
ROS 2's domain-id guide names as safe, which nothing here uses by default (0 is the ROS
default, the test suite takes 1-200), then falls back to 101 down to 1.
"""
from __future__ import annotations

import errno
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cvgl_ros.errors import InputError

CANDIDATE_DOMAINS = tuple(range(215, 233)) + tuple(range(101, 0, -1))
MAX_DOMAIN_ID = 232
LOCK_DIR_NAME = "cvgl_ros-domains"
DISCOVERY_RANGE = "LOCALHOST"


def lock_dir() -> Path:
    """The machine-wide directory of the domain lock files (created sticky and world-writable)."""
    path = Path(tempfile.gettempdir()) / LOCK_DIR_NAME
    try:
        path.mkdir(mode=0o1777)
        os.chmod(path, 0o1777)  # mkdir's mode is masked by the umask
    except FileExistsError:
        pass
    return path


@dataclass
class DomainLease:
    """A ROS domain id held for one replay; `fd` is the locked file (inherit it to children)."""

    domain_id: int
    chosen: str          # "free" (picked here) or "explicit"
    lock_path: Path
    fd: int | None

    @property
    def isolation(self) -> str:
        """One line for the output: which domain, how it was chosen, how discovery is limited."""
        how = "a free id, held by a lock file" if self.chosen == "free" else "given with --domain-id"
        return (f"ROS domain {self.domain_id} ({how}: {self.lock_path}), "
                f"discovery {DISCOVERY_RANGE.lower()} only")

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # the lock goes when the children's copies are closed too
            self.fd = None


def _try_lock(domain_id: int) -> DomainLease | None:
    import fcntl

    path = lock_dir() / f"domain-{domain_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: a read-only descriptor locks it too
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return DomainLease(domain_id, "free", path, fd)


def lease_domain(domain_id: int | None = None) -> DomainLease:
    """Hold a domain for this replay: `domain_id`, or the first free one of CANDIDATE_DOMAINS."""
    if domain_id is not None:
        if not (isinstance(domain_id, int) and 0 <= domain_id <= MAX_DOMAIN_ID):
            raise InputError(f"domain id {domain_id!r} must be an integer in [0, {MAX_DOMAIN_ID}]")
        lease = _try_lock(domain_id)
        if lease is None:
            raise InputError(f"ROS domain {domain_id} is in use by another cvgl replay "
                             f"({lock_dir() / f'domain-{domain_id}.lock'} is locked); leave out --domain-id")
        lease.chosen = "explicit"
        return lease
    for candidate in CANDIDATE_DOMAINS:
        lease = _try_lock(candidate)
        if lease is not None:
            return lease
    raise InputError(f"every ROS domain a replay may use is taken by another replay ({len(CANDIDATE_DOMAINS)} "
                     f"lock files in {lock_dir()}); wait for one to finish")


def new_enclave() -> str:
    """An enclave name that marks the nodes of one replay run (a valid ROS name)."""
    return f"/cvgl_replay_{os.getpid()}_{secrets.token_hex(4)}"


def graph_nodes(node) -> list[tuple[str, str]]:
    """(full node name, enclave) of every node the rclpy `node` sees on its domain, itself included."""
    return [((ns.rstrip("/") + "/" + name), enclave)
            for name, ns, enclave in node.get_node_names_and_namespaces_with_enclaves()]


def foreign_nodes(node, enclave: str) -> list[str]:
    """Nodes on the domain that are not of this run (another enclave), as 'name (enclave E)'."""
    return sorted(f"{name} (enclave {other})" for name, other in graph_nodes(node) if other != enclave)


def own_nodes(node, enclave: str) -> list[str]:
    """Names of the nodes of this run that the graph shows."""
    return sorted(name for name, other in graph_nodes(node) if other == enclave)
