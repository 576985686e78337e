"""Entries as a person reads them: names instead of identifiers, reasons in Dutch, proofs checked.

Entries keep each reason as its code and English sentence. The Dutch sentence is rendered from the same
template of data.json: the English sentence is matched against the templates of its code to recover the
arguments, which then fill the Dutch template (`Reasons.render`). Identifiers among the arguments
(agencies, information types, purposes) are shown by their names.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from audit import (
    InvalidNote,
    InvalidProof,
    LogCorrupted,
    LogEntry,
    ReportRow,
    leaf_hash,
    report_row,
    verify_checkpoint,
    verify_inclusion,
)
from gateway.console.messages import translate
from gateway.policy._render import Template, TemplateError, Templates
from gateway.runtime import Runtime


class Names:
    """Identifiers of the loaded policy's facts by their names in one language."""

    def __init__(self, facts: Mapping[str, Any], lang: str) -> None:
        self.lang = lang
        self._names: dict[str, dict[str, str]] = {}
        key = "nameNl" if lang == "nl" else "name"
        for kind in ("agencies", "informationTypes", "purposes"):
            table = facts.get(kind, {})
            names = {}
            if isinstance(table, Mapping):
                for ident, spec in table.items():
                    if isinstance(spec, Mapping):
                        names[str(ident)] = str(spec.get(key) or spec.get("name") or ident)
            self._names[kind] = names
        self._any = {k: v for table in self._names.values() for k, v in table.items()}

    def agency(self, ident: str | None) -> str:
        """An agency's name (the identifier when it is unknown; a dash for none)."""
        return "—" if ident is None else self._names["agencies"].get(ident, ident)

    def information_type(self, ident: str | None) -> str:
        """An information type's name."""
        return "—" if ident is None else self._names["informationTypes"].get(ident, ident)

    def purpose(self, ident: str | None) -> str:
        """A purpose's name."""
        return "—" if ident is None else self._names["purposes"].get(ident, ident)

    def options(self, kind: str) -> list[tuple[str, str]]:
        """``(identifier, name)`` of every agency, information type or purpose, by name."""
        return sorted(self._names[kind].items(), key=lambda kv: kv[1].lower())

    def any(self, text: str) -> str:
        """``text`` by its name when it is an identifier of the facts, else as it is."""
        return self._any.get(text, text)

    def any_list(self, text: str) -> str:
        """``any`` for one identifier or a comma-separated list of them (as the policy joins lists)."""
        items = text.split(", ")
        if all(i in self._any for i in items):
            return ", ".join(self._any[i] for i in items)
        return text


class Reasons:
    """Renders a logged reason (code and English sentence) in the console's language."""

    def __init__(self, facts: Mapping[str, Any]) -> None:
        try:
            templates = Templates.from_facts(facts)
        except TemplateError:
            templates = Templates({})
        self._by_code: dict[str, list[tuple[re.Pattern[str], Template]]] = {}
        for name in templates.names():
            template = templates[name]
            pattern = "(.+?)".join(re.escape(part) for part in template.en)
            self._by_code.setdefault(template.code, []).append((re.compile(f"^{pattern}$", re.S), template))

    def render(self, reason: Mapping[str, Any], names: Names) -> str:
        """The reason as a sentence in ``names.lang``; the logged English one when no template fits."""
        code, message = str(reason.get("code", "")), str(reason.get("message", ""))
        if names.lang == "nl" and isinstance(reason.get("messageNl"), str):
            return str(reason["messageNl"])
        for pattern, template in self._by_code.get(code, []):
            m = pattern.match(message)
            if m is None:
                continue
            parts = template.nl if names.lang == "nl" else template.en
            out = [parts[0]]
            for i, (arg, part) in enumerate(zip(m.groups(), parts[1:], strict=True)):
                # A step is flow/step: its halves are identifiers of the process, not names to look up.
                in_step = parts[i].endswith("/") or part.startswith("/")
                out += [arg if in_step else names.any_list(arg), part]
            return "".join(out)
        return message


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


@dataclass(frozen=True)
class Row:
    """One entry as a line of the results table or the case timeline."""

    index: int
    time: str
    what: str
    who: str
    purpose: str
    allowed: bool | None
    reasons: list[str]
    case_id: str | None
    step: str | None
    raw: ReportRow
    entry: dict[str, Any] = field(repr=False)


def show_time(value: str | None, lang: str) -> str:
    """An entry's UTC time in the Netherlands' local time, to the second."""
    if not value:
        return "—"
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    local = t.astimezone(_amsterdam())
    return local.strftime("%d-%m-%Y %H:%M:%S" if lang == "nl" else "%Y-%m-%d %H:%M:%S")


