"""Impact before activation: replay recorded decision inputs on a candidate revision and list what changes.

A candidate policy directory is read, compiled and tested like a reload would (a candidate that does not
compile or whose tests fail is refused with its errors, `CandidateRefused`). Every recorded decision of
the window is then decided twice, on the baseline (the revision that serves now) and on the candidate,
each distinct input once per side (the record's ``inputDigest`` is the cache key), and compared per
recipient: allowed <-> refused, legal basis, fields added or removed, reason codes gained or lost.

The report groups the changed decisions by grant row (step x information type x recipient x sender, as
``data.json``'s ``grants`` name them) and by reason code, with counts, and gives the totals and both
revisions. Its ``changes`` are what a reviewer approves: `unexpected_changes` compares the set of
``(index, recipient, change)`` items of a reviewed report with a new one (reload's ``expectImpact``).

Nothing here reads the decision tables itself: the records come from `gateway.services.policy_archive`
(`recorded_decisions`), the baseline's files from `load_revision`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway.errors import DependencyUnavailable, InvalidInput, PolicyLoadFailed
from gateway.policy import Decision, PolicySource

if TYPE_CHECKING:  # the archive (and the database models) only where a replay reads it
    from gateway.services.policy_archive import RecordedDecision

MAX_REPLAY = 100_000
"""The most recorded decisions one impact replays (``--last``, ``last`` of the API, and the decisions
of a ``--since`` window): the bound on how long a replay may run."""

DEFAULT_LAST = 1000
"""The window when neither ``last`` nor ``since`` is given."""


class Decider(Protocol):
    """An engine, as far as the replay uses one."""

    @property
    def revision(self) -> str: ...

    def decide(self, policy_input: dict[str, Any]) -> Decision: ...


class CandidateRefused(PolicyLoadFailed):
    """The candidate does not compile or its tests fail: nothing was replayed (422, with the errors)."""

    title = "Candidate policy refused"


class ImpactUnexpected(PolicyLoadFailed):
    """A reload's actual impact differs from the reviewed one: the old revision stays active (422)."""

    title = "Impact differs from the reviewed one"


KINDS = ("refused", "allowed", "legalBasis", "fields", "reasons")
"""The kinds of change, most important first (the order the report counts them in)."""


@dataclass(frozen=True)
class Outcome:
    """One recipient's decision, reduced to what an impact compares."""

    allowed: bool
    legal_basis: str | None
    fields: tuple[str, ...]
    codes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """``{allowed, legalBasis, fields, reasons}``; reasons as codes only."""
        return {
            "allowed": self.allowed,
            "legalBasis": self.legal_basis,
            "fields": list(self.fields),
            "reasons": list(self.codes),
        }


def outcome(decision: Decision, recipient: str | None) -> Outcome:
    """``decision`` for ``recipient`` (None: the decision as a whole, for the case actions)."""
    if recipient is None:
        return Outcome(decision.allowed, decision.legal_basis, (), tuple(decision.codes))
    part = decision.recipient(recipient)
    return Outcome(part.allowed, part.legal_basis, tuple(sorted(part.fields)), tuple(part.codes))


def differences(before: Outcome, after: Outcome) -> list[dict[str, Any]]:
    """What changed, most important first; ``[]`` when nothing did.

    A flip of ``allowed`` is one change (``refused`` or ``allowed``) with the reasons that came and went;
    the basis and the fields of a refused decision are empty by definition, so they are only compared
    when both sides allow.
    """
    out: list[dict[str, Any]] = []
    if before.allowed != after.allowed:
        out.append({"kind": "allowed" if after.allowed else "refused"})
    elif after.allowed:
        if before.legal_basis != after.legal_basis:
            out.append({"kind": "legalBasis", "from": before.legal_basis, "to": after.legal_basis})
        added = sorted(set(after.fields) - set(before.fields))
        removed = sorted(set(before.fields) - set(after.fields))
        if added or removed:
            out.append({"kind": "fields", "added": added, "removed": removed})
    gained = sorted(set(after.codes) - set(before.codes))
    lost = sorted(set(before.codes) - set(after.codes))
    if gained or lost:
        out.append({"kind": "reasons", "added": gained, "removed": lost})
    return out


