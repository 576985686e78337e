"""A bounded, thread-safe cache of policy decisions, one per engine (so one per policy revision).

A decision is a function of the policy revision and the input, nothing else: the policy reads no clock,
no network and no state. So the engine may answer an input it decided before from memory. The key is
the revision and the canonical JSON text (keys sorted, no whitespace) of the input's projection onto
the paths the revision reads (`gateway.policy._readpaths`), and that projection is what the engine
evaluates: two inputs share an entry only when what the policy can see of them is the same JSON value,
and the entry is the decision of exactly that value. When the read paths cannot be derived, the key is
the whole input (``stats()["keysOn"]`` says which, ``fallback`` why). Only decisions
the policy made are kept: an engine failure (timeout, crash, malformed answer) is never cached, so the
next request asks the engine again. What is kept is the policy's output text, and every hit builds a
new `Decision` from it, so no caller can change what another one gets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from gateway.policy._readpaths import ReadPaths

DEFAULT_SIZE = 4096
"""Entries kept per engine; the least recently used goes first."""

MAX_KEY_CHARS = 16_384
"""Inputs longer than this are decided every time (they are rare, and would crowd out the rest)."""


class DecisionCache:
    """LRU of ``(revision, input term) -> policy output text``; ``hits`` and ``misses`` count lookups.

    ``read_paths`` is what the terms are projected on (`ReadPaths`; the whole input when not given): the
    cache does not project, it reports what its keys hold.
    """

    def __init__(self, revision: str, size: int = DEFAULT_SIZE, read_paths: ReadPaths | None = None) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.revision = revision
        self.size = size
        self.read_paths = read_paths if read_paths is not None else ReadPaths(None, "no read paths given")
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
        """``{size, entries, hits, misses, hitRate, keysOn, readPaths, fallback}``: ``keysOn`` is ``"read
        paths"`` or ``"whole input"``, ``readPaths`` how many paths the key holds, ``fallback`` why the
        whole input (None when the paths were derived)."""
        with self._lock:
            lookups = self.hits + self.misses
            return {
                "size": self.size,
                "entries": len(self._entries),
                "hits": self.hits,
                "misses": self.misses,
                "hitRate": round(self.hits / lookups, 4) if lookups else None,
                "keysOn": self.read_paths.keys_on,
                "readPaths": len(self.read_paths.paths or ()),
                "fallback": self.read_paths.fallback,
            }

    def clear(self) -> None:
        """Forget every entry and the counts."""
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


def cache_counts(engine: object) -> tuple[int, int] | None:
    """``(hits, misses)`` of ``engine``'s decision cache, or None when it has none (OPA, or cache off)."""
    cache = getattr(engine, "cache", None)
    return (cache.hits, cache.misses) if isinstance(cache, DecisionCache) else None