def _amsterdam() -> dt.tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Europe/Amsterdam")
    except Exception:  # no tz database on this machine: UTC, said as such by the offset-free text
        return dt.UTC


class Presenter:
    """Turns entries into rows and pages in one language, with the active policy's names."""

    def __init__(self, rt: Runtime, lang: str) -> None:
        facts = rt.policy.current.facts()
        self.rt = rt
        self.lang = lang
        self.facts = facts
        self.names = Names(facts, lang)
        self.reasons = Reasons(facts)

    def t(self, key: str, **args: object) -> str:
        """A sentence of the catalogue."""
        return translate(self.lang, key, **args)

    def action(self, action: str | None) -> str:
        """What an entry's action means."""
        text = translate(self.lang, f"action.{action}")
        return text if text != f"action.{action}" else self.t("action.other", action=action or "?")

    def row(self, item: LogEntry) -> Row:
        """One entry as a row."""
        r = report_row(item)
        entry = item.entry
        n = self.names
        if r.from_agency or r.to_agency:
            who = self.t("fromto", actor=n.agency(r.from_agency), to=n.agency(r.to_agency))
        else:
            who = self.t("by", actor=n.agency(r.actor))
        what = self.action(r.action)
        if r.information_type:
            what = f"{what}: {n.information_type(r.information_type)}"
        decision = entry.get("decision")
        reasons = []
        if isinstance(decision, Mapping) and isinstance(decision.get("reasons"), list):
            reasons = [self.reasons.render(x, n) for x in decision["reasons"] if isinstance(x, Mapping)]
        step = entry.get("step") if isinstance(entry.get("step"), str) else None
        return Row(
            index=item.index,
            time=show_time(r.time, self.lang),
            what=what,
            who=who,
            purpose=n.purpose(r.purpose) if r.purpose else "—",
            allowed=r.allowed,
            reasons=reasons,
            case_id=r.case_id,
            step=step,
            raw=r,
            entry=entry,
        )

    def basis_verified(self, r: ReportRow) -> bool | None:
        """Whether data.json marks the grant (or the agency's own basis) behind an entry as verified."""
        if r.legal_basis is None:
            return None
        grants = self.facts.get("grants", {})
        if r.information_type and r.from_agency and r.to_agency and isinstance(grants, Mapping):
            row = grants.get(r.information_type, {}).get(r.to_agency, {}).get(r.from_agency)
            if isinstance(row, Mapping) and isinstance(row.get("verified"), bool):
                return bool(row["verified"])
        agency = self.facts.get("agencies", {}).get(r.actor or "", {})
        if isinstance(agency, Mapping) and isinstance(agency.get("verified"), bool):
            return bool(agency["verified"])
        return None


@dataclass(frozen=True)
class ProofCheck:
    """An entry's inclusion proof checked against the latest signed checkpoint."""

    verified: bool
    size: int | None
    time: dt.datetime | None
    problem: str | None  # a message key: why it did not verify, or that no checkpoint covers it yet


def check_inclusion(rt: Runtime, item: LogEntry) -> ProofCheck:
    """Prove ``item`` in the latest checkpoint (signing a new one when none covers it yet).

    Uses audit's own proof and checkpoint verification, on the log's verifier key.
    """
    latest = rt.audit.latest_checkpoint()
    try:
        if latest is None or latest.size <= item.index:
            rt.audit.checkpoint()
            latest = rt.audit.latest_checkpoint()
    except LogCorrupted:
        return ProofCheck(False, latest.size if latest else None, None, "entry.proof.why.mismatch")
    if latest is None or latest.size <= item.index:
        return ProofCheck(False, None, None, "entry.proof.none")
    try:
        cp = verify_checkpoint(latest.note, rt.signer.verifier)
    except InvalidNote:
        return ProofCheck(False, latest.size, latest.created_at, "entry.proof.why.signature")
    try:
        hashes = rt.audit.inclusion_proof(item.index, cp.size)
        verify_inclusion(leaf_hash(item.leaf_data), item.index, cp.size, hashes, cp.root)
    except (InvalidProof, LogCorrupted, ValueError):
        return ProofCheck(False, cp.size, latest.created_at, "entry.proof.why.mismatch")
    return ProofCheck(True, cp.size, latest.created_at, None)


def cosignatures(note: str, log_origin: str) -> list[str]:
    """The names of the keys that cosigned a checkpoint note besides the log itself (witnesses)."""
    _, _, signatures = note.partition("\n\n")
    names = []
    for line in signatures.splitlines():
        if line.startswith("— "):
            name = line[2:].split(" ", 1)[0]
            if name != log_origin:
                names.append(name)
    return names


__all__ = [
    "Names",
    "Presenter",
    "ProofCheck",
    "Reasons",
    "Row",
    "check_inclusion",
    "cosignatures",
    "show_time",
]
