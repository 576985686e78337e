"""Re-check one logged decision (issue 11 item 2): ``gateway audit explain INDEX`` and
``GET /v1/audit/entries/{index}/explanation``.

An entry's decision block names the revision that decided (``policyRevision``) and the input it decided
on (``inputDigest``). The explanation loads both from the archive (`gateway.services.policy_archive`),
decides that input again on that revision with an embedded engine of its own (one per revision, kept),
and compares the result with the block: allowed, legal basis, fields (when the block has them) and the
reason codes. When the archived files no longer hash to the revision, that is a difference too: the
re-decision then ran on altered files.

The outcome is ``same``, ``differs`` or ``cannot`` (the entry has no decision, or its input or revision
is not archived; ``reason`` says which).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine, select

from audit import metadata
from gateway.errors import PolicyLoadFailed
from gateway.services.policy_archive import (
    EngineCache,
    RevisionNotArchived,
    load_input,
    load_revision,
    recipient_of,
)
from gateway.services.trail import decision_record, fields_digest

__all__ = ["CANNOT", "Explanation", "explain", "render_text"]

Status = Literal["same", "differs", "cannot"]

CANNOT = {
    "entry_not_found": ("no entry at that index", "er is geen entry met die index"),
    "no_decision": ("the entry records no decision", "deze entry legt geen beslissing vast"),
    "no_input": (
        "the entry's decision names no recorded input",
        "de beslissing van deze entry noemt geen vastgelegde invoer",
    ),
    "input_not_archived": (
        "the decision's input is not in the archive",
        "de invoer van de beslissing staat niet in het archief",
    ),
    "revision_not_archived": (
        "the decision's policy revision is not in the archive",
        "de beleidsrevisie van de beslissing staat niet in het archief",
    ),
    "revision_unreadable": (
        "the archived files of the decision's revision do not read or compile as a policy (altered?)",
        "de gearchiveerde bestanden van de revisie zijn geen leesbaar beleid meer (gewijzigd?)",
    ),
}
"""Why an entry cannot be explained: the code, in English (the API) and in Dutch (the CLI)."""

_engines = EngineCache(size=4)
"""Engines of archived revisions, shared by every explanation in this process."""


@dataclass
class Explanation:
    """What ``explain`` found for one entry."""

    index: int
    status: Status
    reason: str | None = None
    """With ``cannot``: a code of `CANNOT`."""
    entry: dict[str, Any] = field(default_factory=dict)
    """The entry's type, action, outcome, time and counterpart."""
    revision: str | None = None
    input_digest: str | None = None
    recipient: str | None = None
    revision_intact: bool | None = None
    """False when the archived files hash to another revision than the one that decided."""
    recorded: dict[str, Any] | None = None
    redecided: dict[str, Any] | None = None
    input: dict[str, Any] | None = None
    differences: list[dict[str, Any]] = field(default_factory=list)
    """``{field, recorded, redecided}`` per difference; ``field`` is allowed, legalBasis, fields,
    reasons (the codes) or revision."""

    @property
    def exit_code(self) -> int:
        """0 same, 1 differs, 2 cannot."""
        return {"same": 0, "differs": 1, "cannot": 2}[self.status]

    def to_json(self) -> dict[str, Any]:
        """The explanation as the API answers it (camelCase)."""
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.reason is not None:
            out["reason"] = {"code": self.reason, "message": CANNOT[self.reason][0]}
        out |= {
            "entry": self.entry,
            "policyRevision": self.revision,
            "inputDigest": self.input_digest,
            "recipient": self.recipient,
            "revisionIntact": self.revision_intact,
            "recorded": self.recorded,
            "redecided": self.redecided,
            "input": self.input,
            "differences": self.differences,
        }
        return out


def read_entry(db: Engine, index: int) -> dict[str, Any] | None:
    """The entry at ``index`` as the log stores it (parsed), or None."""
    table = metadata.tables["audit_entries"]
    if index < 0:
        return None
    with db.connect() as conn:
        leaf = conn.scalar(select(table.c.leaf_data).where(table.c.idx == index))
    if leaf is None:
        return None
    value = json.loads(bytes(leaf))
    return value if isinstance(value, dict) else None


def explain(db: Engine, index: int, entry: Mapping[str, Any] | None = None) -> Explanation:
    """Re-decide the decision of entry ``index`` (``entry`` when the caller read it already)."""
    found = dict(entry) if entry is not None else read_entry(db, index)
    if found is None:
        return Explanation(index, "cannot", "entry_not_found")
    summary: dict[str, Any] = {
        k: found[k] for k in ("time", "type", "action", "outcome", "counterpart") if k in found
    }
    result = Explanation(index, "cannot", entry=summary)
    block = found.get("decision")
    if not isinstance(block, dict):
        result.reason = "no_decision"
        return result
    result.recorded = _comparable(block)
    result.revision = str(block.get("policyRevision") or "") or None
    digest = block.get("inputDigest")
    if not isinstance(digest, str):
        result.reason = "no_input"
        return result
    result.input_digest = digest
    policy_input = load_input(db, digest)
    if policy_input is None:
        result.reason = "input_not_archived"
        return result
    result.input = policy_input
    result.recipient = recipient_of(found, policy_input)
    try:
        source = load_revision(db, result.revision or "", verify=False)
    except RevisionNotArchived:
        result.reason = "revision_not_archived"
        return result
    except PolicyLoadFailed:  # the archived files are no {path: text}, or no longer read as a policy
        result.reason = "revision_unreadable"
        return result
    result.revision_intact = source.revision == result.revision
    try:
        engine = _engines.engine(source)
    except PolicyLoadFailed:  # altered files that no longer compile
        result.revision_intact = False
        result.reason = "revision_unreadable"
        return result
    decision = engine.decide(policy_input)
    redecided = decision_record(decision, result.recipient)
    part = decision.recipients.get(result.recipient) if result.recipient is not None else None
    result.redecided = _comparable(redecided, list(part.fields) if part is not None else None)
    if "fieldsDigest" in block:
        result.recorded = _comparable(block, recorded_fields(block["fieldsDigest"], policy_input))
    result.differences = _differences(result.recorded, result.redecided)
    if not result.revision_intact:
        result.differences.insert(
            0, {"field": "revision", "recorded": result.revision, "redecided": source.revision}
        )
    result.status = "differs" if result.differences else "same"
    return result


