"""The decision filter's scan (console routes._scan): full pages, and no entry skipped between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.console import routes


@dataclass
class _Entry:
    index: int
    entry: dict[str, Any]


class _Log:
    """An audit store's search over a list: ascending indexes, the cursor is the next page's first index."""

    def __init__(self, allowed: list[bool]) -> None:
        self.entries = [_Entry(i, {"decision": {"allowed": a}}) for i, a in enumerate(allowed)]

    def search(
        self, filters: dict[str, Any], limit: int, cursor: str | None
    ) -> tuple[list[_Entry], str | None]:
        start = int(cursor or 0)
        page = self.entries[start : start + limit + 1]
        return page[:limit], (str(page[limit].index) if len(page) > limit else None)


class _Runtime:
    def __init__(self, log: _Log) -> None:
        self.audit = log


def test_pages_of_one_decision_are_full_and_skip_nothing() -> None:
    # Mostly refused, an allowed entry every third: a page of allowed entries spans several store pages.
    log = _Log([i % 3 == 0 for i in range(3 * routes.PAGE * 2 + 7)])
    rt: Any = _Runtime(log)
    seen: list[int] = []
    start = 0
    for _ in range(10):
        found, cursor, partial = routes._scan(rt, {}, start, "toegestaan", None)
        assert len(found) <= routes.PAGE and not partial
        assert all(e.entry["decision"]["allowed"] for e in found)
        seen += [e.index for e in found]
        if cursor is None:
            break
        assert len(found) == routes.PAGE
        start = int(cursor)
    assert seen == [i for i in range(len(log.entries)) if i % 3 == 0]
