"""Reasons rendered from data.json: the policy names a message template and its arguments, the gateway
writes the sentence in English and Dutch and orders the reasons.

The policy returns each reason as ``{template, args}``: ``template`` a key of ``facts.messages``, whose
entry names its reason ``code`` (a key of ``facts.reasonCodes``) and holds ``message`` and
``messageNl`` with one ``%v`` per argument. An argument is a string (the policy joins a list first);
anything else is written as its JSON text. A decision's reasons come out as ``{code, message,
messageNl}``, without duplicates, most fundamental first: by the rank of their code, then by message.

`Templates.from_facts` checks every template when a policy is loaded (`TemplateError`, which the load
turns into a compile error), so a bad data.json never reaches a request; a reason that does not fit its
template at request time is a `MalformedDecision` (a deny).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.policy._decision import MalformedDecision

PLACEHOLDER = "%v"
_OTHER_DIRECTIVE = re.compile(r"%(?!v)")
# A reason written in the Rego with a literal argument list: _reason("template", [ ... ]).
_REASON_CALL = re.compile(r'_reason\(\s*"([^"]+)"\s*,\s*\[')


class TemplateError(ValueError):
    """data.json's templates (or the policy's use of them) do not fit; ``errors`` names each place."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(f"{errors[0]['field']}: {errors[0]['message']}")
        self.errors = errors


@dataclass(frozen=True)
class Template:
    """One message of data.json, split at its placeholders."""

    code: str
    rank: int
    en: tuple[str, ...]
    nl: tuple[str, ...]

    @property
    def arity(self) -> int:
        """How many arguments the template takes."""
        return len(self.en) - 1


def _fill(parts: tuple[str, ...], args: list[str]) -> str:
    out = [parts[0]]
    for arg, part in zip(args, parts[1:], strict=True):
        out.append(arg)
        out.append(part)
    return "".join(out)


def _text(arg: Any) -> str:
    """A string as it is; anything else (a mistyped input value the policy echoes) as its JSON text, as
    regopy's sprintf wrote it before rendering moved here."""
    if isinstance(arg, str):
        return arg
    return json.dumps(arg, ensure_ascii=False)