@dataclass(frozen=True)
class GrantRow:
    """The row of ``grants`` a decision is about: ``grants[informationType][recipient][sender]`` in
    ``step``. Case actions have none."""

    step: str
    information_type: str
    recipient: str
    sender: str

    def to_json(self) -> dict[str, str]:
        """``{step, informationType, recipient, sender}``."""
        return {
            "step": self.step,
            "informationType": self.information_type,
            "recipient": self.recipient,
            "sender": self.sender,
        }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "?"


def grant_row(policy_input: Mapping[str, Any], recipient: str | None) -> GrantRow | None:
    """The row a share (sender: the actor) or a request (sender: the holder) is decided on."""
    action = policy_input.get("action")
    if action not in ("share", "request") or recipient is None:
        return None
    case = policy_input.get("case")
    case = case if isinstance(case, Mapping) else {}
    actor = policy_input.get("actor")
    actor = actor if isinstance(actor, Mapping) else {}
    sender = actor.get("agency") if action == "share" else policy_input.get("holder")
    return GrantRow(
        f"{_text(case.get('flow'))}/{_text(case.get('step'))}",
        _text(policy_input.get("informationType")),
        recipient,
        _text(sender),
    )


def recipients_of(record: RecordedDecision) -> list[str | None]:
    """Whom one recorded decision decided for.

    A share's entry is one recipient's decision (the entry's counterpart, `RecordedDecision.recipient`);
    a request's is the asker's (it receives); a case action's is the decision as a whole (None). A
    record that does not say which recipient it was counts once per recipient of its input.
    """
    policy_input = record.input
    action = policy_input.get("action")
    named = record.recipient
    if action == "share":
        if isinstance(named, str) and named:
            return [named]
        listed = policy_input.get("recipients")
        return [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
    if action == "request":
        actor = policy_input.get("actor")
        agency = actor.get("agency") if isinstance(actor, Mapping) else None
        return [named if isinstance(named, str) and named else _text(agency)]
    return [None]


@dataclass(frozen=True)
class Change:
    """One recorded decision that the candidate decides differently."""

    index: int
    time: str
    action: str
    recipient: str | None
    row: GrantRow | None
    before: Outcome
    after: Outcome
    changes: tuple[dict[str, Any], ...]

    def key(self) -> str:
        """What a reviewer approves: the entry, the recipient and what changed (canonical JSON)."""
        return _canonical([self.index, self.recipient, list(self.changes)])

    def to_json(self) -> dict[str, Any]:
        """The change as the report lists it."""
        return {
            "index": self.index,
            "time": self.time,
            "action": self.action,
            "recipient": self.recipient,
            "row": self.row.to_json() if self.row is not None else None,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "changes": list(self.changes),
        }


def _canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return str(value)


@dataclass
class ImpactReport:
    """What activating the candidate would change in the recorded window."""

    baseline_revision: str
    candidate_revision: str
    window: dict[str, Any]
    replayed: int = 0
    distinct_inputs: int = 0
    changes: list[Change] = field(default_factory=list)
    tests_passed: int = 0

    @property
    def changed(self) -> int:
        """How many decisions change."""
        return len(self.changes)

    @property
    def unchanged(self) -> int:
        """How many decisions stay as they are."""
        return self.replayed - self.changed

    def keys(self) -> set[str]:
        """The ``(index, recipient, change)`` items, as `Change.key` writes them."""
        return {c.key() for c in self.changes}

    def digest(self) -> str:
        """SHA-256 over the sorted change items: equal digests, equal impact."""
        return "sha256:" + hashlib.sha256("\n".join(sorted(self.keys())).encode("utf-8")).hexdigest()

    def by_row(self) -> list[dict[str, Any]]:
        """Changed decisions per grant row, with their kinds of change counted; most changed first."""
        rows: dict[GrantRow | None, Counter[str]] = {}
        for change in self.changes:
            counter = rows.setdefault(change.row, Counter())
            counter["changed"] += 1
            for c in change.changes:
                counter[c["kind"]] += 1
        out = []
        for row, counter in rows.items():
            item: dict[str, Any] = row.to_json() if row is not None else {"step": None, "action": "case"}
            item["changed"] = counter.pop("changed")
            item["kinds"] = {k: counter[k] for k in KINDS if k in counter}
            out.append(item)
        out.sort(key=lambda i: (-i["changed"], _canonical(i)))
        return out

    def by_reason(self) -> list[dict[str, Any]]:
        """Per reason code: how many changed decisions gain it and how many lose it."""
        gained: Counter[str] = Counter()
        lost: Counter[str] = Counter()
        for change in self.changes:
            for c in change.changes:
                if c["kind"] == "reasons":
                    gained.update(c["added"])
                    lost.update(c["removed"])
        codes = sorted(set(gained) | set(lost), key=lambda code: (-(gained[code] + lost[code]), code))
        return [{"code": code, "gained": gained[code], "lost": lost[code]} for code in codes]

    def by_kind(self) -> dict[str, int]:
        """How many changed decisions show each kind of change."""
        counter: Counter[str] = Counter(c["kind"] for change in self.changes for c in change.changes)
        return {k: counter[k] for k in KINDS if k in counter}

    def to_json(self) -> dict[str, Any]:
        """The report as ``gateway policy impact --json`` and ``POST /v1/policies/impact`` give it."""
        return {
            "baselineRevision": self.baseline_revision,
            "candidateRevision": self.candidate_revision,
            "window": self.window,
            "totals": {
                "replayed": self.replayed,
                "distinctInputs": self.distinct_inputs,
                "changed": self.changed,
                "unchanged": self.unchanged,
            },
            "testsPassed": self.tests_passed,
            "byKind": self.by_kind(),
            "byRow": self.by_row(),
            "byReason": self.by_reason(),
            "changes": [c.to_json() for c in self.changes],
            "changesDigest": self.digest(),
        }


def replay(
    records: Iterable[RecordedDecision],
    baseline: Decider,
    candidate: Decider,
    *,
    window: dict[str, Any] | None = None,
) -> ImpactReport:
    """Decide every record on both engines (each distinct input once per engine) and compare."""
    report = ImpactReport(baseline.revision, candidate.revision, dict(window or {}))
    decided: dict[str, tuple[Decision, Decision]] = {}
    first: RecordedDecision | None = None
    last: RecordedDecision | None = None
    for record in records:
        first = first or record
        last = record
        pair = decided.get(record.input_digest)
        if pair is None:
            policy_input = dict(record.input)
            pair = (baseline.decide(policy_input), candidate.decide(policy_input))
            decided[record.input_digest] = pair
        for recipient in recipients_of(record):
            report.replayed += 1
            before, after = outcome(pair[0], recipient), outcome(pair[1], recipient)
            found = differences(before, after)
            if found:
                report.changes.append(
                    Change(
                        index=record.index,
                        time=_iso(record.time),
                        action=_text(record.input.get("action")),
                        recipient=recipient,
                        row=grant_row(record.input, recipient),
                        before=before,
                        after=after,
                        changes=tuple(found),
                    )
                )
    report.distinct_inputs = len(decided)
    if first is not None and last is not None:
        report.window.update(
            fromIndex=first.index, toIndex=last.index, fromTime=_iso(first.time), toTime=_iso(last.time)
        )
    report.changes.sort(key=lambda c: (c.index, c.recipient or ""))
    return report


# -- the candidate --------------------------------------------------------------------------------------


def check_candidate(directory: Path | str) -> tuple[PolicySource, int]:
    """Read, compile and test ``directory`` as a reload would; raises `CandidateRefused` with the errors.

    Returns the snapshot (what is replayed is what was tested) and how many tests passed. A revision
    that passed once is not tested again: the revision is the hash of every file, tests included.
    """
    from gateway.policy import PolicyCompileError, compile_source, read_policy, run_tests

    try:
        source = read_policy(directory)
        with _checked_lock:
            passed = _checked.get(source.revision)
        if passed is not None:  # the same bytes compiled and passed before: the same answer again
            return source, passed
        compile_source(source)
    except PolicyCompileError as e:
        raise CandidateRefused(
            "the candidate does not compile; nothing was replayed",
            errors=e.errors or [{"field": "policies", "message": e.detail[:2000]}],
        ) from e
    report = run_tests(source)
    if report.failed or report.errors:
        failures = [{"field": r.name, "message": r.message} for r in report.results if not r.ok]
        failures += [{"field": "policies", "message": m} for m in report.errors]
        raise CandidateRefused(
            f"{report.passed} passed, {report.failed} failed; the candidate was not replayed",
            errors=failures,
        )
    with _checked_lock:
        _checked[source.revision] = report.passed
        while len(_checked) > CHECKED_REVISIONS:
            _checked.pop(next(iter(_checked)))
    return source, report.passed


CHECKED_REVISIONS = 8
"""How many revisions that compiled and passed their tests `check_candidate` remembers (per process)."""

_checked: dict[str, int] = {}
_checked_lock = threading.Lock()


# -- expected impact ------------------------------------------------------------------------------------


def reviewed_keys(reviewed: Mapping[str, Any]) -> set[str]:
    """The change items of a reviewed report (its JSON); raises ``ValueError`` when it is not one."""
    changes = reviewed.get("changes")
    if not isinstance(changes, list):
        raise ValueError("expectImpact.changes is not a list")
    keys = set()
    for i, item in enumerate(changes):
        if not isinstance(item, Mapping):
            raise ValueError(f"expectImpact.changes[{i}] is not an object")
        index, recipient, kinds = item.get("index"), item.get("recipient"), item.get("changes")
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(kinds, list):
            raise ValueError(f"expectImpact.changes[{i}] needs an integer index and a list of changes")
        if recipient is not None and not isinstance(recipient, str):
            raise ValueError(f"expectImpact.changes[{i}].recipient is not a string")
        keys.add(_canonical([index, recipient, kinds]))
    return keys


def unexpected_changes(reviewed: Mapping[str, Any], actual: ImpactReport) -> dict[str, list[Any]]:
    """``{missing, unexpected}``: reviewed items that no longer happen, and changes nobody reviewed."""
    expected, found = reviewed_keys(reviewed), actual.keys()
    return {
        "missing": [json.loads(k) for k in sorted(expected - found)],
        "unexpected": [json.loads(k) for k in sorted(found - expected)],
    }


def reviewed_window(reviewed: Mapping[str, Any]) -> tuple[int, int] | None:
    """The index range a reviewed report replayed, or None when it replayed nothing."""
    window = reviewed.get("window")
    if not isinstance(window, Mapping):
        raise ValueError("expectImpact.window is not an object")
    low, high = window.get("fromIndex"), window.get("toIndex")
    if low is None and high is None:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (low, high)):
        raise ValueError("expectImpact.window needs integer fromIndex and toIndex")
    assert isinstance(low, int) and isinstance(high, int)
    return low, high