def _comparable(block: Mapping[str, Any], fields: list[str] | None = None) -> dict[str, Any]:
    """``{allowed, legalBasis, reasons: [codes]}`` of a decision block, and ``fieldsDigest`` when it
    has one; ``fields``: the names, when known (a re-decision's, or the recorded ones found again)."""
    reasons = block.get("reasons")
    codes = [r.get("code") for r in reasons if isinstance(r, Mapping)] if isinstance(reasons, list) else []
    out: dict[str, Any] = {
        "allowed": block.get("allowed"),
        "legalBasis": block.get("legalBasis"),
        "reasons": codes,
    }
    if "fieldsDigest" in block:
        out["fieldsDigest"] = block["fieldsDigest"]
        if fields is not None:
            out["fields"] = sorted(fields)
    return out


MAX_FIELD_SEARCH = 16
"""Up to this many payload fields in an input, the recorded fields are found again from their digest."""


def recorded_fields(digest: Any, policy_input: Mapping[str, Any]) -> list[str] | None:
    """The field names whose `fields_digest` is ``digest``: a subset of the input's ``payloadFields``
    (the fields a decision allows are always among those the input named), or None."""
    names = policy_input.get("payloadFields")
    if not isinstance(digest, str) or not isinstance(names, list):
        return None
    candidates = sorted({n for n in names if isinstance(n, str)})
    if len(candidates) > MAX_FIELD_SEARCH:
        return None
    for size in range(len(candidates), -1, -1):  # most often all or most of them
        for subset in itertools.combinations(candidates, size):
            if fields_digest(subset) == digest:
                return list(subset)
    return None


def _differences(recorded: Mapping[str, Any], redecided: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    for key in ("allowed", "legalBasis", "fieldsDigest", "reasons"):
        if key not in recorded:
            continue
        if recorded.get(key) != redecided.get(key):
            if key == "fieldsDigest":
                found.append(
                    {
                        "field": "fields",
                        "recorded": recorded.get("fields"),
                        "redecided": redecided.get("fields"),
                    }
                )
            else:
                found.append({"field": key, "recorded": recorded.get(key), "redecided": redecided.get(key)})
    return found


# -- the command line's Dutch ---------------------------------------------------------------------------

_LABELS = {
    "allowed": "toegestaan",
    "legalBasis": "grondslag",
    "fields": "velden",
    "reasons": "redencodes",
    "revision": "revisie",
}


def _value(key: str, value: Any) -> str:
    if key == "allowed":
        return {True: "ja", False: "nee"}.get(value, "onbekend")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(geen)"
    if value is None:
        return "(onbekend)" if key == "fields" else "(geen)"
    return str(value)


def _block(title: str, block: Mapping[str, Any]) -> list[str]:
    lines = [f"{title}:"]
    for key in ("allowed", "legalBasis", "fields", "reasons"):
        if key in block:
            lines.append(f"  {_LABELS[key]}: {_value(key, block[key])}")
        elif key == "fields" and "fieldsDigest" in block:
            lines.append(f"  {_LABELS[key]}: (niet te herleiden uit {block['fieldsDigest']})")
    return lines


def render_text(x: Explanation) -> str:
    """The explanation in plain Dutch; a ``cannot`` is one line saying why."""
    if x.status == "cannot":
        return f"entry {x.index}: kan niet opnieuw beslissen: {CANNOT[x.reason or 'no_decision'][1]}\n"
    e = x.entry
    what = " ".join(str(e[k]) for k in ("type", "action", "outcome") if k in e)
    lines = [f"entry {x.index} ({what}, {e.get('time', '?')})"]
    if x.recipient:
        lines.append(f"ontvanger: {x.recipient}")
    lines += [f"revisie: {x.revision}", f"invoer: {x.input_digest}"]
    if x.revision_intact is False:
        lines.append("let op: de bestanden van deze revisie in het archief zijn gewijzigd")
    lines += ["", *_block("vastgelegde beslissing", x.recorded or {})]
    lines += _block("opnieuw beslist", x.redecided or {})
    lines.append("")
    if x.status == "same":
        lines.append("zelfde beslissing")
    else:
        lines.append("verschil:")
        for d in x.differences:
            key = d["field"]
            lines.append(f"  {_LABELS[key]}: {_value(key, d['recorded'])} -> {_value(key, d['redecided'])}")
    return "\n".join(lines) + "\n"
