"""Reading a policy directory: its modules, its data, its revision, and the constructs we refuse."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import PolicyLoadFailed

ENTRYPOINT = "veiligdelen/decision/result"
"""The rule the gateway queries, as ``<package path>/<rule>``."""

FACTS_PATH = ("veiligdelen", "facts")
"""Where the facts live: ``policies/veiligdelen/facts/data.json`` becomes ``data.veiligdelen.facts``."""

DATA_FILE = "data.json"
TEST_SUFFIX = "_test.rego"

WHOLE_INPUT_WITH_HELP = (
    "`with input as` replaces the whole input; regopy 1.5.2 crashes the process on it (a segmentation "
    "fault, also for other rules of the same module). Set input fields one by one instead: "
    "`with input.action as ... with input.actor as ...`"
)


class PolicyCompileError(PolicyLoadFailed):
    """The policy directory cannot be read, refused, or does not compile. ``errors`` names each place."""

    title = "Policy does not compile"


@dataclass(frozen=True)
class PolicySource:
    """Everything read from one policy directory, read once: what is hashed is what is compiled."""

    directory: Path
    revision: str
    modules: dict[str, str]
    """Relative path (POSIX) -> Rego source, every ``*.rego`` including tests."""
    data: dict[str, Any]
    """The merged ``data`` document of every ``data.json``, nested by its directory."""
    files: tuple[str, ...] = field(default=())
    """Every file that went into the revision."""
    texts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Relative path -> text of every file in ``files``: the bytes the revision hashes (UTF-8), kept so
    the revision can be archived exactly (`gateway.services.policy_archive`)."""

    @property
    def policy_modules(self) -> dict[str, str]:
        """The modules a decision needs: tests left out."""
        return {p: s for p, s in self.modules.items() if not p.endswith(TEST_SUFFIX)}

    @property
    def test_modules(self) -> dict[str, str]:
        """The ``*_test.rego`` modules."""
        return {p: s for p, s in self.modules.items() if p.endswith(TEST_SUFFIX)}

    @property
    def facts(self) -> dict[str, Any]:
        """``data.veiligdelen.facts``: the identifiers and rows of the process."""
        node: Any = self.data
        for key in FACTS_PATH:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}


