"""Reports for people, built from the audit log: a subject-access report (AVG art. 15) and a case report.

Each row says in plain words what happened: when, which agency gave which kind of information to which
agency, for which purpose, on which legal basis (marked when the grant is not verified), and whether it
was refused, with the reasons. Every value is a phrase of the report's language (Dutch by default,
English available): names come from the policy's ``data.json`` (``nameNl``/``name``), refusal reasons
are rendered from its message templates with those names. No hashes, trace ids, pseudonyms or internal
ids appear unless ``technical=True`` (for the officer): then each row adds its log index, leaf hash,
trace id, policy revision and case id, and the header the pseudonym.

Each row's inclusion is checked against the signed checkpoint the report covers; a failed check is shown
in the row and counted in the header, never left out.

Use::

    report = make_subject_report(rt, ctx, pseudonym)        # logs the lookup, then builds
    pdf: bytes = render_pdf(report)
    csv_text: str = render_csv(report)                     # UTF-8 with BOM, ';' separated
    text: str = render_text(report)

``build_subject_report`` / ``build_case_report`` build without logging (the caller logs the lookup
first, as the command line does).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from audit import (
    MAX_PAGE,
    AuditError,
    AuditStore,
    LogEntry,
    SearchFilters,
    leaf_hash,
    verify_checkpoint,
    verify_inclusion,
)
from gateway.auth import Principal
from gateway.services.report_formats import render_csv, render_pdf, render_text
from gateway.services.trail import CallContext, lookup_entry

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gateway.runtime import Runtime

__all__ = [
    "MAX_ROWS",
    "Lang",
    "Report",
    "ReportKind",
    "ReportRow",
    "Technical",
    "Words",
    "build_case_report",
    "build_subject_report",
    "case_subjects",
    "make_case_report",
    "make_subject_report",
    "reasons_of",
    "render_csv",
    "render_pdf",
    "render_text",
]

Lang = Literal["nl", "en"]
ReportKind = Literal["subject", "case"]

MAX_ROWS = 10_000
"""Rows in one report at most (the header says when a report stops there); bounds memory and the PDF."""

_ZONE_NAME = "Europe/Amsterdam"

# -- words -------------------------------------------------------------------------------------------

_MONTHS = {
    "nl": ("januari februari maart april mei juni juli augustus september oktober november december").split(),
    "en": ("January February March April May June July August September October November December").split(),
}

# Every phrase a report uses, by key, in both languages. `{x}` are names already rendered.
_PHRASES: dict[str, dict[str, str]] = {
    "title.subject": {
        "nl": "Overzicht van uitwisselingen van uw gegevens (inzage, artikel 15 AVG)",
        "en": "Overview of exchanges of your data (subject access, GDPR article 15)",
    },
    "title.case": {"nl": "Overzicht van een dossier", "en": "Case report"},
    "h.about": {"nl": "Over", "en": "About"},
    "h.about.subject": {
        "nl": "de persoon met het opgegeven BSN (het BSN staat om privacyredenen niet in dit overzicht)",
        "en": "the person with the BSN given (for privacy the BSN is not printed in this report)",
    },
    "h.about.case": {"nl": "dossier {case}", "en": "case {case}"},
    "h.asked": {"nl": "Opgevraagd door", "en": "Requested by"},
    "h.made": {"nl": "Opgesteld op", "en": "Made on"},
    "h.covers": {"nl": "Omvat", "en": "Covers"},
    "h.covers.value": {
        "nl": "de eerste {size} vermeldingen van het logboek, zoals een ondertekend controlepunt ze vastlegt",
        "en": "the first {size} entries of the audit log, as a signed checkpoint fixes them",
    },
    "h.view": {"nl": "Weergave", "en": "View"},
    "h.view.agency": {
        "nl": "alleen vermeldingen waarin {agency} voorkomt",
        "en": "only entries that name {agency}",
    },
    "h.view.all": {"nl": "alle organisaties", "en": "all agencies"},
    "h.check": {"nl": "Controle", "en": "Verification"},
    "h.check.ok": {
        "nl": "alle {n} vermeldingen zijn gecontroleerd: elk staat aantoonbaar in het ondertekende logboek",
        "en": "all {n} entries were checked: each is provably in the signed log",
    },
    "h.check.one": {
        "nl": "de vermelding is gecontroleerd: ze staat aantoonbaar in het ondertekende logboek",
        "en": "the entry was checked: it is provably in the signed log",
    },
    "h.check.none": {
        "nl": "er zijn geen vermeldingen om te controleren; het controlepunt zelf is geldig ondertekend",
        "en": "there are no entries to check; the checkpoint itself is validly signed",
    },
    "h.check.failed": {
        "nl": "LET OP: bij {failed} van de {n} vermeldingen is de controle mislukt (gemarkeerd)",
        "en": "WARNING: the check failed for {failed} of the {n} entries (marked)",
    },
    "h.check.badnote": {
        "nl": "LET OP: het controlepunt is niet geldig ondertekend; geen enkele vermelding is gecontroleerd",
        "en": "WARNING: the checkpoint is not validly signed; no entry could be checked",
    },
    "h.truncated": {"nl": "Ingekort", "en": "Truncated"},
    "h.truncated.value": {
        "nl": "alleen de eerste {n} vermeldingen staan in dit overzicht; vraag een kortere periode op",
        "en": "only the first {n} entries are in this report; ask for a shorter period",
    },
    "h.pseudonym": {"nl": "Pseudoniem", "en": "Pseudonym"},
    "h.root": {"nl": "Controlepunt (root)", "en": "Checkpoint (root)"},
    "summary.received": {
        "nl": "Organisaties die informatie ontvingen",
        "en": "Agencies that received information",
    },
    "summary.nobody": {"nl": "geen", "en": "none"},
    "summary.times": {"nl": "{n}×", "en": "{n}×"},
    "no.rows": {
        "nl": "Er zijn geen vermeldingen gevonden.",
        "en": "No entries were found.",
    },
    "note.verify": {
        "nl": "Elke vermelding kan worden nagerekend tegen het controlepunt hieronder (technische "
        "gegevens: vraag de functionaris gegevensbescherming).",
        "en": "Every entry can be checked against the checkpoint below (for the technical details, ask "
        "the privacy officer).",
    },
    # columns
    "c.when": {"nl": "Datum en tijd", "en": "Date and time"},
    "c.what": {"nl": "Handeling", "en": "Action"},
    "c.by": {"nl": "Door", "en": "By"},
    "c.from": {"nl": "Van", "en": "From"},
    "c.to": {"nl": "Aan", "en": "To"},
    "c.information": {"nl": "Soort informatie", "en": "Kind of information"},
    "c.purpose": {"nl": "Doel", "en": "Purpose"},
    "c.basis": {"nl": "Grondslag", "en": "Legal basis"},
    "c.decision": {"nl": "Besluit", "en": "Decision"},
    "c.reasons": {"nl": "Redenen", "en": "Reasons"},
    "c.case": {"nl": "Dossier", "en": "Case"},
    "c.sentence": {"nl": "Omschrijving", "en": "Description"},
    "c.proof": {"nl": "Controle", "en": "Verification"},
    "c.index": {"nl": "Volgnummer", "en": "Index"},
    "c.leaf": {"nl": "Leaf-hash", "en": "Leaf hash"},
    "c.trace": {"nl": "Trace-id", "en": "Trace id"},
    "c.revision": {"nl": "Beleidsversie", "en": "Policy revision"},
    "c.case_id": {"nl": "Dossiernummer", "en": "Case id"},
    # values
    "v.na": {"nl": "niet van toepassing", "en": "not applicable"},
    "v.nobody": {"nl": "niemand (er is niets verstrekt)", "en": "nobody (nothing was provided)"},
    "v.no_info": {"nl": "geen informatie", "en": "no information"},
    "v.no_purpose": {"nl": "geen doel vastgelegd", "en": "no purpose recorded"},
    "v.no_basis": {"nl": "geen grondslag vastgelegd", "en": "no legal basis recorded"},
    "v.basis_refused": {"nl": "geen (geweigerd)", "en": "none (refused)"},
    "v.unverified": {"nl": "{basis} — niet geverifieerd", "en": "{basis} — not verified"},
    "v.info_kind": {"nl": "gegevens van het soort ‘{name}’", "en": "information of the kind ‘{name}’"},
    "v.info_any": {"nl": "gegevens", "en": "information"},
    "v.quoted": {"nl": "‘{name}’", "en": "‘{name}’"},
    "v.no_case": {"nl": "geen dossier", "en": "no case"},
    "v.case_n": {"nl": "dossier {n}", "en": "case {n}"},
    "v.unknown_time": {"nl": "onbekend tijdstip", "en": "unknown time"},
    "v.unknown_agency": {"nl": "een onbekende organisatie", "en": "an unknown agency"},
    "v.operator": {"nl": "de beheerder van de gateway", "en": "the gateway's operator"},
    "v.allowed": {"nl": "toegestaan", "en": "allowed"},
    "v.refused": {"nl": "geweigerd", "en": "refused"},
    "v.no_decision": {"nl": "geen besluit nodig", "en": "no decision needed"},
    "v.proof_ok": {"nl": "gecontroleerd", "en": "verified"},
    "v.proof_failed": {"nl": "CONTROLE MISLUKT", "en": "CHECK FAILED"},
    "v.no_trace": {"nl": "geen", "en": "none"},
    "v.no_reason_nl": {
        "nl": "{message} (deze reden is alleen in het Engels vastgelegd)",
        "en": "{message}",
    },
    "v.no_reasons": {"nl": "geen reden vastgelegd", "en": "no reason recorded"},
    "v.and": {"nl": " en ", "en": " and "},
    # requesters
    "r.privacy_officer": {
        "nl": "de functionaris gegevensbescherming van {agency}",
        "en": "the privacy officer of {agency}",
    },
    "r.auditor": {"nl": "een auditor ({agency})", "en": "an auditor ({agency})"},
    "r.operator": {
        "nl": "de beheerder van de gateway, via de opdrachtregel",
        "en": "the gateway's operator, at the command line",
    },
    "r.operator.view": {
        "nl": "de beheerder van de gateway, via de opdrachtregel, in de weergave van {agency}",
        "en": "the gateway's operator, at the command line, in the view of {agency}",
    },
    "r.other": {"nl": "een gebruiker van {agency}", "en": "a user of {agency}"},
    # actions: a short label and a sentence
    "a.share.allowed": {"nl": "Informatie gedeeld", "en": "Information shared"},
    "s.share.allowed": {
        "nl": "{src} heeft {info} gedeeld met {dst}, voor het doel {purpose}.",
        "en": "{src} shared {info} with {dst}, for the purpose {purpose}.",
    },
    "a.share.refused": {"nl": "Delen geweigerd", "en": "Sharing refused"},
    "s.share.refused": {
        "nl": "{src} wilde {info} delen met {dst}, voor het doel {purpose}. Dit is geweigerd; er is "
        "niets verstrekt.",
        "en": "{src} wanted to share {info} with {dst}, for the purpose {purpose}. This was refused; "
        "nothing was provided.",
    },
    "a.request.allowed": {"nl": "Informatie opgevraagd", "en": "Information requested"},
    "s.request.allowed": {
        "nl": "{dst} heeft {info} opgevraagd bij {src}, voor het doel {purpose}. Dit is toegestaan.",
        "en": "{dst} asked {src} for {info}, for the purpose {purpose}. This was allowed.",
    },
    "a.request.refused": {"nl": "Opvragen geweigerd", "en": "Request refused"},
    "s.request.refused": {
        "nl": "{dst} wilde {info} opvragen bij {src}, voor het doel {purpose}. Dit is geweigerd; er is "
        "niets verstrekt.",
        "en": "{dst} wanted to ask {src} for {info}, for the purpose {purpose}. This was refused; "
        "nothing was provided.",
    },
    "a.request.answered": {"nl": "Informatie verstrekt", "en": "Information provided"},
    "s.request.answered": {
        "nl": "{src} heeft {info} verstrekt aan {dst}, op diens verzoek, voor het doel {purpose}.",
        "en": "{src} provided {info} to {dst}, at its request, for the purpose {purpose}.",
    },
    "a.request.not_found": {"nl": "Niets gevonden", "en": "Nothing found"},
    "s.request.not_found": {
        "nl": "{src} had geen {info} om aan {dst} te verstrekken; er is niets verstrekt.",
        "en": "{src} had no {info} to provide to {dst}; nothing was provided.",
    },
    "a.push.failed": {"nl": "Aflevering mislukt", "en": "Delivery failed"},
    "s.push.failed": {
        "nl": "Het systeem van {dst} nam {info} (nog) niet aan; de gateway probeert het opnieuw.",
        "en": "The system of {dst} did not (yet) accept {info}; the gateway tries again.",
    },
    "a.push.delivered": {"nl": "Bericht afgeleverd", "en": "Message delivered"},
    "s.push.delivered": {
        "nl": "{info} van {src} is afgeleverd bij het systeem van {dst}.",
        "en": "{info} from {src} was delivered to the system of {dst}.",
    },
    "a.push.dead_letter": {"nl": "Aflevering opgegeven", "en": "Delivery given up"},
    "s.push.dead_letter": {
        "nl": "Het systeem van {dst} nam {info} na herhaalde pogingen niet aan; de gateway probeert het "
        "niet meer vanzelf.",
        "en": "The system of {dst} did not accept {info} after repeated attempts; the gateway no longer "
        "retries on its own.",
    },
    "a.push": {"nl": "Aflevering", "en": "Delivery"},
    "s.push": {
        "nl": "Een poging om {info} af te leveren bij het systeem van {dst}.",
        "en": "An attempt to deliver {info} to the system of {dst}.",
    },
    "a.ack": {"nl": "Ontvangst bevestigd", "en": "Receipt confirmed"},
    "s.ack": {
        "nl": "{dst} heeft de ontvangst van {info} van {src} bevestigd.",
        "en": "{dst} confirmed it received {info} from {src}.",
    },
    "a.what_if": {"nl": "Proefbeslissing", "en": "Trial decision"},
    "s.what_if": {
        "nl": "{by} heeft nagevraagd of dit zou mogen; er is niets gedeeld of opgevraagd.",
        "en": "{by} checked whether this would be allowed; nothing was shared or asked for.",
    },
    "a.case.open": {"nl": "Dossier geopend", "en": "Case opened"},
    "s.case.open": {
        "nl": "{by} heeft een dossier geopend ({step}).",
        "en": "{by} opened a case ({step}).",
    },
    "a.case.open.refused": {"nl": "Openen geweigerd", "en": "Opening refused"},
    "s.case.open.refused": {
        "nl": "{by} wilde een dossier openen ({step}). Dit is geweigerd.",
        "en": "{by} wanted to open a case ({step}). This was refused.",
    },
    "a.case.read": {"nl": "Dossier ingezien", "en": "Case read"},
    "s.case.read": {"nl": "{by} heeft het dossier ingezien.", "en": "{by} read the case."},
    "a.case.read.refused": {"nl": "Inzien geweigerd", "en": "Reading refused"},
    "s.case.read.refused": {
        "nl": "{by} wilde het dossier inzien. Dit is geweigerd.",
        "en": "{by} wanted to read the case. This was refused.",
    },
    "a.case.transition": {"nl": "Stap gewijzigd", "en": "Step changed"},
    "s.case.transition": {
        "nl": "{by} heeft het dossier van {from_step} naar {to_step} verplaatst.",
        "en": "{by} moved the case from {from_step} to {to_step}.",
    },
    "a.case.transition.refused": {"nl": "Stapwijziging geweigerd", "en": "Step change refused"},
    "s.case.transition.refused": {
        "nl": "{by} wilde het dossier van {from_step} naar {to_step} verplaatsen. Dit is geweigerd.",
        "en": "{by} wanted to move the case from {from_step} to {to_step}. This was refused.",
    },
    "a.case.track": {"nl": "Spoor gewijzigd", "en": "Track changed"},
    "s.case.track.opened": {"nl": "{by} heeft het {track} geopend.", "en": "{by} opened the {track}."},
    "s.case.track.closed": {"nl": "{by} heeft het {track} gesloten.", "en": "{by} closed the {track}."},
    "a.case.track.refused": {"nl": "Spoorwijziging geweigerd", "en": "Track change refused"},
    "s.case.track.refused": {
        "nl": "{by} wilde het {track} openen of sluiten. Dit is geweigerd.",
        "en": "{by} wanted to open or close the {track}. This was refused.",
    },
    "track": {"nl": "{name}spoor", "en": "{name} track"},
    "a.audit.subject_report": {"nl": "Inzageoverzicht opgevraagd", "en": "Subject report requested"},
    "s.audit.subject_report": {
        "nl": "{by} heeft een overzicht van de uitwisselingen over deze persoon opgevraagd.",
        "en": "{by} requested an overview of the exchanges about this person.",
    },
    "a.audit.case_report": {"nl": "Dossieroverzicht opgevraagd", "en": "Case report requested"},
    "s.audit.case_report": {
        "nl": "{by} heeft een overzicht van het dossier opgevraagd.",
        "en": "{by} requested a report of the case.",
    },
    "a.audit.search": {"nl": "Gezocht in het logboek", "en": "Audit log searched"},
    "s.audit.search": {
        "nl": "{by} heeft in het logboek gezocht naar vermeldingen over deze persoon.",
        "en": "{by} searched the audit log for entries about this person.",
    },
    "a.audit.view": {"nl": "Bekeken in de console", "en": "Viewed in the console"},
    "s.audit.view": {
        "nl": "{by} heeft gegevens hierover bekeken in de console voor functionarissen.",
        "en": "{by} viewed details of this in the privacy officers' console.",
    },
    "a.other": {"nl": "Andere handeling", "en": "Other action"},
    "s.other": {
        "nl": "{by} heeft een andere handeling uitgevoerd die in het logboek is vastgelegd.",
        "en": "{by} carried out another action recorded in the audit log.",
    },
}


def phrase(key: str, lang: Lang, **values: object) -> str:
    """The phrase ``key`` in ``lang`` with ``values`` filled in."""
    return _PHRASES[key][lang].format(**values)


def _humanise(identifier: str) -> str:
    """A step identifier as words (``fysieke_veiligheid`` -> ``fysieke veiligheid``)."""
    return identifier.replace("_", " ")


class Words:
    """The names of one policy's identifiers in one language, and its reasons rendered with them."""

    def __init__(self, facts: Mapping[str, Any], lang: Lang = "nl") -> None:
        self.facts = facts
        self.lang: Lang = lang
        self._key = "nameNl" if lang == "nl" else "name"
        self._templates = _reason_templates(facts)

    def phrase(self, key: str, **values: object) -> str:
        """The phrase ``key`` in this language."""
        return phrase(key, self.lang, **values)

    def _name(self, section: str, identifier: str | None) -> str | None:
        table = self.facts.get(section)
        spec = table.get(identifier) if isinstance(table, Mapping) and identifier else None
        if isinstance(spec, Mapping):
            name = spec.get(self._key) or spec.get("nameNl") or spec.get("name")
            if isinstance(name, str) and name:
                return name
        return None

    def agency(self, agency: str | None) -> str:
        """An agency's name; the operator and unknown agencies as phrases, never an identifier."""
        if agency == "operator":
            return self.phrase("v.operator")
        return self._name("agencies", agency) or self.phrase("v.unknown_agency")

    def information(self, information_type: str | None) -> str:
        """An information type's name, or "geen informatie"."""
        if information_type is None:
            return self.phrase("v.no_info")
        return self._name("informationTypes", information_type) or _humanise(information_type)

    def purpose(self, purpose: str | None) -> str:
        """A purpose's name, or a phrase saying none was recorded."""
        if purpose is None:
            return self.phrase("v.no_purpose")
        return self._name("purposes", purpose) or _humanise(purpose)

    def step(self, flow: str | None, step: str | None) -> str:
        """A flow and step as words: ``Acuut onveilig, stap fysieke veiligheid``."""
        if flow is None:
            return self.phrase("v.na")
        flow_name = self._name("flows", flow) or _humanise(flow)
        if step is None:
            return flow_name
        return f"{flow_name}, {'stap' if self.lang == 'nl' else 'step'} {_humanise(step)}"

    def track(self, track: str | None) -> str:
        """``zorgspoor`` / ``straf track``."""
        return self.phrase("track", name=track or "")

    def verified(
        self, information_type: str | None, to: str | None, src: str | None, actor: str | None
    ) -> bool:
        """Whether the legal basis behind a decision is marked verified in data.json.

        For an exchange the grant row ``grants[type][receiver][sender]`` decides; for a case action the
        acting agency's own basis. Unknown counts as not verified: the mark errs towards caution.
        """
        if information_type is not None and to is not None and src is not None:
            row = _path(self.facts, "grants", information_type, to, src)
        else:
            row = _path(self.facts, "agencies", actor)
        return isinstance(row, Mapping) and row.get("verified") is True

    def name_args(self, arg: str) -> str:
        """A reason's argument with every identifier in it replaced by its name (lists stay lists)."""
        return _IDENT.sub(lambda m: self._ident_name(m.group(0)), arg)

    def _ident_name(self, word: str) -> str:
        for section in ("agencies", "informationTypes", "purposes", "flows"):
            name = self._name(section, word)
            if name is not None:
                return name
        return _humanise(word)

    def reason(self, reason: Mapping[str, Any]) -> str:
        """One recorded reason ``{code, message[, messageNl]}`` as a sentence in this language, with names.

        The log keeps the English sentence the policy's template gave; the template is found again by
        its code and shape, its arguments taken back out, and the sentence written anew in this language
        with the names of the identifiers. A sentence that fits no template (a later revision changed
        it) is shown as recorded, saying so.
        """
        code, message = reason.get("code"), reason.get("message")
        if not isinstance(message, str):
            return self.phrase("v.no_reasons")
        for pattern, template in self._templates.get(code if isinstance(code, str) else "", ()):
            m = pattern.fullmatch(message)
            if m is None:
                continue
            parts = template.nl if self.lang == "nl" else template.en
            args = [self.name_args(a) for a in m.groups()]
            out = [parts[0]]
            for arg, part in zip(args, parts[1:], strict=True):
                out += [arg, part]
            return "".join(out)
        recorded = reason.get("messageNl") if self.lang == "nl" else message
        if isinstance(recorded, str) and recorded:
            return recorded
        return self.phrase("v.no_reason_nl", message=message)


