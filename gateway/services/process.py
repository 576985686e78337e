"""The process as the loaded policy data describes it: flows, steps, information types, purposes.

The identifiers live in the policy's ``data.json`` (policy authors may extend them); the gateway reads
them from there to validate requests, so there is one list, not two that drift apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from functools import cached_property
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

    def field_names(self) -> frozenset[str]:
        """Every payload field name a grant row or an information type lists (``fields``).

        The gateway hands the policy only these of a payload's keys: a name no row lists reaches nobody
        (rule 5), and the set is bounded by the facts, whatever a request holds.
        """
        return self._field_names

    @cached_property
    def _field_names(self) -> frozenset[str]:
        names: set[str] = set()
        types = self._facts.get("informationTypes", {})
        if isinstance(types, Mapping):
            for spec in types.values():
                names.update(_strings(spec.get("fields") if isinstance(spec, Mapping) else None))
        for row in _rows(self._facts.get("grants", {})):
            names.update(_strings(row.get("fields")))
        return frozenset(names)

    def default_message_retention(self) -> dt.timedelta:
        """How long a delivered message waits for its recipient when its row names no term."""
        return dt.timedelta(days=_days(self._retention().get("defaultMessageDays"), DEFAULT_MESSAGE_DAYS))

    def message_retention(self, information_type: str, receiver: str, sender: str) -> dt.timedelta:
        """The term (``retentionDays``) of the row that lets ``sender`` give ``receiver`` the type."""
        grants = self._facts.get("grants", {})
        row: Any = grants.get(information_type, {}) if isinstance(grants, Mapping) else {}
        for key in (receiver, sender):
            row = row.get(key, {}) if isinstance(row, Mapping) else {}
        days = row.get("retentionDays") if isinstance(row, Mapping) else None
        return dt.timedelta(days=_days(days, 0)) if _is_days(days) else self.default_message_retention()

    def case_identities_term(self) -> dt.timedelta:
        """How long a case's sealed identities are kept after its last exchange."""
        return dt.timedelta(days=_days(self._retention().get("caseIdentitiesDays"), DEFAULT_IDENTITY_DAYS))

    def _retention(self) -> Mapping[str, Any]:
        value = self._facts.get("retention", {})
        return value if isinstance(value, Mapping) else {}

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


DEFAULT_MESSAGE_DAYS = 30
"""Days a message waits when the facts name no term at all (``retention.defaultMessageDays``)."""
DEFAULT_IDENTITY_DAYS = 180
"""Days a case's identities are kept after its last exchange when the facts name no term."""


def _is_days(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 36_500


def _days(value: Any, default: int) -> int:
    return value if _is_days(value) else default


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _rows(grants: Any) -> Iterator[Mapping[str, Any]]:
    """The rows of ``grants[type][receiver][sender]``, skipping whatever is not shaped so."""
    if not isinstance(grants, Mapping):
        return
    for receivers in grants.values():
        if not isinstance(receivers, Mapping):
            continue
        for senders in receivers.values():
            if not isinstance(senders, Mapping):
                continue
            for row in senders.values():
                if isinstance(row, Mapping):
                    yield row
