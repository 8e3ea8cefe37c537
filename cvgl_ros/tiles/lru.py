"""A thread-safe LRU of decoded tiles, bounded by memory (bytes of the decoded arrays)."""
from __future__ import annotations

import threading
from collections import OrderedDict

from cvgl_ros.errors import InputError


class TileLRU:
    """Least-recently-used map from a tile key to a decoded tile, capped at `cap_mb` MiB.

    Each entry is charged its array bytes (`entry.nbytes`) plus a fixed overhead; inserting
    evicts the oldest entries until the total fits. An entry larger than the whole cap is
    not kept. `peak_bytes` records the highest total ever held (never above the cap).
    """

    ENTRY_OVERHEAD_BYTES = 256

    def __init__(self, cap_mb: float):
        if not cap_mb >= 0:
            raise InputError(f"tile cache size must be >= 0 MB, got {cap_mb}")
        self.cap_bytes = int(cap_mb * 1024 * 1024)
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.bytes_used = 0
        self.peak_bytes = 0
        self.hits = 0
        self.misses = 0

    def _size(self, entry) -> int:
        return int(getattr(entry, "nbytes", 0)) + self.ENTRY_OVERHEAD_BYTES

    def get(self, key):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key, entry) -> None:
        size = self._size(entry)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes_used -= self._size(old)
            if size > self.cap_bytes:
                return
            while self._entries and self.bytes_used + size > self.cap_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes_used -= self._size(evicted)
            self._entries[key] = entry
            self.bytes_used += size
            self.peak_bytes = max(self.peak_bytes, self.bytes_used)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes_used = 0

    def __len__(self) -> int:
        return len(self._entries)