class Templates:
    """The message templates of one policy revision, checked; renders and orders reasons."""

    def __init__(self, templates: Mapping[str, Template]) -> None:
        self._templates = dict(templates)

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any]) -> Templates:
        """Check and split ``facts.messages`` against ``facts.reasonCodes``; raises `TemplateError`."""
        errors: list[dict[str, str]] = []
        # A policy without templates loads only if it never gives a reason (its probe decision must).
        codes = facts.get("reasonCodes", {})
        messages = facts.get("messages", {})
        if not isinstance(codes, Mapping) or not isinstance(messages, Mapping):
            raise TemplateError([{"field": "data.json", "message": "reasonCodes and messages are objects"}])
        ranks: dict[str, int] = {}
        for code, entry in codes.items():
            rank = entry.get("rank") if isinstance(entry, Mapping) else None
            if not isinstance(rank, int) or isinstance(rank, bool):
                errors.append({"field": f"reasonCodes.{code}", "message": "has no integer rank"})
            else:
                ranks[code] = rank
        templates: dict[str, Template] = {}
        for name, entry in messages.items():
            where = f"messages.{name}"
            if not isinstance(entry, Mapping):
                errors.append({"field": where, "message": "is not an object"})
                continue
            code = entry.get("code")
            if code not in ranks:
                errors.append({"field": f"{where}.code", "message": f"{code!r} is not a ranked reasonCode"})
            texts = {}
            for language in ("message", "messageNl"):
                text = entry.get(language)
                if not isinstance(text, str) or not text:
                    errors.append(
                        {
                            "field": f"{where}.{language}",
                            "message": "is missing (every template "
                            "needs an English message and a Dutch messageNl)",
                        }
                    )
                elif _OTHER_DIRECTIVE.search(text):
                    errors.append({"field": f"{where}.{language}", "message": "uses a % other than %v"})
                else:
                    texts[language] = tuple(text.split(PLACEHOLDER))
            if len(texts) == 2 and len(texts["message"]) != len(texts["messageNl"]):
                errors.append(
                    {
                        "field": where,
                        "message": f"message has {len(texts['message']) - 1} placeholders, messageNl "
                        f"{len(texts['messageNl']) - 1}",
                    }
                )
            elif len(texts) == 2 and code in ranks:
                templates[name] = Template(str(code), ranks[str(code)], texts["message"], texts["messageNl"])
        if errors:
            raise TemplateError(errors)
        return cls(templates)

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def __getitem__(self, name: str) -> Template:
        return self._templates[name]

    def names(self) -> list[str]:
        """Every template name, sorted."""
        return sorted(self._templates)

    def check_modules(self, modules: Mapping[str, str]) -> None:
        """Every ``_reason("name", [...])`` with a literal argument list names a template and gives it as
        many arguments as it has placeholders; raises `TemplateError` naming ``file:line``."""
        errors = []
        for path, source in sorted(modules.items()):
            for m in _REASON_CALL.finditer(source):
                name = m.group(1)
                line = source.count("\n", 0, m.start()) + 1
                where = f"{path}:{line}"
                if name not in self._templates:
                    errors.append({"field": where, "message": f"no message template {name!r} in data.json"})
                    continue
                count = _count_items(source, m.end())
                arity = self._templates[name].arity
                if count is not None and count != arity:
                    errors.append(
                        {
                            "field": where,
                            "message": f"{name} takes {arity} arguments, the policy gives {count}",
                        }
                    )
        if errors:
            raise TemplateError(errors)

    def render(self, item: Any) -> tuple[int, str, str, str]:
        """One ``{template, args}`` as ``(rank, message, code, messageNl)``; raises `MalformedDecision`."""
        if not isinstance(item, Mapping):
            raise MalformedDecision("a reason is not an object")
        name, args = item.get("template"), item.get("args")
        template = self._templates.get(name) if isinstance(name, str) else None
        if template is None:
            raise MalformedDecision("a reason names no known message template")
        if not isinstance(args, list) or len(args) != template.arity:
            raise MalformedDecision(f"reason {name} needs {template.arity} arguments")
        texts = [_text(a) for a in args]
        return template.rank, _fill(template.en, texts), template.code, _fill(template.nl, texts)

    def reasons(self, items: Any, where: str = "reasons") -> list[dict[str, str]]:
        """``{template, args}`` items as ``{code, message, messageNl}``: without duplicates, by rank and
        then message (then code and Dutch message, so the order is total)."""
        if not isinstance(items, list):
            raise MalformedDecision(f"{where} is not a list")
        rendered = sorted({self.render(i) for i in items})
        return [{"code": code, "message": en, "messageNl": nl} for _, en, code, nl in rendered]

    def result(self, raw: Any) -> Any:
        """The policy's ``result`` with every reason rendered (the top level's and each recipient's);
        the rest of the shape is `Decision.from_result`'s to check. Raises `MalformedDecision`."""
        if not isinstance(raw, Mapping):
            return raw
        out = dict(raw)
        out["reasons"] = self.reasons(raw.get("reasons"))
        recipients = raw.get("recipients")
        if isinstance(recipients, Mapping):
            out["recipients"] = {
                agency: {**part, "reasons": self.reasons(part.get("reasons"), f"recipients.{agency}.reasons")}
                if isinstance(part, Mapping)
                else part
                for agency, part in recipients.items()
            }
        return out


def _count_items(source: str, start: int) -> int | None:
    """The number of top-level items of the array literal whose ``[`` ends just before ``start``;
    None when it does not close (not a literal the scanner follows)."""
    depth, items, seen, i = 0, 0, False, start
    while i < len(source):
        c = source[i]
        if c == '"':
            i += 1
            while i < len(source) and source[i] != '"':
                i += 2 if source[i] == "\\" else 1
            seen = True
        elif c in "[({":
            depth += 1
            seen = True
        elif c in "])}":
            if depth == 0:
                return items + 1 if seen else items
            depth -= 1
        elif c == "," and depth == 0:
            items += 1
        elif c == "#":
            while i < len(source) and source[i] != "\n":
                i += 1
        elif not c.isspace():
            seen = True
        i += 1
    return None


def load_templates(facts: Mapping[str, Any], modules: Mapping[str, str]) -> Templates:
    """The checked templates of a policy about to be loaded; a bad template or a reason that does not
    fit its template is a `PolicyCompileError`, as a Rego compile error is, so it never goes live."""
    from gateway.policy._source import PolicyCompileError

    try:
        templates = Templates.from_facts(facts)
        templates.check_modules(modules)
    except TemplateError as e:
        raise PolicyCompileError(str(e), errors=e.errors) from e
    return templates
