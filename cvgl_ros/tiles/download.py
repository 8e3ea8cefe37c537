"""Download tiles from an XYZ tile server into a writable tile store, validating every tile.

URL templates hold `{z}`, `{x}`, `{y}` and optionally `{s}`, a subdomain chosen per tile as
`subdomains[(x + y) % len(subdomains)]` (the rule Leaflet uses, so a tile always comes from
the same host and HTTP caches stay warm). Any other `{...}` is refused up front.

One tile (`fetch_tile`) is a GET with a timeout, retried with exponential back-off and
jitter (`backoff_s * 2**(attempt-1) * U(0.5, 1.5)`) on connection errors, retryable HTTP
statuses and bodies that fail validation; 404/204 mean "the source has no such tile". A body
is accepted only when it
- arrived whole: exactly Content-Length bytes when the server sent one (http.client returns
  a short body without complaint when a connection closes early), at most `max_tile_bytes`;
- passes `validate.validate_tile`: the cache's format, the cache's tile size (256 or
  512 px), a whole container (IEND / EOI / RIFF size) and a clean decode.
A tile still bad after the retries is counted as failed, with its reason, never stored.

A circuit breaker stops the whole run after `max_connection_failures` attempts in a row
that got no HTTP response at all (refused, reset, timed out, unknown host): against a dead
server every worker would otherwise sleep through the full back-off for every tile. Any
HTTP response (an error status included) closes the count. Attempts run `workers` at a time,
so against a dead server it trips after about `max_connection_failures / workers` rounds of
back-off (default 16 / 8: the second round, about a second in), whatever the tile count.

`fetch_into` runs the downloads in a bounded thread pool; only the calling thread writes to
the store, committing every `batch` tiles (or every second), so a process killed at any
moment leaves a store holding exactly the tiles of the committed batches.
"""
from __future__ import annotations

import http.client
import random
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from cvgl_ros.errors import InputError
from cvgl_ros.tiles.codec import CorruptTileError
from cvgl_ros.tiles.store import MAX_TILE_BYTES, TileStore
from cvgl_ros.tiles.validate import TILE_SIZES_PX, probe_tile, validate_tile

USER_AGENT = "cvgl-tiles-prefetch/1"
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
DEFAULT_SUBDOMAINS = "abc"
DEFAULT_MAX_CONNECTION_FAILURES = 16
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_KNOWN_PLACEHOLDERS = ("z", "x", "y", "s")
_SUBDOMAIN = re.compile(r"^[A-Za-z0-9-]+$")


def parse_subdomains(text: str) -> list[str]:
    """'abc' -> ['a', 'b', 'c']; 'a,b,c' or 't0,t1' -> split at commas (each a DNS label)."""
    parts = [p.strip() for p in str(text).split(",")] if "," in str(text) else list(str(text))
    if not parts or not all(_SUBDOMAIN.match(p) for p in parts):
        raise InputError(f"subdomains {text!r} must be letters/digits, e.g. abc or t0,t1,t2")
    return parts


def check_url_template(template: str, subdomains: str = DEFAULT_SUBDOMAINS) -> str:
    """Refuse a template that is not http(s), lacks {z}/{x}/{y} or holds an unknown placeholder."""
    if not re.match(r"^https?://[^/]+", template):
        raise InputError(f"tile URL {template!r} must start with http:// or https:// and a host")
    names = _PLACEHOLDER.findall(template)
    unknown = sorted({n for n in names if n not in _KNOWN_PLACEHOLDERS})
    if unknown:
        raise InputError(f"tile URL {template!r} has the unknown placeholder {{{unknown[0]}}} "
                         "(known: {z} {x} {y} {s}); write its value into the URL")
    if "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
        raise InputError(f"tile URL {template!r} has an unmatched brace")
    for part in ("z", "x", "y"):
        if part not in names:
            raise InputError(f"tile URL {template!r} lacks {{{part}}} (expected e.g. http://host/{{z}}/{{x}}/{{y}}.png)")
    if "s" in names:
        parse_subdomains(subdomains)
    return template