_IDENT = re.compile(r"(?<![A-Za-z0-9_])[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?![A-Za-z0-9_])")


def _path(facts: Mapping[str, Any], *keys: str | None) -> Any:
    node: Any = facts
    for k in keys:
        if not isinstance(node, Mapping) or k is None:
            return None
        node = node.get(k)
    return node


def _reason_templates(facts: Mapping[str, Any]) -> dict[str, list[tuple[re.Pattern[str], Any]]]:
    """data.json's message templates by reason code, each with a pattern that takes its arguments back."""
    from gateway.policy._render import PLACEHOLDER, TemplateError, Templates

    try:
        templates = Templates.from_facts(facts)
    except TemplateError:
        return {}
    out: dict[str, list[tuple[re.Pattern[str], Any]]] = {}
    for name in templates.names():
        t = templates[name]
        pattern = re.compile("(.*?)".join(re.escape(p) for p in t.en), re.DOTALL)
        out.setdefault(t.code, []).append((pattern, t))
    # Templates with more fixed text first: "... (legal basis not yet verified)" before its shorter twin.
    for candidates in out.values():
        candidates.sort(key=lambda c: -len(PLACEHOLDER.join(c[1].en)))
    return out


def when(t: dt.datetime | None, lang: Lang) -> str:
    """``3 december 2026, 14:05`` in Dutch local time."""
    if t is None:
        return phrase("v.unknown_time", lang)
    local = t.astimezone(_zone())
    return f"{local.day} {_MONTHS[lang][local.month - 1]} {local.year}, {local:%H:%M}"


