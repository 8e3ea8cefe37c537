"""Atomic file output and the one `--out` rule: nothing half-written, nothing of the user's lost.

Atomic writes
-------------
Every file or directory that cvgl writes goes to a temporary name first and is renamed into
place only when complete (rename is atomic on one filesystem). A SIGTERM while a write is
under way raises `SystemExit(143)` in the main thread (`terminate_raises`), so the clean-up
in `finally` runs and no hidden temporary file or directory is left behind.

The output rule (`claim_output`, checked by the CLI before any work starts)
---------------------------------------------------------------------------
1. An output that equals or contains an input (real paths, symlinks resolved) is refused,
   always, even with `--force`.
2. A command that writes a directory refuses an existing file at `--out`; one that writes a
   file refuses an existing directory (always: neither can become the other without loss).
3. A missing path or an empty directory is written.
4. cvgl's own earlier output is replaced on a rerun. It is recognized by a marker:
   - directories hold `.cvgl-output.json` ({"tool", "command", "written_utc", "files"}),
     or (outputs from before the marker) only entries with the command's own names;
   - single files have a sidecar `.NAME.cvgl-output.json` beside them that records the
     file's size and modification time: a file changed since cvgl wrote it is no longer
     cvgl's; formats that identify themselves (a model `.onnx` whose card holds its
     sha256) are recognized by their content instead.
5. Anything else (a non-empty directory without the marker, a file cvgl did not write) is
   refused with one line unless `force=True` (`--force`), which replaces exactly:
   - for a file output, the file at `--out`;
   - for a directory output, the entries inside it that bear the names this command
     writes; every other entry of the directory is left as it is.
   Nothing that is not at one of the command's output names is ever deleted, with or
   without `--force`.

A directory is committed by one rename when it is new; into an existing directory each
entry is renamed into place (the old entry of that name, cvgl's or forced, goes last), and
the marker is written last. Library callers that write without a claim get the same rule
without `--force`.
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from cvgl_ros.errors import InputError

MARKER = ".cvgl-output.json"
TOOL = "cvgl_ros"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_DEFAULT_FILE_MODE = 0o666 & ~_umask()
_DEFAULT_DIR_MODE = 0o777 & ~_umask()


def _check_parent_writable(path: Path) -> None:
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"cannot write {path}: {parent} is a file, not a directory")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output directory {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise InputError(f"output directory {parent} is not writable")


def _check_creatable(path: Path, shown: str) -> None:
    """InputError unless `path` exists or could be created: its nearest existing ancestor is a
    writable directory (nothing is created here)."""
    if path.exists():
        return
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write {shown}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {shown}: {ancestor} is not writable")


# -- SIGTERM -> SystemExit, so that `finally` cleans up ------------------------------------

_term_lock = threading.Lock()
_term_depth = 0
_term_previous = None
_term_pid = None


def _raise_on_terminate(signum, _frame):
    """SIGTERM handler: SystemExit(128 + signum) in the process that installed it.

    A forked child (multiprocessing workers) inherits the handler but not the writes it
    guards: there it dies of the signal as it would have without the handler."""
    if os.getpid() != _term_pid:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    global _defer_pending
    if _defer_depth:
        _defer_pending = signum
        return
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def terminate_raises():
    """While active (main thread only), SIGTERM raises SystemExit instead of killing outright.

    Only a default SIGTERM disposition is replaced (a command's own handler is kept), and it
    is restored when the outermost block ends."""
    global _term_depth, _term_previous, _term_pid
    installed = False
    if threading.current_thread() is threading.main_thread():
        with _term_lock:
            if _term_depth == 0 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                _term_pid = os.getpid()
                _term_previous = signal.signal(signal.SIGTERM, _raise_on_terminate)
                installed = True
            if installed or _term_depth:
                _term_depth += 1
                installed = True
    try:
        yield
    finally:
        if installed:
            with _term_lock:
                _term_depth -= 1
                if _term_depth == 0 and signal.getsignal(signal.SIGTERM) is _raise_on_terminate:
                    signal.signal(signal.SIGTERM, _term_previous or signal.SIG_DFL)


_defer_depth = 0
_defer_pending: int | None = None


@contextlib.contextmanager
def _signals_deferred():
    """Hold a SIGTERM (through `terminate_raises`) until the few renames of a commit are done."""
    global _defer_depth, _defer_pending
    _defer_depth += 1
    try:
        yield
    finally:
        _defer_depth -= 1
        if _defer_depth == 0 and _defer_pending is not None:
            signum, _defer_pending = _defer_pending, None
            raise SystemExit(128 + signum)


# -- the output rule ----------------------------------------------------------------------

@dataclass
class OutputClaim:
    """One output of the running command, checked by `claim_output`.

    `path` is the real path (symlinks resolved); `names` are glob patterns of the entries a
    directory output writes (what `--force` replaces, and how a directory written before
    the marker existed is recognized)."""

    path: Path
    kind: str                      # "dir" or "file"
    command: str
    force: bool = False
    names: tuple[str, ...] = ()
    sidecar: bool = True
    recognize: Callable[[Path], bool] | None = None
    created_dir: bool = False
    created_root: Path | None = None  # the outermost directory the claim created (in_place)
    label: str = ""                # the path as the user wrote it, for messages
    committed: bool = False        # written once in this run (a second write replaces cvgl's own)


_claims: dict[Path, OutputClaim] = {}


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sidecar_path(path: str | os.PathLike) -> Path:
    """The marker of a single-file output: `.NAME.cvgl-output.json` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}{MARKER}")


