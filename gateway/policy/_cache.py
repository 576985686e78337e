"""A bounded, thread-safe cache of policy decisions, one per engine (so one per policy revision).

A decision is a function of the policy revision and the input, nothing else: the policy reads no clock,
no network and no state. So the engine may answer an input it decided before from memory. The key is
the revision and the input's canonical JSON text (keys sorted, no whitespace: the same text the engine
hands to regopy), so two inputs share an entry only when they are the same JSON value. Only decisions
the policy made are kept: an engine failure (timeout, crash, malformed answer) is never cached, so the
next request asks the engine again. What is kept is the policy's output text, and every hit builds a
new `Decision` from it, so no caller can change what another one gets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

DEFAULT_SIZE = 4096
"""Entries kept per engine; the least recently used goes first."""

MAX_KEY_CHARS = 16_384
"""Inputs longer than this are decided every time (they are rare, and would crowd out the rest)."""


class DecisionCache:
    """LRU of ``(revision, input term) -> policy output text``; ``hits`` and ``misses`` count lookups."""

    def __init__(self, revision: str, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.revision = revision
        self.size = size
        self._entries: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, term: str) -> str | None:
        """The output text decided for ``term`` under this revision, or None (a miss)."""
        key = (self.revision, term)
        with self._lock:
            text = self._entries.get(key)
            if text is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return text

    def put(self, term: str, text: str) -> None:
        """Keep ``text`` (a well-formed decision's output) for ``term``; the oldest goes past the bound."""
        if len(term) > MAX_KEY_CHARS:
            return
        key = (self.revision, term)
        with self._lock:
            self._entries[key] = text
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> dict[str, Any]:
        """``{size, entries, hits, misses, hitRate}``."""
        with self._lock:
            lookups = self.hits + self.misses
            return {
                "size": self.size,
                "entries": len(self._entries),
                "hits": self.hits,
                "misses": self.misses,
                "hitRate": round(self.hits / lookups, 4) if lookups else None,
            }

    def clear(self) -> None:
        """Forget every entry and the counts."""
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0