def _policy_files(policy_dir: Path) -> list[tuple[str, Path]]:
    if not policy_dir.is_dir():
        raise PolicyCompileError(
            f"policy directory {policy_dir} does not exist",
            errors=[{"field": str(policy_dir), "message": "no such directory"}],
        )
    found = []
    for path in policy_dir.rglob("*"):
        rel = path.relative_to(policy_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix in {".rego", ".json"}:
            found.append((rel.as_posix(), path))
    return sorted(found)


def _digest(items: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for rel, content in items:
        # Length-prefixed, so no two different trees hash alike.
        name = rel.encode("utf-8")
        h.update(len(name).to_bytes(8, "big") + name)
        h.update(len(content).to_bytes(8, "big") + content)
    return "sha256:" + h.hexdigest()


def policy_fingerprint(policy_dir: Path | str) -> tuple[tuple[str, int, int], ...]:
    """``(relative path, mtime_ns, size)`` of every file that goes into the revision: cheap to poll.

    A change here is a hint, not a revision: the watcher confirms with `policy_revision`.
    """
    directory = Path(policy_dir)
    found = []
    for rel, path in _policy_files(directory):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed while listing: the next poll sees the new state
            continue
        found.append((rel, st.st_mtime_ns, st.st_size))
    return tuple(found)


def policy_revision(policy_dir: Path | str) -> str:
    """SHA-256 over the sorted (relative path, content) of every ``.rego`` and ``.json`` file."""
    directory = Path(policy_dir)
    return _digest([(rel, path.read_bytes()) for rel, path in _policy_files(directory)])


def texts_revision(texts: dict[str, str]) -> str:
    """The revision of ``{relative path: text}`` (`PolicySource.texts`): what `policy_revision` gives for
    a directory holding exactly those files."""
    return _digest(sorted((rel, text.encode("utf-8")) for rel, text in texts.items()))


def read_policy(policy_dir: Path | str) -> PolicySource:
    """Read the directory once; raises `PolicyCompileError` on unreadable or malformed files."""
    directory = Path(policy_dir)
    return source_from_bytes(directory, [(rel, path.read_bytes()) for rel, path in _policy_files(directory)])


def source_from_bytes(directory: Path, raw: list[tuple[str, bytes]]) -> PolicySource:
    """The source of the files ``raw`` (sorted ``(relative path, content)``), as `read_policy` reads a
    directory; an archived revision is rebuilt this way, without touching the disk."""
    raw = sorted(raw)
    errors: list[dict[str, str]] = []
    texts: dict[str, str] = {}
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for rel, content in raw:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as e:
            errors.append({"field": rel, "message": f"not UTF-8: {e}"})
            continue
        texts[rel] = text
        if rel.endswith(".rego"):
            modules[rel] = text
        elif rel.rsplit("/", 1)[-1] == DATA_FILE:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                errors.append({"field": f"{rel}:{e.lineno}:{e.colno}", "message": e.msg})
                continue
            if not isinstance(value, dict):
                errors.append({"field": rel, "message": "a data.json must hold a JSON object"})
                continue
            prefix = rel.split("/")[:-1]
            conflict = _merge(data, prefix, value)
            if conflict:
                errors.append({"field": rel, "message": f"conflicts with other data at data.{conflict}"})
    if not modules:
        errors.append({"field": str(directory), "message": "no .rego modules"})
    if errors:
        raise PolicyCompileError(_summary(errors), errors=errors)
    return PolicySource(directory, _digest(raw), modules, data, tuple(rel for rel, _ in raw), texts)


def _merge(into: dict[str, Any], prefix: list[str], value: dict[str, Any]) -> str | None:
    """Put ``value`` at ``prefix`` in ``into``; returns the conflicting path, if any."""
    node = into
    for i, key in enumerate(prefix):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            return ".".join(prefix[: i + 1])
        node = child
    return _deep_merge(node, value, ".".join(prefix))


def _deep_merge(into: dict[str, Any], value: dict[str, Any], path: str) -> str | None:
    for key, v in value.items():
        here = f"{path}.{key}" if path else key
        if key not in into:
            into[key] = v
        elif isinstance(into[key], dict) and isinstance(v, dict):
            conflict = _deep_merge(into[key], v, here)
            if conflict:
                return conflict
        else:
            return here
    return None


def _summary(errors: list[dict[str, str]]) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first['field']}: {first['message']}{more}"


# --- constructs regopy cannot take -----------------------------------------------------------------

_WHOLE_INPUT_WITH = re.compile(r"\bwith\s+input\s+as\b")


def _code_only(source: str) -> str:
    """``source`` with comments and string contents blanked out; newlines kept so lines still count."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "#":
            while i < n and source[i] != "\n":
                i += 1
            continue
        if c == '"' or c == "`":
            quote = c
            out.append(" ")
            i += 1
            while i < n and source[i] != quote:
                if quote == '"' and source[i] == "\\":
                    i += 1
                out.append("\n" if i < n and source[i] == "\n" else " ")
                i += 1
            out.append(" ")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def whole_input_with_lines(source: str) -> list[int]:
    """The lines (1-based) where ``with input as`` replaces the whole input."""
    code = _code_only(source)
    return [code.count("\n", 0, m.start()) + 1 for m in _WHOLE_INPUT_WITH.finditer(code)]


def refused_constructs(modules: dict[str, str]) -> list[dict[str, str]]:
    """One error per ``with input as`` in ``modules``, naming ``file:line``."""
    return [
        {"field": f"{path}:{line}", "message": WHOLE_INPUT_WITH_HELP}
        for path, source in sorted(modules.items())
        for line in whole_input_with_lines(source)
    ]


# --- regopy error text -----------------------------------------------------------------------------

_ERROR_AT = re.compile(r"\(error (\d+):")
_ERRORMSG = re.compile(r"\(errormsg (\d+):")
_SPAN = re.compile(r"\|(\d+)\|(\d+)")


def _take(text: str, m: re.Match[str]) -> str:
    return text[m.end() : m.end() + int(m.group(1))]


def rego_errors(text: str, modules: dict[str, str]) -> list[dict[str, str]]:
    """Turn regopy's error AST into ``[{field: "file:line:col", message}]``.

    regopy reports ``(error <len>:<file>|<offset>|<length> (errormsg <len>:<text>) ...)``; strings carry
    their length, offsets count bytes into the module.
    """
    found: list[dict[str, str]] = []
    starts = list(_ERROR_AT.finditer(text))
    for k, m in enumerate(starts):
        chunk_end = starts[k + 1].start() if k + 1 < len(starts) else len(text)
        chunk = text[m.start() : chunk_end]
        name = _take(text, m)
        span = _SPAN.match(text, m.end() + len(name))
        offset = int(span.group(1)) if span else None
        msg_match = _ERRORMSG.search(chunk)
        message = _take(chunk, msg_match) if msg_match else "error"
        found.append({"field": _location(name, offset, modules), "message": message})
    if not found:
        messages = [_take(text, mm) for mm in _ERRORMSG.finditer(text)]
        found = [{"field": "policy", "message": msg} for msg in messages] or [
            {"field": "policy", "message": text.strip()[:500] or "unknown regopy error"}
        ]
    return found


def _location(name: str, offset: int | None, modules: dict[str, str]) -> str:
    """``file`` + byte offset -> ``file:line:col`` when the file is one of ours."""
    source = modules.get(name)
    if source is None or offset is None:
        return name or "policy"
    before = source.encode("utf-8")[:offset].decode("utf-8", errors="replace")
    line = before.count("\n") + 1
    col = len(before) - (before.rfind("\n") + 1) + 1
    return f"{name}:{line}:{col}"
