"""The process as the loaded policy data describes it: flows, steps, information types, purposes.

The identifiers live in the policy's ``data.json`` (policy authors may extend them); the gateway reads
them from there to validate requests, so there is one list, not two that drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ProcessFacts:
    """Read-only view on the identifier lists of one policy revision."""

    def __init__(self, facts: Mapping[str, Any]) -> None:
        self._facts = facts

    def flows(self) -> list[str]:
        """Flow identifiers."""
        return list(self._flows().keys())

    def steps(self, flow: str) -> list[str]:
        """The steps of ``flow``, in process order."""
        return list(self._flows().get(flow, []))

    def information_types(self) -> set[str]:
        """Known information types."""
        return set(self._names("informationTypes"))

    def purposes(self) -> set[str]:
        """Known purposes."""
        return set(self._names("purposes"))

    def agencies(self) -> set[str]:
        """Known agencies."""
        return set(self._names("agencies"))

    def _names(self, key: str) -> list[str]:
        value = self._facts.get(key, [])
        if isinstance(value, Mapping):
            return [str(k) for k in value]
        return [str(v["id"]) if isinstance(v, Mapping) else str(v) for v in value]

    def _flows(self) -> dict[str, list[str]]:
        flows = self._facts.get("flows", {})
        out: dict[str, list[str]] = {}
        if isinstance(flows, Mapping):
            for name, spec in flows.items():
                steps = spec.get("order", spec.get("steps", [])) if isinstance(spec, Mapping) else spec
                out[str(name)] = [str(s["id"]) if isinstance(s, Mapping) else str(s) for s in steps]
        return out