def _zone() -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(_ZONE_NAME)
    except zoneinfo.ZoneInfoNotFoundError:  # a machine without tzdata: UTC, which the time then says
        return dt.UTC


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


# -- the report --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Technical:
    """What only an officer needs, shown with ``technical=True``: where the row is in the log."""

    index: int
    leaf_hash: str
    trace_id: str
    policy_revision: str
    case_id: str


@dataclass(frozen=True)
class ReportRow:
    """One logged entry in plain words. Every ``str`` is a phrase of the report's language.

    ``index`` and ``case_id`` are for linking (a console's entry and case pages); renderers print them
    only in technical mode (``technical`` is then set).
    """

    index: int
    case_id: str | None
    time: dt.datetime | None
    when: str
    what: str
    sentence: str
    by: str
    source: str
    recipient: str
    information: str
    purpose: str
    legal_basis: str
    legal_basis_verified: bool | None
    decision: str
    allowed: bool | None
    reasons: tuple[str, ...]
    case: str
    moves_information: bool
    received_by: str | None
    """The agency's name when information reached it in this row (an allowed share, an answer)."""
    proof_ok: bool
    proof: str
    technical: Technical | None = None


@dataclass(frozen=True)
class Report:
    """A report ready to render: a title, header lines, rows, a summary; all in ``lang``."""

    kind: ReportKind
    lang: Lang
    technical: bool
    title: str
    header: tuple[tuple[str, str], ...]
    rows: tuple[ReportRow, ...]
    summary: tuple[str, str]
    verification: str
    tree_size: int
    checkpoint: str
    made_at: dt.datetime
    failed: tuple[int, ...]
    truncated: bool
    checkpoint_ok: bool
    """The checkpoint's signature verified (so the rows could be checked against it)."""

    @property
    def verified(self) -> bool:
        """True when the checkpoint verified and every row's inclusion proof checked."""
        return not self.failed and self.checkpoint_ok

    def filename(self, extension: str) -> str:
        """A file name without personal data: ``inzage-20261203-1405.pdf`` / ``dossier-...``."""
        stem = {"subject": {"nl": "inzage", "en": "subject-report"}, "case": {"nl": "dossier", "en": "case"}}
        return f"{stem[self.kind][self.lang]}-{self.made_at.astimezone(_zone()):%Y%m%d-%H%M}.{extension}"

    def columns(self) -> list[tuple[str, str]]:
        """``(attribute, heading)`` of the table columns, the technical ones last when asked for."""
        keys = [
            ("when", "c.when"),
            ("what", "c.what"),
            ("by", "c.by"),
            ("source", "c.from"),
            ("recipient", "c.to"),
            ("information", "c.information"),
            ("purpose", "c.purpose"),
            ("legal_basis", "c.basis"),
            ("decision", "c.decision"),
            ("reasons", "c.reasons"),
            ("case", "c.case"),
            ("sentence", "c.sentence"),
            ("proof", "c.proof"),
        ]
        if self.technical:
            keys += [
                ("technical.index", "c.index"),
                ("technical.leaf_hash", "c.leaf"),
                ("technical.trace_id", "c.trace"),
                ("technical.policy_revision", "c.revision"),
                ("technical.case_id", "c.case_id"),
            ]
        return [(attr, phrase(key, self.lang)) for attr, key in keys]