# -- one impact at a time -------------------------------------------------------------------------------

_busy = threading.BoundedSemaphore(1)
T = TypeVar("T")


def exclusive(run: Callable[[], T], busy: Callable[[], T]) -> T:
    """``run()`` unless another impact is replaying in this process; then ``busy()``."""
    if not _busy.acquire(blocking=False):
        return busy()
    try:
        return run()
    finally:
        _busy.release()


def format_window(last: int | None, since: dt.datetime | None) -> dict[str, Any]:
    """The window as the report names it, before the replay adds the index range."""
    return {"last": last, "since": _iso(since) if since is not None else None}


def limit(records: Sequence[RecordedDecision], cap: int = MAX_REPLAY) -> Sequence[RecordedDecision]:
    """At most ``cap`` records: the newest."""
    return records[-cap:] if len(records) > cap else records


# -- the human report (Dutch) ---------------------------------------------------------------------------

KIND_NL = {
    "refused": "geweigerd",
    "allowed": "toegestaan",
    "legalBasis": "grondslag",
    "fields": "velden",
    "reasons": "redenen",
}
"""Each kind of change as the Dutch report names it."""

TEXT_CHANGES = 50
"""The text report lists at most this many changed decisions one by one (``--json`` has them all)."""


def _short(revision: str) -> str:
    return revision[:19] + "…" if len(revision) > 20 else revision


