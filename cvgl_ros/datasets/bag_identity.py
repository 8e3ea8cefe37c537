"""Which recording a replay's output came from: a fingerprint of the input bag.

`cvgl replay` stores the input bag's fingerprint in the output bag's metadata
(`SOURCE_FINGERPRINT_KEY`, next to its path under `SOURCE_BAG_KEY`), and `cvgl evaluate-track`
compares it with the truth bag's, so an estimate replayed from another drive is refused even
when its datum and clock happen to match (simulated drives of one world share both).

fingerprint = sha256 over every connection's (topic, type, message count) and the topic,
log time and raw CDR bytes of the first `FINGERPRINT_MESSAGES` messages, in log order;
16 hex digits. It reads a few messages, not the whole bag, and changes whenever the
recording does in any of those.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from cvgl_ros.datasets.bag import bag_custom_data, bag_topics, read_messages

SOURCE_BAG_KEY = "cvgl.source_bag"
SOURCE_FINGERPRINT_KEY = "cvgl.source_fingerprint"
FINGERPRINT_MESSAGES = 64


def bag_fingerprint(path: str | Path) -> str:
    """The recording's fingerprint (see the module docstring)."""
    digest = hashlib.sha256()
    for topic, (msgtype, count) in sorted(bag_topics(path).items()):
        digest.update(f"{topic}\0{msgtype}\0{count}\n".encode())
    for i, (topic, _msgtype, t_ns, cdr) in enumerate(read_messages(path, raw=True)):
        if i >= FINGERPRINT_MESSAGES:
            break
        digest.update(f"{topic}\0{t_ns}\0".encode())
        digest.update(bytes(cdr))
    return digest.hexdigest()[:16]


def source_of(path: str | Path) -> tuple[str | None, str | None]:
    """(source bag path, its fingerprint) recorded in a replay's output bag; (None, None) if absent."""
    custom = bag_custom_data(path)
    return custom.get(SOURCE_BAG_KEY), custom.get(SOURCE_FINGERPRINT_KEY)