def tile_url(template: str, z: int, x: int, y: int, subdomains: list[str] | None = None) -> str:
    """The template with the tile's indices (and its subdomain for {s}) filled in."""
    subs = subdomains or list(DEFAULT_SUBDOMAINS)
    values = {"z": str(z), "x": str(x), "y": str(y), "s": subs[(x + y) % len(subs)]}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


class CircuitBreaker:
    """Counts consecutive attempts without any HTTP response; trips at `threshold`."""

    def __init__(self, threshold: int):
        if threshold < 1:
            raise InputError(f"max connection failures {threshold} must be >= 1")
        self.threshold = threshold
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._tripped = threading.Event()
        self.reason = ""

    @property
    def tripped(self) -> bool:
        return self._tripped.is_set()

    def record_response(self) -> None:
        with self._lock:
            self._in_a_row = 0

    def record_failure(self, reason: str) -> None:
        with self._lock:
            self._in_a_row += 1
            if self._in_a_row >= self.threshold and not self._tripped.is_set():
                self.reason = f"{self._in_a_row} connection failures in a row (last: {reason})"
                self._tripped.set()

    def stop(self, reason: str) -> None:
        """Trip at once (the run is being interrupted): sleeping workers wake and give up."""
        with self._lock:
            if not self._tripped.is_set():
                self.reason = reason
                self._tripped.set()

    def sleep(self, seconds: float) -> bool:
        """Back off for `seconds`; True (at once) when the breaker trips meanwhile."""
        return self._tripped.wait(seconds)


@dataclass(frozen=True)
class FetchResult:
    status: str  # "ok" | "absent" | "failed" | "stopped"
    data: bytes | None
    retries: int
    reason: str = ""


