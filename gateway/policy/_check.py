"""``gateway policy check``: what ``opa check --strict`` refuses, found before anything compiles into the
engine.

regopy, the embedded engine, compiles a module that calls an unknown function or binds an unsafe
variable, and only fails (or crashes) when a decision reaches the rule. OPA's own Go compiler refuses
both, with ``file:line``. Two passes, on every module of the revision, tests included:

1. **Strict rules** (`_strict.py`, our own pass over the source, on both paths: the Go bindings have no
   strict option): unused local assignments, ``some`` variables and function arguments, unused and
   duplicate imports, ``input``/``data`` as a rule, argument or variable name, deprecated built-ins, and
   a local that shadows an import (ours: ``strict_shadowed_import``). OPA's codes and messages.
2. **The compiler.** Where OPA's Go compiler is installed (opa-golib-python-bindings: ``make setup``
   installs it for the engine-parity tests), with the revision's data: unknown functions and
   references, unsafe variables, wrong arity and type errors, recursion, conflicting rules, parse
   errors. Like ``opa check`` it reports every error of the first compiler stage that fails (fix those
   and run it again for the next stage). Without it, regopy's parse and compile errors only, and the
   report says so (`CheckReport.compiler`); regopy is then not run at all when the strict pass found
   something, because some of what it refuses (a rule named ``data``) crashes regopy's compiler.

A finding the compiler and the strict pass both give (OPA refuses ``input := 1`` and duplicate imports
without ``--strict`` too) is reported once. What neither path checks is in docs/policies.md
("Controleren vóór het laden").
"""

from __future__ import annotations

import importlib.util
import re
import threading
from dataclasses import dataclass

from gateway.policy._source import PolicyCompileError, PolicySource

GO_COMPILER = "OPA Go compiler"
EMBEDDED = "regopy"

_FINDING = re.compile(
    r"(?P<file>[^\s:]+\.rego):(?P<line>\d+)(?::\d+)?: (?P<code>rego_[a-z_]+): (?P<message>[^\n]*)"
)
_go_lock = threading.Lock()  # the bindings' engine is one Go runtime per process: one compile at a time


@dataclass(frozen=True)
class Finding:
    """One refusal: where (the module's path under the policy directory, and its line) and what."""

    file: str
    line: int | None
    code: str
    message: str

    @property
    def place(self) -> str:
        """``file:line``, or the file alone when the compiler gave no line."""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        return f"{self.place}: {self.code}: {self.message}"


@dataclass(frozen=True)
class CheckReport:
    """The findings of one revision, and which compiler found them."""

    revision: str
    compiler: str
    modules: int
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def summary(self) -> str:
        verdict = "geen fouten" if self.ok else f"{len(self.findings)} fout(en)"
        return f"{self.modules} modules gecontroleerd met de strikte regels en {self.compiler}: {verdict}"


def go_compiler_available() -> bool:
    """Whether OPA's own compiler (opa-golib-python-bindings) can be loaded in this process."""
    return importlib.util.find_spec("opa_bindings") is not None


def check_source(source: PolicySource, *, use_go: bool | None = None) -> CheckReport:
    """Check every module of ``source``: the strict rules, then OPA's Go compiler when available (or
    ``use_go``), else regopy."""
    from gateway.policy._strict import strict_findings

    go = go_compiler_available() if use_go is None else use_go
    strict = strict_findings(source.modules)
    if go:
        compiled = _go_findings(source)
    else:
        compiled = [] if strict else _embedded_findings(source)
    return CheckReport(
        revision=source.revision,
        compiler=GO_COMPILER if go else EMBEDDED,
        modules=len(source.modules),
        findings=tuple(_merge(strict, compiled)),
    )


def _merge(strict: list[Finding], compiled: list[Finding]) -> list[Finding]:
    """The compiler's findings in its order, then the strict pass's by file and line; what both found
    once (regopy's has no line)."""
    places = {(f.file, f.line, f.message) for f in compiled}
    messages = {f.message for f in strict}
    merged = [f for f in compiled if not (f.line is None and f.message in messages)]
    merged += [f for f in strict if (f.file, f.line, f.message) not in places]
    return merged


def _go_findings(source: PolicySource) -> list[Finding]:
    import opa_bindings  # type: ignore[import-not-found,import-untyped,unused-ignore]

    with _go_lock:
        engine = opa_bindings.OpaEngine()
        try:
            parse_errors: list[Finding] = []
            for name, text in sorted(source.modules.items()):
                try:
                    engine.add_policy(name, text)
                except Exception as e:  # the bindings' parse error: every module is still parsed
                    parse_errors += _parse_go_errors(str(e))
            if parse_errors:
                return parse_errors
            engine.add_data(source.data)
            try:
                # Any query prepares the whole bundle: that is where the compiler runs.
                engine.eval_query("true", {})
            except opa_bindings.OpaError as e:
                return _parse_go_errors(str(e))
            return []
        finally:
            engine.close()


def _parse_go_errors(text: str) -> list[Finding]:
    findings = [
        Finding(m["file"], int(m["line"]), m["code"], m["message"].strip()) for m in _FINDING.finditer(text)
    ]
    if not findings:  # an error the compiler gave without a place: still a refusal, never a pass
        findings = [Finding("policies", None, "rego_compile_error", text.strip().splitlines()[0][:500])]
    return findings


def _embedded_findings(source: PolicySource) -> list[Finding]:
    from gateway.policy._embedded import compile_source  # regopy loads only on this path

    try:
        compile_source(source)
    except PolicyCompileError as e:
        errors = e.errors or [{"field": "policies", "message": e.detail}]
        return [_embedded_finding(error) for error in errors]
    return []


_PLACE = re.compile(r"(?P<file>[^\s:]+\.rego)(?::(?P<line>\d+))?(?::\d+)?:?\s*(?P<message>.*)")


def _embedded_finding(error: dict[str, str]) -> Finding:
    """regopy's error: its place is the ``field`` (``file:line:col``) or leads the message."""
    message = (str(error.get("message", "")).strip().splitlines() or [""])[0]
    field = str(error.get("field", "policies"))
    for text in (f"{field}: {message}", message):
        m = _PLACE.fullmatch(text)
        if m:
            line = int(m["line"]) if m["line"] else None
            return Finding(m["file"], line, "rego_compile_error", m["message"][:500])
    return Finding(field, None, "rego_compile_error", message[:500])