def cell(row: ReportRow, attribute: str, lang: Lang) -> str:
    """The text of one column of ``row`` (reasons joined; technical values as text)."""
    if attribute.startswith("technical."):
        if row.technical is None:
            return ""
        return str(getattr(row.technical, attribute.removeprefix("technical.")))
    value = getattr(row, attribute)
    if isinstance(value, tuple):
        return "; ".join(value) if value else ""
    return str(value)


_TO_COUNTERPART = frozenset({"share", "push", "what-if:share"})
_FROM_COUNTERPART = frozenset({"request", "what-if:request", "ack"})
_AUDIT_ACTIONS = frozenset({"audit.subject_report", "audit.case_report", "audit.search", "audit.view"})


def _agency_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("agency")
    return value if isinstance(value, str) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def reasons_of(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The recorded reasons of an entry's decision (``[{code, message}]``), or none."""
    decision = entry.get("decision")
    reasons = decision.get("reasons") if isinstance(decision, Mapping) else None
    return [r for r in reasons if isinstance(r, Mapping)] if isinstance(reasons, list) else []


def _row(
    item: LogEntry,
    words: Words,
    cases: dict[str, str],
    proof_ok: bool,
    technical: bool,
) -> ReportRow:
    lang = words.lang
    try:
        parsed: Any = item.entry
    except ValueError:
        parsed = None
    e: Mapping[str, Any] = parsed if isinstance(parsed, Mapping) else {}
    decision = e.get("decision") if isinstance(e.get("decision"), Mapping) else {}
    assert isinstance(decision, Mapping)
    action, outcome = _str(e.get("action")), _str(e.get("outcome"))
    actor, counterpart = _agency_of(e.get("actor")), _agency_of(e.get("counterpart"))
    information_type, purpose = _str(e.get("informationType")), _str(e.get("purpose"))
    allowed_raw = decision.get("allowed")
    allowed = allowed_raw if isinstance(allowed_raw, bool) else None
    if outcome == "refused":
        allowed = False
    moves = action in _TO_COUNTERPART or action in _FROM_COUNTERPART
    src, dst = (actor, counterpart) if action in _TO_COUNTERPART else (counterpart, actor)
    if not moves:
        src = dst = None
    names = {
        "by": words.agency(actor),
        "src": words.agency(src),
        "dst": words.agency(dst),
        "info": words.information(information_type),
        "purpose": words.purpose(purpose),
    }
    # In a sentence the names are quoted, so a type's name reads as one whatever its grammar.
    said = {
        **names,
        "info": words.phrase("v.info_kind", name=names["info"])
        if information_type
        else words.phrase("v.info_any"),
        "purpose": words.phrase("v.quoted", name=names["purpose"]),
    }
    what_key, sentence_key, extra = _keys(action, outcome, allowed, e, words)
    basis = _str(decision.get("legalBasis"))
    verified: bool | None = None
    if allowed is False:
        legal_basis = words.phrase("v.basis_refused") if decision else words.phrase("v.na")
    elif basis is None:
        legal_basis = words.phrase("v.no_basis") if decision else words.phrase("v.na")
    else:
        verified = (
            words.verified(information_type, dst, src, actor)
            if moves
            else words.verified(None, None, None, actor)
        )
        legal_basis = basis if verified else words.phrase("v.unverified", basis=basis)
    if allowed is True:
        decided = words.phrase("v.allowed")
    elif allowed is False:
        decided = words.phrase("v.refused")
    else:
        decided = words.phrase("v.no_decision")
    reasons: tuple[str, ...] = ()
    if allowed is False:
        reasons = tuple(words.reason(r) for r in reasons_of(e)) or (words.phrase("v.no_reasons"),)
    case_id = _str(e.get("caseId"))
    if case_id is None:
        case = words.phrase("v.no_case")
    else:
        case = cases.setdefault(case_id, words.phrase("v.case_n", n=len(cases) + 1))
    received = None
    if moves and allowed is not False and dst is not None and outcome in ("authorised", "answered"):
        # Data moved: an allowed share, or an answered request (not the decision entry before it).
        if action == "share" or (action == "request" and outcome == "answered"):
            received = names["dst"]
    tech = None
    if technical:
        tech = Technical(
            index=item.index,
            leaf_hash=leaf_hash(item.leaf_data).hex(),
            trace_id=_str(e.get("traceId")) or words.phrase("v.no_trace"),
            policy_revision=_str(decision.get("policyRevision")) or words.phrase("v.na"),
            case_id=case_id or words.phrase("v.no_case"),
        )
    time = _parse_time(e.get("time"))
    return ReportRow(
        index=item.index,
        case_id=case_id,
        time=time,
        when=when(time, lang),
        what=words.phrase(what_key),
        sentence=words.phrase(sentence_key, **said, **extra),
        by=names["by"],
        source=names["src"] if moves else words.phrase("v.na"),
        recipient=names["dst"] if moves and allowed is not False else words.phrase("v.nobody"),
        information=names["info"],
        purpose=names["purpose"] if purpose else words.phrase("v.na"),
        legal_basis=legal_basis,
        legal_basis_verified=verified,
        decision=decided,
        allowed=allowed,
        reasons=reasons,
        case=case,
        moves_information=moves,
        received_by=received,
        proof_ok=proof_ok,
        proof=words.phrase("v.proof_ok" if proof_ok else "v.proof_failed"),
        technical=tech,
    )


def _keys(
    action: str | None, outcome: str | None, allowed: bool | None, e: Mapping[str, Any], words: Words
) -> tuple[str, str, dict[str, str]]:
    """The phrase keys of the row's label and sentence, and any extra names the sentence needs."""
    refused = allowed is False
    if action == "share":
        k = "share.refused" if refused else "share.allowed"
        return f"a.{k}", f"s.{k}", {}
    if action == "request":
        if refused:
            k = "request.refused"
        elif outcome in ("answered", "not_found"):
            k = f"request.{outcome}"
        else:
            k = "request.allowed"
        return f"a.{k}", f"s.{k}", {}
    if action == "push":
        keys = {
            "push_failed": "push.failed",
            "delivered": "push.delivered",
            "dead_letter": "push.dead_letter",
        }
        k = keys.get(outcome or "", "push")
        return f"a.{k}", f"s.{k}", {}
    if action == "ack":
        return "a.ack", "s.ack", {}
    if action is not None and action.startswith("what-if:"):
        return "a.what_if", "s.what_if", {}
    refs = e.get("refs") if isinstance(e.get("refs"), Mapping) else {}
    assert isinstance(refs, Mapping)
    flow, _, step = (_str(e.get("step")) or "").partition("/")
    if action == "case.open":
        k = "case.open.refused" if refused else "case.open"
        return f"a.{k}", f"s.{k}", {"step": words.step(flow or None, step or None)}
    if action == "case.read":
        k = "case.read.refused" if refused else "case.read"
        return f"a.{k}", f"s.{k}", {}
    if action == "case.transition":
        extra = {
            "from_step": words.step(_str(refs.get("fromFlow")) or flow, _str(refs.get("fromStep")) or step),
            "to_step": words.step(_str(refs.get("toFlow")), _str(refs.get("toStep"))),
        }
        k = "case.transition.refused" if refused else "case.transition"
        return f"a.{k}", f"s.{k}", extra
    if action == "case.track":
        extra = {"track": words.track(_str(refs.get("track")))}
        if refused:
            return "a.case.track.refused", "s.case.track.refused", extra
        return "a.case.track", "s.case.track.closed" if outcome == "closed" else "s.case.track.opened", extra
    if action in _AUDIT_ACTIONS:
        return f"a.{action}", f"s.{action}", {}
    return "a.other", "s.other", {}


def requester(principal: Principal, words: Words, view: str | None = None) -> str:
    """Who asked for a report, in words."""
    agency = words.agency(principal.agency)
    if principal.role == "operator":
        if view is None:
            return words.phrase("r.operator")
        return words.phrase("r.operator.view", agency=words.agency(view))
    key = f"r.{principal.role}" if f"r.{principal.role}" in _PHRASES else "r.other"
    return words.phrase(key, agency=agency)


def _entries(store: AuditStore, filters: SearchFilters, size: int) -> Iterator[LogEntry]:
    cursor: str | None = None
    while True:
        page, cursor = store.search(filters, limit=MAX_PAGE, cursor=cursor)
        for item in page:
            if item.index >= size:
                return
            yield item
        if cursor is None:
            return


def _build(
    kind: ReportKind,
    store: AuditStore,
    filters: SearchFilters,
    *,
    facts: Mapping[str, Any],
    requested_by: Principal,
    about: str,
    visible_to: str | None,
    lang: Lang,
    technical: bool,
    extra_header: tuple[tuple[str, str], ...] = (),
) -> Report:
    words = Words(facts, lang)
    note = store.checkpoint()
    made_at = dt.datetime.now(dt.UTC)
    try:
        checkpoint = verify_checkpoint(note, store.verifier_key())
        size, root, note_ok = checkpoint.size, checkpoint.root, True
    except AuditError:
        # Shown, not hidden: the report still lists the entries, each marked as not checked.
        size, root, note_ok = store.size(), b"", False
    if visible_to is not None:
        filters = replace(filters, visible_to=visible_to)
    cases: dict[str, str] = {}
    rows: list[ReportRow] = []
    truncated = False
    for item in _entries(store, filters, size):
        if len(rows) >= MAX_ROWS:
            truncated = True
            break
        ok = note_ok and _included(store, item, size, root)
        rows.append(_row(item, words, cases, ok, technical))
    failed = tuple(r.index for r in rows if not r.proof_ok)
    if not note_ok:
        verification = words.phrase("h.check.badnote")
    elif failed:
        verification = words.phrase("h.check.failed", failed=len(failed), n=len(rows))
    elif len(rows) == 1:
        verification = words.phrase("h.check.one")
    elif rows:
        verification = words.phrase("h.check.ok", n=len(rows))
    else:
        verification = words.phrase("h.check.none")
    received: dict[str, int] = {}
    for r in rows:
        if r.received_by is not None:
            received[r.received_by] = received.get(r.received_by, 0) + 1
    summary = (
        words.phrase("summary.received"),
        ", ".join(f"{a} ({words.phrase('summary.times', n=n)})" for a, n in sorted(received.items()))
        or words.phrase("summary.nobody"),
    )
    header: list[tuple[str, str]] = [
        (words.phrase("h.about"), about),
        (words.phrase("h.asked"), requester(requested_by, words, visible_to)),
        (words.phrase("h.made"), when(made_at, lang)),
        (words.phrase("h.covers"), words.phrase("h.covers.value", size=f"{size:,}".replace(",", "."))),
        (
            words.phrase("h.view"),
            words.phrase("h.view.agency", agency=words.agency(visible_to))
            if visible_to is not None
            else words.phrase("h.view.all"),
        ),
        (words.phrase("h.check"), verification),
    ]
    if truncated:
        header.append((words.phrase("h.truncated"), words.phrase("h.truncated.value", n=MAX_ROWS)))
    if technical:
        import base64

        header += list(extra_header)
        header.append((words.phrase("h.root"), base64.b64encode(root).decode() if root else "-"))
    return Report(
        kind=kind,
        lang=lang,
        technical=technical,
        title=words.phrase(f"title.{kind}"),
        header=tuple(header),
        rows=tuple(rows),
        summary=summary,
        verification=verification,
        tree_size=size,
        checkpoint=note,
        made_at=made_at,
        failed=failed,
        truncated=truncated,
        checkpoint_ok=note_ok,
    )


def _included(store: AuditStore, item: LogEntry, size: int, root: bytes) -> bool:
    try:
        proof = store.inclusion_proof(item.index, size)
        return verify_inclusion(leaf_hash(item.leaf_data), item.index, size, proof, root)
    except (AuditError, ValueError):
        return False


def build_subject_report(
    store: AuditStore,
    pseudonym: str,
    *,
    facts: Mapping[str, Any],
    requested_by: Principal,
    visible_to: str | None = None,
    lang: Lang = "nl",
    technical: bool = False,
    filters: SearchFilters | Mapping[str, Any] | None = None,
) -> Report:
    """The subject-access report of the person with ``pseudonym``, over the log as a fresh checkpoint
    covers it. ``visible_to`` limits it to entries naming that agency (a privacy officer's view).

    Does not log: the caller logs the lookup first (`make_subject_report` does both).
    """
    words = Words(facts, lang)
    base = replace(SearchFilters.coerce(filters), subject=pseudonym)
    return _build(
        "subject",
        store,
        base,
        facts=facts,
        requested_by=requested_by,
        about=words.phrase("h.about.subject"),
        visible_to=visible_to,
        lang=lang,
        technical=technical,
        extra_header=((words.phrase("h.pseudonym"), pseudonym),),
    )


def build_case_report(
    store: AuditStore,
    case_id: str,
    *,
    facts: Mapping[str, Any],
    requested_by: Principal,
    visible_to: str | None = None,
    lang: Lang = "nl",
    technical: bool = False,
) -> Report:
    """The report of every logged entry about case ``case_id``; see `build_subject_report`."""
    words = Words(facts, lang)
    return _build(
        "case",
        store,
        SearchFilters(case_id=case_id),
        facts=facts,
        requested_by=requested_by,
        about=words.phrase("h.about.case", case=case_id),
        visible_to=visible_to,
        lang=lang,
        technical=technical,
    )


def _visible_to(ctx: CallContext) -> str | None:
    return None if "audit:all" in ctx.principal.scopes else ctx.principal.agency


def make_subject_report(
    rt: Runtime,
    ctx: CallContext,
    pseudonym: str,
    *,
    lang: Lang = "nl",
    technical: bool = False,
    query: dict[str, str | int] | None = None,
) -> Report:
    """Log the lookup (``audit.subject_report``), then build the report in the caller's view.

    An officer (scope ``audit``) sees the entries naming its agency, an auditor (``audit:all``) all.
    No audit, no report: a failed append raises before anything is read (`AuditUnavailable`, 503).
    """
    rt.audit_append([lookup_entry(ctx, action="audit.subject_report", pseudonym=pseudonym, query=query)])
    return build_subject_report(
        rt.audit,
        pseudonym,
        facts=rt.policy.current.facts(),
        requested_by=ctx.principal,
        visible_to=_visible_to(ctx),
        lang=lang,
        technical=technical,
    )


def case_subjects(engine: Engine, case_id: str) -> list[str] | None:
    """The pseudonyms of a case's subjects, in order; None when there is no such case."""
    from sqlalchemy import select

    from gateway.models import Case, Subject

    with engine.connect() as conn:
        found = conn.execute(select(Case.case_id).where(Case.case_id == case_id)).scalar_one_or_none()
        if found is None:
            return None
        rows = conn.execute(
            select(Subject.pseudonym).where(Subject.case_id == case_id).order_by(Subject.position)
        ).scalars()
        return list(rows)


def make_case_report(
    rt: Runtime,
    ctx: CallContext,
    case_id: str,
    *,
    lang: Lang = "nl",
    technical: bool = False,
    query: dict[str, str | int] | None = None,
) -> Report:
    """Log the lookup of a case (``audit.case_report``, naming its subjects), then build its report.

    The case must exist (`NotFound` otherwise, before anything is logged): a made-up id that merely looks
    like one could carry someone's BSN, and never reaches the log.
    """
    from gateway.errors import NotFound

    subjects = case_subjects(rt.db, case_id)
    if subjects is None:
        raise NotFound("no such case")
    rt.audit_append(
        [lookup_entry(ctx, action="audit.case_report", subjects=subjects, case_id=case_id, query=query)]
    )
    return build_case_report(
        rt.audit,
        case_id,
        facts=rt.policy.current.facts(),
        requested_by=ctx.principal,
        visible_to=_visible_to(ctx),
        lang=lang,
        technical=technical,
    )