def _read_body(resp, max_bytes: int) -> bytes:
    chunks, size = [], 0
    while size <= max_bytes:
        chunk = resp.read(min(1 << 16, max_bytes + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def fetch_tile(url: str, *, tile_size: int, image_format: str, timeout_s: float = 10.0, retries: int = 4,
               backoff_s: float = 0.5, max_tile_bytes: int = MAX_TILE_BYTES,
               breaker: CircuitBreaker | None = None) -> FetchResult:
    """GET one tile and validate it (see the module docstring); never raises for network faults."""
    breaker = breaker or CircuitBreaker(10**9)
    reason = ""
    for attempt in range(retries + 1):
        if breaker.tripped or (attempt and breaker.sleep(backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))):
            return FetchResult("stopped", None, max(attempt - 1, 0), breaker.reason)
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            resp = urllib.request.urlopen(req, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            breaker.record_response()
            exc.close()
            if exc.code == 404:
                return FetchResult("absent", None, attempt, "404")
            reason = f"HTTP {exc.code}"
            if exc.code not in RETRY_STATUS:
                return FetchResult("failed", None, attempt, reason)
            continue
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = f"{exc.__class__.__name__}: {getattr(exc, 'reason', exc)}"
            breaker.record_failure(reason)
            continue
        breaker.record_response()
        try:
            with resp:
                if resp.status == 204:
                    return FetchResult("absent", None, attempt, "204")
                declared = resp.headers.get("Content-Length")
                declared = int(declared) if declared is not None and declared.strip().isdigit() else None
                if declared is not None and declared > max_tile_bytes:
                    reason = f"Content-Length {declared} over the {max_tile_bytes}-byte tile cap"
                    continue
                data = _read_body(resp, max_tile_bytes)
        except (http.client.HTTPException, OSError) as exc:
            reason = f"body cut off ({exc.__class__.__name__}: {exc})"
            continue
        if len(data) > max_tile_bytes:
            reason = f"body over the {max_tile_bytes}-byte tile cap"
            continue
        if declared is not None and len(data) != declared:
            reason = f"body of {len(data)} bytes, Content-Length {declared}"
            continue
        try:
            validate_tile(data, tile_size, image_format)
        except CorruptTileError as exc:
            reason = str(exc)
            try:
                sent = probe_tile(data).image_format
            except CorruptTileError:
                sent = image_format
            if sent != image_format:  # a consistent answer: retrying will not change it
                return FetchResult("failed", None, attempt, f"server sent {sent}, the cache holds {image_format} "
                                   f"(a new cache can hold {sent}: --format {sent})")
            continue
        return FetchResult("ok", data, attempt)
    return FetchResult("failed", None, retries, reason)


@dataclass
class FetchStats:
    """What one `fetch_into` run did; `failures` holds (z, x, y, reason) of every failed tile."""

    downloaded: int = 0
    absent_at_source: int = 0
    failed: int = 0
    not_attempted: int = 0
    retries: int = 0
    stopped: str = ""  # why the circuit breaker stopped the run; "" when it did not
    failures: list[tuple[int, int, int, str]] = field(default_factory=list)


def fetch_into(store: TileStore, url_template: str, zoom: int, keys: list[tuple[int, int]], *,
               tile_size: int, subdomains: str = DEFAULT_SUBDOMAINS, workers: int = 8, retries: int = 4,
               timeout_s: float = 10.0, backoff_s: float = 0.5, batch: int = 64,
               max_tile_bytes: int = MAX_TILE_BYTES, max_connection_failures: int = DEFAULT_MAX_CONNECTION_FAILURES,
               progress: bool = True, stats: FetchStats | None = None) -> FetchStats:
    """Fetch `keys` ((x, y) at `zoom`) from the server into `store`, valid tiles only."""
    from tqdm import tqdm

    check_url_template(url_template, subdomains)
    if tile_size not in TILE_SIZES_PX:
        raise InputError(f"tile size {tile_size} px is not one of {', '.join(map(str, TILE_SIZES_PX))}")
    if workers < 1 or retries < 0 or batch < 1 or not timeout_s > 0 or backoff_s < 0:
        raise InputError("workers and batch must be >= 1, retries and back-off >= 0, the timeout > 0")
    subs = parse_subdomains(subdomains)
    fmt = store.image_format
    breaker = CircuitBreaker(max_connection_failures)
    stats = stats or FetchStats()
    bar = tqdm(total=len(keys), desc="fetch", unit="tile", disable=not progress)
    pending = {}
    queue = iter(keys)
    uncommitted = 0
    last_commit = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tile-fetch") as pool:
        def submit_more():
            while len(pending) < 4 * workers and not breaker.tripped:
                key = next(queue, None)
                if key is None:
                    return
                url = tile_url(url_template, zoom, key[0], key[1], subs)
                pending[pool.submit(fetch_tile, url, tile_size=tile_size, image_format=fmt, timeout_s=timeout_s,
                                    retries=retries, backoff_s=backoff_s, max_tile_bytes=max_tile_bytes,
                                    breaker=breaker)] = key

        try:
            submit_more()
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    x, y = pending.pop(fut)
                    result = fut.result()
                    stats.retries += result.retries
                    if result.status == "ok":
                        store.put_tile(zoom, x, y, result.data)
                        stats.downloaded += 1
                        uncommitted += 1
                    elif result.status == "absent":
                        stats.absent_at_source += 1
                    elif result.status == "stopped":
                        stats.not_attempted += 1
                    else:
                        stats.failed += 1
                        stats.failures.append((zoom, x, y, result.reason))
                    bar.update(1)
                if uncommitted >= batch or (uncommitted and time.monotonic() - last_commit > 1.0):
                    store.commit()
                    uncommitted, last_commit = 0, time.monotonic()
                submit_more()
        except BaseException:  # Ctrl-C or a store error: wake the workers instead of waiting out back-offs
            breaker.stop("interrupted")
            for fut in pending:
                fut.cancel()
            raise
    bar.close()
    store.commit()
    if breaker.tripped:
        stats.stopped = breaker.reason
        stats.not_attempted += sum(1 for _ in queue)
    return stats
