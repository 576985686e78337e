"""W3C Trace Context: take the incoming ``traceparent`` or start a new trace."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    """The trace this request belongs to, the caller's span, and our own span."""

    trace_id: str
    parent_span_id: str | None
    span_id: str
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        """The header to send on to agency systems: same trace, our span as parent."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """A new span in the same trace, under this one."""
        return TraceContext(self.trace_id, self.span_id, secrets.token_hex(8), self.flags)


def from_header(value: str | None) -> TraceContext:
    """Parse ``traceparent``; an absent or malformed header starts a new trace (per the W3C spec)."""
    if value:
        m = _TRACEPARENT.match(value.strip().lower())
        if m and m.group(1) != "0" * 32 and m.group(2) != "0" * 16:
            return TraceContext(m.group(1), m.group(2), secrets.token_hex(8), m.group(3))
    return TraceContext(secrets.token_hex(16), None, secrets.token_hex(8))