def read_marker(directory: str | os.PathLike) -> dict | None:
    """The `.cvgl-output.json` of a directory cvgl wrote, or None."""
    try:
        data = json.loads((Path(directory) / MARKER).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == TOOL else None


def _own_file(path: Path, recognize) -> bool:
    """True when the file at `path` is cvgl's own, unchanged output (see the module docstring)."""
    if recognize is not None:
        try:
            if recognize(path):
                return True
        except (OSError, ValueError, InputError):
            pass
    try:
        mark = json.loads(sidecar_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return (isinstance(mark, dict) and mark.get("tool") == TOOL and mark.get("size") == st.st_size
            and mark.get("mtime_ns") == st.st_mtime_ns)


def _foreign_entries(directory: Path, names: Iterable[str], ignore: Iterable[str] = ()) -> list[str] | None:
    """Entries of `directory` cvgl did not write; None when it is cvgl's (marker) or empty.
    `ignore`: the running write's own temporary directory inside it."""
    entries = sorted(set(os.listdir(directory)) - set(ignore))
    if not entries or read_marker(directory) is not None:
        return None
    patterns = tuple(names)
    foreign = [e for e in entries if not (patterns and any(fnmatch.fnmatch(e, p) for p in patterns))]
    return foreign or None


def _what_force_replaces(names: Iterable[str]) -> str:
    names = tuple(names)
    return ("replaces only " + ", ".join(names) + " in it") if names else "writes into it, keeping its other files"


def _check(claim: OutputClaim, ignore: Iterable[str] = ()) -> None:
    """Raise InputError unless the rule lets `claim` write now (the checks 2-5 above)."""
    path = claim.path
    shown = claim.label or str(path)
    if not path.exists() and not path.is_symlink():
        return
    if claim.kind == "dir":
        if not path.is_dir():
            raise InputError(f"--out {shown} is a file; this command writes a directory: choose another --out "
                             "(refused even with --force)")
        foreign = _foreign_entries(path, claim.names, ignore)
        if foreign and not claim.force:
            listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise InputError(f"--out {shown} holds files cvgl did not write ({listed}): choose a new --out, or "
                             f"--force ({_what_force_replaces(claim.names)})")
        return
    if path.is_dir():
        raise InputError(f"--out {shown} is a directory; this command writes a file: name the file "
                         "(refused even with --force)")
    if not path.is_file():
        raise InputError(f"--out {shown} is not a regular file (refused even with --force)")
    if not claim.force and not _own_file(path, claim.recognize):
        raise InputError(f"--out {shown} exists and cvgl did not write it: choose a new --out, or --force to "
                         "replace that file")


def claim_output(path: str | os.PathLike, *, kind: str, command: str, force: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = (), names: Iterable[str] = (),
                 sidecar: bool = True, recognize: Callable[[Path], bool] | None = None,
                 in_place: bool = False) -> Path:
    """Apply the output rule to `path` before a command starts work; returns its real path.

    `kind`: "dir" or "file". `inputs`: every path the command reads (an output that equals
    or contains one is refused, always). `names`: glob patterns of what a directory output
    holds. `in_place`: the command writes files into the directory one by one (training
    runs, reports) instead of through `atomic_dir`: the directory and its marker are made
    now. Registers the claim so that `atomic_dir` / `atomic_path` commit by the rule and
    leave the marker; `release_claims` ends them.
    """
    if kind not in ("dir", "file"):
        raise ValueError(f"kind must be 'dir' or 'file', not {kind!r}")
    text = os.fspath(path)
    if not text.strip():
        raise InputError("--out is empty")
    real = _real(text)
    for item in inputs:
        if item is None:
            continue
        source = _real(item)
        if source == real or real in source.parents:
            what = "is" if source == real else "contains"
            raise InputError(f"--out {text} {what} the input {item}: choose an output outside the inputs "
                             "(refused even with --force)")
    claim = OutputClaim(path=real, kind=kind, command=command, force=bool(force), names=tuple(names),
                        sidecar=sidecar, recognize=recognize, label=text)
    _check(claim)
    _check_creatable(real, text)
    if in_place:
        if kind != "dir":
            raise ValueError("in_place is for directory outputs")
        claim.created_dir = not real.exists()
        top = real
        while not top.parent.exists():
            top = top.parent
        claim.created_root = top
        try:
            real.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output directory {real}: {exc.strerror}") from None
        if read_marker(real) is None:
            _write_marker(real, claim, files=None)
    _claims[real] = claim
    return real


def release_claims(failed: bool = False) -> None:
    """End the running command's claims; after a failure, remove a directory the claim made
    if it holds nothing but the marker."""
    for claim in list(_claims.values()):
        if failed and claim.created_dir:
            with contextlib.suppress(OSError):
                if os.listdir(claim.path) == [MARKER]:
                    (claim.path / MARKER).unlink()
                    directory = claim.path
                    while True:             # and the parents it made, while they are empty
                        directory.rmdir()
                        if directory == claim.created_root or directory.parent == directory:
                            break
                        directory = directory.parent
    _claims.clear()


def _claim_for(path: Path, kind: str) -> OutputClaim | None:
    claim = _claims.get(_real(path))
    return claim if claim is not None and claim.kind == kind else None


def _write_marker(directory: Path, claim: OutputClaim | None, files: list[str] | None) -> None:
    body = {"tool": TOOL, "command": claim.command if claim else None, "written_utc": _utc_now(),
            "files": files}
    write_text(directory / MARKER, json.dumps(body, indent=2) + "\n")


def _write_sidecar(path: Path, claim: OutputClaim) -> None:
    st = path.stat()
    body = {"tool": TOOL, "command": claim.command, "written_utc": _utc_now(), "file": path.name,
            "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(body, indent=2) + "\n")
    os.chmod(tmp, _DEFAULT_FILE_MODE)
    os.replace(tmp, sidecar_path(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary file path beside `path`; rename it to `path` on success.

    On an exception (SIGTERM included) the temporary file is removed and `path` is left
    untouched. When the CLI claimed `path`, the sidecar marker is written after the rename.
    """
    path = Path(path)
    _check_parent_writable(path)
    with terminate_raises():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
        os.fchmod(fd, _DEFAULT_FILE_MODE)  # mkstemp makes 0600; outputs get the usual umask mode
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            claim = _claim_for(path, "file")
            if claim is not None and not claim.committed:
                _check(claim)       # again: the path may have changed while the command worked
            with _signals_deferred():
                os.replace(tmp_path, path)
                if claim is not None:
                    claim.committed = True
                    if claim.sidecar:
                        _write_sidecar(path, claim)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise


def _move_into(src_dir: Path, dest: Path, trash: Path, drop: Iterable[str]) -> None:
    """Rename every entry of `src_dir` into the existing directory `dest`; an entry of the
    same name (and each name in `drop`) goes to `trash` first."""
    for name in list(drop):
        old = dest / name
        if (old.exists() or old.is_symlink()) and not (src_dir / name).exists():
            os.replace(old, trash / name)
    for entry in sorted(os.listdir(src_dir)):
        target = dest / entry
        if target.exists() or target.is_symlink():
            os.replace(target, trash / entry)
        os.replace(src_dir / entry, target)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory; on success its content becomes `path` by the output rule.

    A new `path` is one rename of the finished directory. An existing `path` that the rule
    allows (empty, cvgl's own, or forced) gets each entry renamed into place; the entries of
    the earlier output that the new one lacks are removed only when the marker lists them,
    and no other entry of the directory is touched. The marker is written last. On an
    exception (SIGTERM included) the temporary directory is removed and `path` is untouched.
    """
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        path = _real(path)
    claim = _claim_for(path, "dir") or OutputClaim(path=_real(path), kind="dir", command="", sidecar=False)
    _check(claim)
    existing = path.is_dir()
    if not existing:
        _check_parent_writable(path)
    elif not os.access(path, os.W_OK):
        raise InputError(f"output directory {path} is not writable")
    with terminate_raises():
        where = path if existing else path.parent
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=where))
        tmp.chmod(_DEFAULT_DIR_MODE)  # mkdtemp makes 0700
        try:
            yield tmp
            if not claim.committed:
                _check(claim, ignore=[tmp.name])  # again: the path may have changed meanwhile
            files = sorted(e for e in os.listdir(tmp) if e != MARKER)
            with _signals_deferred():
                if not path.exists():
                    os.replace(tmp, path)
                else:
                    earlier = (read_marker(path) or {}).get("files") or []
                    content = tmp / ".cvgl-new"
                    trash = tmp / ".cvgl-old"
                    os.mkdir(content)
                    for entry in files:
                        os.replace(tmp / entry, content / entry)
                    os.mkdir(trash)
                    _move_into(content, path, trash, drop=[e for e in earlier if e not in files and "/" not in e])
                _write_marker(path, claim if claim.command else None, files)
                claim.committed = True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False) + "\n")