def _describe(change: dict[str, Any]) -> str:
    kind = change["kind"]
    if kind == "refused":
        return "toegestaan → geweigerd"
    if kind == "allowed":
        return "geweigerd → toegestaan"
    if kind == "legalBasis":
        return f"grondslag {change['from']!s} → {change['to']!s}"
    signs = [f"+{n}" for n in change["added"]] + [f"-{n}" for n in change["removed"]]
    return f"{KIND_NL[kind]} {' '.join(signs)}"


def _table(header: list[str], rows: list[list[str]], right: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [
            c.rjust(w) if i < right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def render_text(report: ImpactReport) -> str:
    """The report as ``gateway policy impact`` prints it: a few compact tables, in Dutch."""
    window = report.window
    if window.get("since"):
        asked = f"besluiten sinds {window['since']}"
    else:
        asked = f"laatste {window.get('last') or DEFAULT_LAST} besluiten"
    lines = [
        f"Impact van {_short(report.baseline_revision)} (actief) → {_short(report.candidate_revision)} "
        f"(kandidaat, {report.tests_passed} tests geslaagd)",
    ]
    if "fromIndex" in window:
        lines.append(
            f"Venster: {asked}: index {window['fromIndex']}–{window['toIndex']}, "
            f"{window['fromTime']} – {window['toTime']}"
        )
    else:
        lines.append(f"Venster: {asked}: geen vastgelegde besluiten")
    lines.append(
        f"Opnieuw beslist: {report.replayed} besluiten ({report.distinct_inputs} verschillende invoeren); "
        f"gewijzigd: {report.changed}, ongewijzigd: {report.unchanged}"
    )
    if not report.changes:
        lines.append("Geen enkel besluit verandert.")
        return "\n".join(lines) + "\n"
    lines += ["", "Per rij van grants:"]
    rows = []
    for row in report.by_row():
        kinds = ", ".join(f"{KIND_NL[k]} {n}" for k, n in row["kinds"].items())
        if row.get("step") is None:
            rows.append([str(row["changed"]), "(zaakacties)", "", "", "", kinds])
        else:
            rows.append(
                [
                    str(row["changed"]),
                    row["step"],
                    row["informationType"],
                    row["sender"],
                    row["recipient"],
                    kinds,
                ]
            )
    lines += _table(["aantal", "stap", "informatiesoort", "van", "aan", "wijzigingen"], rows)
    reasons = report.by_reason()
    if reasons:
        lines += ["", "Per redencode:"]
        lines += _table(
            ["erbij", "eraf", "code"],
            [[str(r["gained"]), str(r["lost"]), r["code"]] for r in reasons],
            right=2,
        )
    lines += ["", "Gewijzigde besluiten:"]
    listed = []
    for change in report.changes[:TEXT_CHANGES]:
        who = f"→ {change.recipient}" if change.recipient else ""
        listed.append(
            [f"#{change.index}", f"{change.action} {who}".strip(), "; ".join(map(_describe, change.changes))]
        )
    lines += _table(["index", "besluit", "wijziging"], listed)
    if report.changed > TEXT_CHANGES:
        lines.append(f"  … en nog {report.changed - TEXT_CHANGES} (--json geeft ze alle)")
    return "\n".join(lines) + "\n"


# -- wiring: the archive's records and revisions --------------------------------------------------------
# The only calls into gateway.services.policy_archive (issue 11 item 2): the recorded decisions, an
# archived revision's files, the active revision, and an engine for a snapshot.


def _recorded(db: Any, *, last: int, since: dt.datetime | None) -> Sequence[RecordedDecision]:
    from gateway.services.policy_archive import recorded_decisions

    return recorded_decisions(db, last=last, since=since)


def _archived(db: Any, revision: str) -> PolicySource:
    from gateway.services.policy_archive import load_revision

    return load_revision(db, revision)


def _active_revision(db: Any) -> str:
    from gateway.services.policy_archive import active_revision

    return active_revision(db)


EngineMaker = Callable[[PolicySource], Decider]


def in_thread_engine(source: PolicySource) -> Decider:
    """The archive's replay engine: in the calling thread, no worker process (the command line's)."""
    from gateway.services.policy_archive import engine_for_source

    return engine_for_source(source)


def worker_engine(source: PolicySource) -> Decider:
    """One worker process, each decision under the engine's deadline: the server's, so a replay holds
    neither the interpreter lock of the process that serves nor a decision past the deadline."""
    from gateway.policy import EmbeddedEngine

    return EmbeddedEngine(source, pool_size=1)


# -- the impact of a directory, and of a reload ---------------------------------------------------------


def window_records(
    db: Any, *, last: int | None = None, since: dt.datetime | None = None, span: tuple[int, int] | None = None
) -> Sequence[RecordedDecision]:
    """The recorded decisions of a window, oldest first: those since ``since`` (the newest `MAX_REPLAY`
    of them), else the newest ``last`` (default `DEFAULT_LAST`); with ``span``, only those whose index
    lies in it (a reviewed report's window)."""
    if since is not None:
        records = _recorded(db, last=MAX_REPLAY, since=since)
    else:
        records = _recorded(db, last=min(last or DEFAULT_LAST, MAX_REPLAY), since=None)
    if span is not None:
        low, high = span
        records = [r for r in records if low <= r.index <= high]
    return sorted(records, key=lambda r: r.index)


def replay_candidate(
    db: Any,
    baseline_revision: str,
    candidate: PolicySource,
    records: Sequence[RecordedDecision],
    window: dict[str, Any],
    make_engine: EngineMaker = in_thread_engine,
) -> ImpactReport:
    """Replay ``records`` on the archived ``baseline_revision`` and on ``candidate``, each in an engine of
    its own: never the serving one, whose workers and decision cache stay for live traffic."""
    baseline = make_engine(_archived(db, baseline_revision))
    try:
        engine = make_engine(candidate)
        try:
            return replay(records, baseline, engine, window=window)
        finally:
            _close(engine)
    finally:
        _close(baseline)


def impact_of(
    db: Any,
    directory: Path | str,
    *,
    baseline_revision: str | None = None,
    last: int | None = None,
    since: dt.datetime | None = None,
    make_engine: EngineMaker = in_thread_engine,
) -> ImpactReport:
    """What activating ``directory`` instead of ``baseline_revision`` (default: the active one in the
    database) would change in the window; raises `CandidateRefused`."""
    source, passed = check_candidate(directory)
    baseline = baseline_revision or _active_revision(db)
    records = window_records(db, last=last, since=since)
    report = replay_candidate(db, baseline, source, records, format_window(last, since), make_engine)
    report.tests_passed = passed
    return report


def validate_reviewed(reviewed: Mapping[str, Any]) -> None:
    """A 400 naming ``expectImpact`` when ``reviewed`` is not an impact report."""
    try:
        reviewed_keys(reviewed)
        reviewed_window(reviewed)
    except ValueError as e:
        raise InvalidInput.field("expectImpact", str(e)) from e


def require_impact(
    db: Any, baseline_revision: str, candidate: PolicySource, reviewed: Mapping[str, Any]
) -> None:
    """Replay the reviewed report's window on ``candidate``; raises `ImpactUnexpected` when the changed
    ``(index, recipient, change)`` items differ from the reviewed ones (a reload's ``expectImpact``)."""
    span = reviewed_window(reviewed)
    window = reviewed.get("window")
    assert isinstance(window, Mapping)
    records: Sequence[RecordedDecision] = []
    if span is not None:
        since = _parse_time(window.get("fromTime"))
        records = window_records(db, since=since, span=span) if since else window_records(db, span=span)
    actual = replay_candidate(db, baseline_revision, candidate, records, dict(window), worker_engine)
    diff = unexpected_changes(reviewed, actual)
    if diff["missing"] or diff["unexpected"]:
        errors = [
            {"field": "expectImpact.changes", "message": f"not reviewed: {_canonical(item)}"}
            for item in diff["unexpected"][:50]
        ] + [
            {"field": "expectImpact.changes", "message": f"reviewed, does not happen: {_canonical(item)}"}
            for item in diff["missing"][:50]
        ]
        raise ImpactUnexpected(
            f"{len(diff['unexpected'])} changed decisions not in the reviewed impact, "
            f"{len(diff['missing'])} reviewed changes that do not happen; the old revision stays active",
            errors=errors,
            extra={
                "revision": baseline_revision,
                "candidateRevision": candidate.revision,
                "changesDigest": actual.digest(),
            },
        )


def runtime_impact(rt: Any, *, last: int | None = None, since: dt.datetime | None = None) -> dict[str, Any]:
    """``POST /v1/policies/impact``: the gateway's policy directory as it is on disk, against the revision
    that serves; one replay at a time per process (another caller meanwhile gets a 503)."""

    def run() -> dict[str, Any]:
        report = impact_of(
            rt.db,
            rt.settings.policy_dir,
            baseline_revision=rt.policy.current.revision,
            last=last,
            since=since,
        )
        return report.to_json()

    def busy() -> dict[str, Any]:
        raise DependencyUnavailable("another impact is being replayed; retry later", retry_after=10)

    return exclusive(run, busy)


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _close(engine: object) -> None:
    close = getattr(engine, "close", None)
    if callable(close):
        close()
