"""The OPA engine: the same ``policies/`` directory, decided by an OPA server over its REST API.

OPA runs as a sidecar (``deploy/``). The engine reaches it through opa-python-client. Two ways to load:

- ``upload=True`` (default): the gateway owns what OPA serves. It puts every decision module under the
  policy id ``gateway/<relative path>`` and each ``data.json`` at its directory's data path, removes
  ``gateway/`` modules the revision no longer has, then reads everything back to verify it;
- ``upload=False``: OPA loaded the directory itself (``opa run --server --bundle policies/``); the engine
  only verifies that OPA serves exactly these modules and data.

Either way the revision is computed from the files, as the embedded engine does, and a probe decision
must be a well-formed deny. ``decide`` never raises: every failure is a deny with its own reason code.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient
from opa_client.errors import DeletePolicyError, PolicyNotFoundError, RegoParseError

from gateway.policy._decision import (
    ENGINE_ERROR,
    ENGINE_TIMEOUT,
    ENGINE_UNAVAILABLE,
    MALFORMED_DECISION,
    UNDEFINED_DECISION,
    Decision,
    MalformedDecision,
)
from gateway.policy._render import load_templates
from gateway.policy._source import (
    DATA_FILE,
    ENTRYPOINT,
    PolicyCompileError,
    PolicySource,
    _code_only,
    read_policy,
)

log = logging.getLogger("gateway.policy")

POLICY_ID_PREFIX = "gateway/"
"""Policy ids the engine owns in OPA (``upload=True``); other ids are left alone."""

DEFAULT_TIMEOUT = 1.0
"""Seconds for one decision round trip; past it the decision is a deny (``engine_timeout``)."""


LOAD_TIMEOUT = 10.0
"""Seconds for one request of loading or verifying a revision (at least the decision timeout)."""


class OpaLoadError(PolicyCompileError):
    """OPA did not accept, or does not serve, the revision; ``errors`` names each place."""

    title = "Policy not loaded into OPA"


class OpaEngine:
    """`PolicyEngine` on an OPA server: ``POST /v1/data/veiligdelen/decision/result``, fail closed.

    To change revision, build a new engine (it uploads and verifies) and swap it in, as for the embedded
    engine. OPA's REST API has no atomic multi-module swap: while a new revision is being uploaded, a
    decision asked through the old engine may already be answered by the new modules. Bundles
    (``upload=False`` with OPA's bundle loading) are OPA's atomic way to switch.
    """

    name = "opa"

    def __init__(
        self,
        opa_url: str,
        policy_dir: Path | str | PolicySource,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        upload: bool = True,
        wait: float = 0.0,
    ) -> None:
        """Load (or verify) ``policy_dir`` in the OPA at ``opa_url``; raises `OpaLoadError`.

        ``wait`` is how long to wait for OPA's ``/health`` first (a sidecar may start after the gateway).
        """
        self._source = policy_dir if isinstance(policy_dir, PolicySource) else read_policy(policy_dir)
        # The templates are checked before anything is uploaded: a bad data.json never reaches OPA.
        self._templates = load_templates(self._source.facts, self._source.policy_modules)
        self.opa_url = opa_url.rstrip("/")
        self.timeout = timeout
        self.upload = upload
        self._client = _client(self.opa_url, timeout)
        # Loading is not on a request's path: it may wait longer than a decision (OPA compiles at
        # every module it is given).
        self._admin = _client(self.opa_url, max(timeout, LOAD_TIMEOUT))
        self._loaded_at = dt.datetime.now(dt.UTC)
        try:
            if wait > 0:
                self._admin.wait_for_ready(timeout=wait, interval=0.1)
            previous = self._upload() if upload else None
            try:
                self._verify()
            except Exception:
                if previous is not None:
                    # Uploaded but not served as it should be: give OPA back what it had.
                    self._restore(previous)
                raise
        except OpaLoadError:
            self._close_clients()
            raise
        except Exception as e:  # opa-python-client raises its own types and requests' errors
            self._close_clients()
            raise OpaLoadError(
                f"OPA at {self.opa_url} did not load the policy: {_describe(e)}",
                errors=[{"field": self.opa_url, "message": _describe(e)}],
            ) from e

    # -- PolicyEngine ------------------------------------------------------------------------------

    @property
    def revision(self) -> str:
        """The loaded revision (``sha256:...``), computed from the files as the embedded engine does."""
        return self._source.revision

    @property
    def policy_dir(self) -> Path:
        """The directory this revision was read from."""
        return self._source.directory

    @property
    def source(self) -> PolicySource:
        """The files of this revision, as read and hashed (archived by `gateway.services.policy_archive`)."""
        return self._source

    def decide(self, policy_input: dict[str, Any]) -> Decision:
        """Ask OPA; a refused connection, a timeout, an HTTP error, an undefined or unreadable answer is
        each a deny with its own reason code."""
        return self._decide(policy_input, self._client, self.timeout)

    def _decide(self, policy_input: dict[str, Any], client: OpaClient, timeout: float) -> Decision:
        revision = self.revision
        package, _, rule = ENTRYPOINT.rpartition("/")
        try:
            answer = client.query_rule(policy_input, package, rule)
        except requests.Timeout:
            log.error("OPA did not answer within %ss for action %r", timeout, _action(policy_input))
            return Decision.fail_closed(ENGINE_TIMEOUT, revision, policy_input)
        except requests.ConnectionError as e:
            log.error("OPA unreachable at %s: %s", self.opa_url, type(e).__name__)
            return Decision.fail_closed(ENGINE_UNAVAILABLE, revision, policy_input)
        except requests.JSONDecodeError:
            # Checked before RequestException, which it also is: an answer, but not JSON.
            log.error("OPA answered something that is not JSON for action %r", _action(policy_input))
            return Decision.fail_closed(MALFORMED_DECISION, revision, policy_input)
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else "?"
            log.error("OPA answered HTTP %s for action %r", status, _action(policy_input))
            return Decision.fail_closed(ENGINE_ERROR, revision, policy_input)
        except (TypeError, ValueError):
            # requests encodes the body: a value JSON cannot hold (a set, NaN) never leaves the gateway.
            return Decision.fail_closed(ENGINE_ERROR, revision, policy_input, "the input is not JSON")
        except Exception as e:  # whatever else the client raises, the answer is a deny
            log.error("OPA request failed: %s", type(e).__name__)
            return Decision.fail_closed(ENGINE_ERROR, revision, policy_input)
        if not isinstance(answer, dict):
            log.error("OPA answered a JSON %s, not an object", type(answer).__name__)
            return Decision.fail_closed(MALFORMED_DECISION, revision, policy_input)
        if "result" not in answer:
            log.error("policy decision undefined in OPA for action %r", _action(policy_input))
            return Decision.fail_closed(UNDEFINED_DECISION, revision, policy_input)
        try:
            return Decision.from_result(self._templates.result(answer["result"]), revision, policy_input)
        except MalformedDecision as e:
            log.error("malformed policy decision from OPA for action %r: %s", _action(policy_input), e)
            return Decision.fail_closed(MALFORMED_DECISION, revision, policy_input)

    def info(self) -> dict[str, Any]:
        """What is loaded: revision, engine, when, which modules."""
        loaded = self._loaded_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        return {
            "revision": self.revision,
            "engine": self.name,
            "loadedAt": loaded,
            "modules": sorted(self._source.policy_modules),
        }

    def facts(self) -> dict[str, Any]:
        """A copy of ``data.veiligdelen.facts`` as loaded (and verified equal in OPA)."""
        return copy.deepcopy(self._source.facts)

    def health(self) -> str | None:
        """None: this engine has no state that stops it deciding (a failed decision is a deny anyway)."""
        return None

    def close(self) -> None:
        """Release the HTTP connections (OPA keeps the policy)."""
        self._close_clients()

    def _close_clients(self) -> None:
        self._client.close_connection()
        self._admin.close_connection()

    # -- loading -----------------------------------------------------------------------------------

    @property
    def policy_ids(self) -> dict[str, str]:
        """OPA policy id -> module path, for the modules this engine uploads."""
        return {POLICY_ID_PREFIX + rel: rel for rel in self._source.policy_modules}

    def _upload(self) -> _Snapshot:
        """Put the modules and data, remove stale ``gateway/`` modules; on failure put the old ones back.

        Returns what OPA held before, for a caller that must undo a revision OPA took but does not serve.
        """
        with _upload_lock:
            previous = self._snapshot()
            try:
                # Data first: a module may read data.veiligdelen.facts as soon as it is compiled in.
                for path, value in _data_documents(self._source):
                    self._admin.update_or_create_data(value, "/".join(path))
                modules = {pid: self._source.policy_modules[rel] for pid, rel in self.policy_ids.items()}
                self._put_policies(modules)
                self._delete_policies(set(previous.policies) - set(self.policy_ids))
            except Exception as e:
                log.error("upload to OPA failed (%s); restoring the previous modules", _describe(e))
                self._restore(previous)
                raise OpaLoadError(
                    f"OPA refused revision {self.revision[:19]}: {_describe(e)}",
                    errors=_opa_errors(e),
                ) from e
            return previous

    def _put_policies(self, modules: dict[str, str]) -> None:
        """PUT every module, in as many passes as it takes.

        OPA compiles each module as it is put, against what it holds: a module that uses a function
        of a module not yet put is refused. So modules go in `upload_order` (what a module uses first),
        and one refused is tried again after the others; a pass that puts none raises the first
        refusal (the revision does not compile, or its modules use each other in a cycle).
        """
        pending = {pid: modules[pid] for pid in upload_order(modules)}
        while pending:
            refused: dict[str, str] = {}
            first: Exception | None = None
            for pid, text in pending.items():
                try:
                    self._admin.update_policy_from_string(text, pid, rego_compat=False)
                except RegoParseError as e:
                    refused[pid] = text
                    first = first or e
            if first is not None and len(refused) == len(pending):
                raise first
            pending = refused

    def _delete_policies(self, ids: set[str]) -> None:
        """DELETE every module, in passes too: one that another still uses is refused until that one
        is gone."""
        pending = sorted(ids)
        while pending:
            refused: list[str] = []
            first: Exception | None = None
            for pid in pending:
                try:
                    self._admin.delete_policy(pid)
                except DeletePolicyError as e:
                    if "not_found" in str(e):
                        continue  # already gone (an earlier request that timed out did it)
                    refused.append(pid)
                    first = first or e
            if first is not None and len(refused) == len(pending):
                raise first
            pending = refused

    def _snapshot(self) -> _Snapshot:
        served = self._served_policies()
        policies = {pid: raw for pid, raw in served.items() if pid.startswith(POLICY_ID_PREFIX)}
        data = {path: self._served_data(path) for path, _ in _data_documents(self._source)}
        return _Snapshot(policies, data)

    def _restore(self, previous: _Snapshot) -> None:
        """Best effort: put back what OPA served before a failed upload."""
        try:
            self._put_policies(previous.policies)
            added = self._admin.get_policies_list()
            self._delete_policies(
                {p for p in added if p.startswith(POLICY_ID_PREFIX)} - set(previous.policies)
            )
            for path, value in previous.data.items():
                if value is _ABSENT:
                    self._admin.delete_data("/".join(path))
                else:
                    self._admin.update_or_create_data(value, "/".join(path))
        except Exception as e:  # the original error is what the caller needs; log this one
            log.error("could not restore OPA's previous modules: %s", _describe(e))

    def _verify(self) -> None:
        """OPA serves these modules and this data, and a probe decision is a well-formed deny."""
        served = self._served_policies()
        errors: list[dict[str, str]] = []
        for rel, text in sorted(self._source.policy_modules.items()):
            if self.upload:
                ok = served.get(POLICY_ID_PREFIX + rel) == text
            else:
                ok = text in served.values()
            if not ok:
                errors.append({"field": rel, "message": "OPA does not serve this module as it is on disk"})
        for path, value in _data_documents(self._source):
            if self._served_data(path) != value:
                where = "data." + ".".join(path)
                errors.append({"field": where, "message": "OPA does not serve this data as it is on disk"})
        if not errors:
            # The load timeout, not the decision one: the first query may compile the policy in OPA.
            probe = self._decide({}, self._admin, max(self.timeout, LOAD_TIMEOUT))
            if probe.allowed or probe.engine_failure:
                errors.append({"field": ENTRYPOINT, "message": f"probe decision failed: {probe.codes}"})
        if errors:
            raise OpaLoadError(
                f"OPA at {self.opa_url} does not serve revision {self.revision[:19]}: "
                f"{errors[0]['field']}: {errors[0]['message']}",
                errors=errors,
            )

    def _served_policies(self) -> dict[str, str]:
        """Policy id -> Rego text of every module OPA holds."""
        served: dict[str, str] = {}
        for pid in self._admin.get_policies_list():
            raw = self._admin.get_policy(pid).get("result", {}).get("raw")
            if isinstance(raw, str):
                served[str(pid)] = raw
        return served

    def _served_data(self, path: tuple[str, ...]) -> Any:
        """The document at ``path`` in OPA, or ``_ABSENT``."""
        try:
            return self._admin.get_data("/".join(path))["result"]
        except PolicyNotFoundError:
            return _ABSENT


_RULE_HEAD = re.compile(r"^(?:default\s+)?([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\.)", re.MULTILINE)
_PACKAGE = re.compile(r"^package\s+([A-Za-z0-9_.]+)", re.MULTILINE)
_KEYWORDS = frozenset({"package", "import", "default"})


def upload_order(modules: dict[str, str]) -> list[str]:
    """The module ids in an order OPA can compile one by one: a module after those of its package that
    define a rule it uses. Rule heads start a line; uses are calls, and names outside comments and
    strings the module does not bind itself. Ties (and a cycle, which no order can upload) go by id."""
    code = {pid: _code_only(text) for pid, text in modules.items()}
    package = {pid: (m.group(1) if (m := _PACKAGE.search(text)) else "") for pid, text in code.items()}
    defines = {pid: {n for n in _RULE_HEAD.findall(text) if n not in _KEYWORDS} for pid, text in code.items()}
    needs: dict[str, set[str]] = {}
    for pid, text in code.items():
        # A name the module binds as a local variable (indented ``x :=``) is not a use of a rule.
        local = set(re.findall(r"^[ \t]+([A-Za-z_][A-Za-z0-9_]*)\s*:=", text, re.MULTILINE))
        used = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", text))
        used |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)) - local
        needs[pid] = {
            other
            for other in modules
            if other != pid and package[other] == package[pid] and (defines[other] - defines[pid]) & used
        }
    order: list[str] = []
    pending = sorted(modules)
    while pending:
        ready = [pid for pid in pending if not (needs[pid] - set(order))] or pending[:1]
        order.append(ready[0])
        pending.remove(ready[0])
    return order


_upload_lock = threading.Lock()
_ABSENT = object()


class _Snapshot:
    def __init__(self, policies: dict[str, str], data: dict[tuple[str, ...], Any]) -> None:
        self.policies = policies
        self.data = data


def _client(opa_url: str, timeout: float) -> OpaClient:
    parts = urlsplit(opa_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise OpaLoadError(
            f"not an OPA URL: {opa_url!r}", errors=[{"field": "opa_url", "message": "http(s)://host:port"}]
        )
    if parts.path not in {"", "/"}:
        raise OpaLoadError(
            f"an OPA URL has no path: {opa_url!r}", errors=[{"field": "opa_url", "message": "no path"}]
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # One retry covers a refused connect during a sidecar restart; POSTs are never retried after sending.
    return OpaClient(host=parts.hostname, port=port, ssl=parts.scheme == "https", timeout=timeout, retries=1)


def _data_documents(source: PolicySource) -> Iterator[tuple[tuple[str, ...], Any]]:
    """``(path, value)`` for each ``data.json`` directory, outermost only (it holds the ones below)."""
    prefixes = sorted(
        {tuple(rel.split("/")[:-1]) for rel in source.files if rel.rsplit("/", 1)[-1] == DATA_FILE}
    )
    kept: list[tuple[str, ...]] = []
    for prefix in prefixes:
        if not any(prefix[: len(k)] == k for k in kept):
            kept.append(prefix)
    for prefix in kept:
        if not prefix:
            # A data.json at the top: one document per top-level key (PUT /v1/data would replace all).
            for key, value in sorted(source.data.items()):
                yield (key,), value
            continue
        node: Any = source.data
        for key in prefix:
            node = node[key]
        yield prefix, node


def _describe(e: BaseException) -> str:
    message = getattr(e, "message", None)
    text = f"{message}" if isinstance(message, str) else str(e)
    return f"{type(e).__name__}: {text}"[:500]


def _opa_errors(e: BaseException) -> list[dict[str, str]]:
    """OPA's compile errors (``{code, message, location}``) as ``{field, message}``."""
    found = getattr(e, "errors", None)
    out: list[dict[str, str]] = []
    if isinstance(found, list):
        for err in found:
            if not isinstance(err, dict):
                continue
            location = err.get("location")
            loc: dict[str, Any] = location if isinstance(location, dict) else {}
            where = ":".join(str(loc[k]) for k in ("file", "row", "col") if k in loc) or "opa"
            out.append({"field": where, "message": str(err.get("message", ""))})
    return out or [{"field": "opa", "message": _describe(e)}]


def _action(policy_input: Any) -> str:
    return str(policy_input.get("action")) if isinstance(policy_input, dict) else "?"
