"""STAND-IN for OPA: not the real OPA server. A small HTTP server that speaks the part of OPA's REST API
the gateway's `OpaEngine` and opa-python-client use, so the ``opa`` engine can be tested over real HTTP.

Why it exists: the real OPA binary cannot be installed on the machines this project is built and tested
on (no Go toolchain, no container engine, and no package registry that ships the binary). ``deploy/``
runs the real OPA; this module is for tests and local experiments only, and says so when it starts.

What it speaks (OPA REST API v1, the subset):

- ``GET /health``
- ``GET /v1/policies``, ``GET|PUT|DELETE /v1/policies/{id}`` (``PUT`` takes the Rego text; a module that
  does not compile is refused with 400 and the previous modules stay, as in OPA)
- ``GET|PUT|DELETE /v1/data/{path}``, ``POST /v1/data/{path}`` with ``{"input": ...}``: ``{"result": ...}``,
  or ``{}`` when the document is undefined, as OPA answers

How it evaluates: by default with regopy (the interpreter the embedded engine uses), a fresh interpreter
built from the uploaded modules and data after every change. So agreement between the embedded engine and
`OpaEngine` on this stand-in proves the adapter and the wire protocol, not OPA's Rego semantics. With
``--evaluator opa`` it evaluates with OPA's own Rego engine (the Go library, loaded from the optional
``opa-golib-python-bindings`` package): the real OPA evaluator behind a stand-in HTTP front.

Run: ``python -m standins.opa --policy-dir policies --port 8181``. With
``--enable-fault-injection`` it also serves ``PUT /_standin/faults`` so tests can make decisions slow,
undefined, malformed or failing; never enable that outside tests.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import importlib
import json
import logging
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import regopy
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.policy._embedded import input_term, new_interpreter
from gateway.policy._source import TEST_SUFFIX, read_policy, refused_constructs, rego_errors

log = logging.getLogger("standins.opa")

STANDIN_BANNER = "STAND-IN for OPA: not the real OPA server"
Evaluator = Literal["regopy", "opa"]
_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StandInCompileError(Exception):
    """The modules do not compile; ``errors`` in OPA's shape (``code``, ``message``, ``location``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "compile error")
        self.errors = errors


class StandInEvalError(Exception):
    """Evaluation failed (a conflict, a builtin error): OPA answers 500 ``internal_error``."""


class _Program(Protocol):
    """One set of modules and data, compiled: evaluates a document at a path, with or without input."""

    def evaluate(self, path: tuple[str, ...], policy_input: Any, has_input: bool) -> tuple[bool, Any]:
        """``(defined, value)``; raises `StandInEvalError`."""
        ...


class _RegopyProgram:
    """regopy: one interpreter holding the modules and data, a bundle per queried path, one lock."""

    def __init__(self, modules: dict[str, str], data: dict[str, Any]) -> None:
        refused = refused_constructs(modules)
        if refused:
            raise StandInCompileError(
                [
                    {"code": "rego_compile_error", "message": e["message"], "location": {"file": e["field"]}}
                    for e in refused
                ]
            )
        self._modules = modules
        self._data_json = json.dumps(data, ensure_ascii=False)
        self._interp = self._fresh()
        try:
            # Any query compiles the whole program: this is the compile check of a PUT.
            self._interp.query("true")
        except regopy.RegoError as e:
            raise StandInCompileError(_opa_errors(str(e), modules)) from e
        self._bundles: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _fresh(self) -> Any:
        interp = new_interpreter()
        try:
            for name, text in sorted(self._modules.items()):
                interp.add_module(name, text)
            interp.add_data_json(self._data_json)
        except regopy.RegoError as e:
            raise StandInCompileError(_opa_errors(str(e), self._modules)) from e
        return interp

    def evaluate(self, path: tuple[str, ...], policy_input: Any, has_input: bool) -> tuple[bool, Any]:
        """Query the bundle entrypoint ``a/b/c`` (built on first use); without input, a fresh interpreter."""
        try:
            term = input_term(policy_input) if has_input else None
        except (TypeError, ValueError) as e:
            raise StandInEvalError(f"input is not JSON: {e}") from e
        try:
            if term is None or not path:
                # regopy keeps the last input and has no way to unset it: a fresh interpreter has none.
                interp = self._fresh()
                if term is not None:
                    interp.set_input_term(term)
                output = interp.query("data" + "".join(f'["{p}"]' for p in path))
            else:
                entrypoint = "/".join(path)
                with self._lock:
                    bundle = self._bundles.get(entrypoint)
                    if bundle is None:
                        bundle = self._bundles[entrypoint] = self._interp.build(None, [entrypoint])
                    self._interp.set_input_term(term)
                    output = self._interp.query_bundle_entrypoint(bundle, entrypoint)
        except (regopy.RegoError, UnicodeError) as e:
            raise StandInEvalError(_first_message(str(e))) from e
        if not output.ok():
            raise StandInEvalError(_first_message(str(output)))
        text = str(output)
        if text.strip() == "undefined":
            return False, None
        try:
            expressions = json.loads(text)["expressions"]
        except (ValueError, KeyError, TypeError) as e:
            raise StandInEvalError(f"regopy gave output that is not JSON: {e}") from e
        return True, expressions[0]


class _OpaGoProgram:
    """OPA's own Rego engine (Go, via the optional opa-golib-python-bindings package)."""

    def __init__(self, modules: dict[str, str], data: dict[str, Any]) -> None:
        bindings = importlib.import_module("opa_bindings")
        self._undefined: type[Exception] = bindings.OpaUndefinedError
        self._error: type[Exception] = bindings.OpaError
        self._engine: Any = bindings.OpaEngine()
        try:
            for name, text in sorted(modules.items()):
                self._engine.add_policy(name, text)
            self._engine.add_data(data)
            # OPA compiles on first evaluation: evaluate once so a bad module is refused at PUT.
            self._engine.eval_query("true")
        except self._error as e:
            code = str(getattr(e, "code", "rego_compile_error"))
            raise StandInCompileError([{"code": code, "message": str(getattr(e, "message", e))}]) from e

    def evaluate(self, path: tuple[str, ...], policy_input: Any, has_input: bool) -> tuple[bool, Any]:
        """``eval_document`` on the dotted path; undefined is ``(False, None)``."""
        try:
            if not path:
                rows = self._engine.eval_query("x = data", policy_input if has_input else None)
                return True, rows[0]["x"]
            return True, self._engine.eval_document(".".join(path), policy_input if has_input else None)
        except self._undefined:
            return False, None
        except self._error as e:
            raise StandInEvalError(str(getattr(e, "message", e))) from e


def _build(evaluator: Evaluator, modules: dict[str, str], data: dict[str, Any]) -> _Program:
    if evaluator == "opa":
        return _OpaGoProgram(modules, data)
    return _RegopyProgram(modules, data)


def _opa_errors(text: str, modules: dict[str, str]) -> list[dict[str, Any]]:
    """regopy's error AST as OPA's compile errors: ``{code, message, location: {file, row, col}}``."""
    out: list[dict[str, Any]] = []
    for err in rego_errors(text, modules):
        file, _, rest = err["field"].partition(":")
        row, _, col = rest.partition(":")
        location: dict[str, Any] = {"file": file}
        if row.isdigit():
            location["row"] = int(row)
        if col.isdigit():
            location["col"] = int(col)
        out.append({"code": "rego_compile_error", "message": err["message"], "location": location})
    return out


def _first_message(text: str) -> str:
    errors = rego_errors(text, {})
    return errors[0]["message"][:500] if errors else "evaluation failed"


@dataclass
class Faults:
    """Test-only misbehaviour of decision queries (``POST /v1/data/...``)."""

    mode: Literal["none", "delay", "undefined", "garbage", "malformed", "error"] = "none"
    delay: float = 0.0


class StandInOpaServer:
    """The stand-in's store: policy modules by id and one data document, compiled after every change.

    Like OPA, a change that does not compile is refused and leaves the store as it was.
    """

    def __init__(self, evaluator: Evaluator = "regopy") -> None:
        self.evaluator: Evaluator = evaluator
        self._modules: dict[str, str] = {}
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._program: _Program | None = None
        self.faults = Faults()

    # -- policies ----------------------------------------------------------------------------------

    def policies(self) -> list[dict[str, Any]]:
        """Every module as ``{id, raw, ast}`` (the ast holds only the package path)."""
        with self._lock:
            return [_policy_doc(pid, raw) for pid, raw in sorted(self._modules.items())]

    def policy(self, policy_id: str) -> dict[str, Any] | None:
        """One module, or None."""
        with self._lock:
            raw = self._modules.get(policy_id)
        return None if raw is None else _policy_doc(policy_id, raw)

    def put_policy(self, policy_id: str, raw: str) -> None:
        """Add or replace a module; raises `StandInCompileError` and changes nothing if it fails."""
        with self._lock:
            modules = {**self._modules, policy_id: raw}
            program = _build(self.evaluator, modules, self._data)
            self._modules, self._program = modules, program

    def delete_policy(self, policy_id: str) -> bool:
        """Remove a module; False if there was none."""
        with self._lock:
            if policy_id not in self._modules:
                return False
            modules = {k: v for k, v in self._modules.items() if k != policy_id}
            self._program = _build(self.evaluator, modules, self._data) if modules else None
            self._modules = modules
            return True

    # -- data --------------------------------------------------------------------------------------

    def put_data(self, path: tuple[str, ...], value: Any) -> None:
        """Create or replace the document at ``path`` (the root must be an object)."""
        with self._lock:
            data = copy.deepcopy(self._data)
            if not path:
                if not isinstance(value, dict):
                    raise ValueError("the root document must be an object")
                data = value
            else:
                node = data
                for key in path[:-1]:
                    child = node.get(key)
                    if not isinstance(child, dict):
                        child = node[key] = {}
                    node = child
                node[path[-1]] = value
            program = _build(self.evaluator, self._modules, data) if self._modules else None
            self._data, self._program = data, program

    def delete_data(self, path: tuple[str, ...]) -> bool:
        """Remove the document at ``path``; False if there was none."""
        with self._lock:
            data = copy.deepcopy(self._data)
            node: Any = data
            for key in path[:-1]:
                node = node.get(key) if isinstance(node, dict) else None
            if not path or not isinstance(node, dict) or path[-1] not in node:
                return False
            del node[path[-1]]
            program = _build(self.evaluator, self._modules, data) if self._modules else None
            self._data, self._program = data, program
            return True

    def evaluate(
        self, path: tuple[str, ...], policy_input: Any = None, has_input: bool = False
    ) -> tuple[bool, Any]:
        """The document at ``path``: ``(defined, value)``."""
        with self._lock:
            program, data = self._program, self._data
        if program is None:
            # No modules: only base data.
            node: Any = data
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    return False, None
                node = node[key]
            return True, copy.deepcopy(node)
        return program.evaluate(path, policy_input, has_input)

    def load_directory(self, policy_dir: Path | str) -> list[str]:
        """Load a policy directory as ``opa run --server DIR`` would; ``*_test.rego`` are left out."""
        source = read_policy(policy_dir)
        skipped = sorted(p for p in source.modules if p.endswith(TEST_SUFFIX))
        with self._lock:
            modules = dict(source.policy_modules)
            program = _build(self.evaluator, modules, source.data)
            self._modules, self._data, self._program = modules, copy.deepcopy(source.data), program
        return skipped


_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)


def _policy_doc(policy_id: str, raw: str) -> dict[str, Any]:
    m = _PACKAGE.search(raw)
    parts = ["data", *(m.group(1).split(".") if m else [])]
    path = [{"type": "var" if i == 0 else "string", "value": p} for i, p in enumerate(parts)]
    return {"id": policy_id, "raw": raw, "ast": {"package": {"path": path}}}


def _error(status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def _data_path(raw: str) -> tuple[str, ...] | JSONResponse:
    parts = tuple(p for p in raw.split("/") if p)
    bad = [p for p in parts if not _SEGMENT.match(p)]
    if bad:
        return _error(
            400, "invalid_parameter", f"STAND-IN serves only identifier path segments, not {bad[0]!r}"
        )
    return parts


def create_app(server: StandInOpaServer, *, fault_injection: bool = False) -> FastAPI:
    """The HTTP front of ``server``: OPA's REST API paths and answers."""
    app = FastAPI(title="STAND-IN for OPA", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {}

    @app.get("/v1/policies")
    @app.get("/v1/policies/")  # opa-python-client lists with the trailing slash
    async def list_policies() -> dict[str, Any]:
        return {"result": server.policies()}

    @app.get("/v1/policies/{policy_id:path}")
    async def get_policy(policy_id: str) -> Response:
        doc = server.policy(policy_id)
        if doc is None:
            return _error(404, "resource_not_found", f'storage_not_found_error: policy id "{policy_id}"')
        return JSONResponse({"result": doc})

    @app.put("/v1/policies/{policy_id:path}")
    async def put_policy(policy_id: str, request: Request) -> Response:
        try:
            raw = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "invalid_parameter", "policy is not UTF-8")
        try:
            await run_in_threadpool(server.put_policy, policy_id, raw)
        except StandInCompileError as e:
            return _error(400, "invalid_parameter", "error(s) occurred while compiling module(s)", e.errors)
        return JSONResponse({})

    @app.delete("/v1/policies/{policy_id:path}")
    async def delete_policy(policy_id: str) -> Response:
        try:
            found = await run_in_threadpool(server.delete_policy, policy_id)
        except StandInCompileError as e:
            return _error(400, "invalid_parameter", "error(s) occurred while compiling module(s)", e.errors)
        if not found:
            return _error(404, "resource_not_found", f'storage_not_found_error: policy id "{policy_id}"')
        return JSONResponse({})

    @app.get("/v1/data")
    @app.get("/v1/data/{path:path}")
    async def get_data(path: str = "") -> Response:
        parts = _data_path(path)
        if isinstance(parts, JSONResponse):
            return parts
        return await _answer(parts, None, has_input=False, faulty=False)

    @app.post("/v1/data")
    @app.post("/v1/data/{path:path}")
    async def post_data(request: Request, path: str = "") -> Response:
        parts = _data_path(path)
        if isinstance(parts, JSONResponse):
            return parts
        body = await request.body()
        try:
            doc = json.loads(body) if body.strip() else {}
        except ValueError as e:
            return _error(400, "invalid_parameter", f"body contains malformed input document: {e}")
        if not isinstance(doc, dict):
            return _error(400, "invalid_parameter", "body must be an object")
        return await _answer(parts, doc.get("input"), has_input="input" in doc, faulty=True)

    @app.put("/v1/data/{path:path}")
    async def put_data(path: str, request: Request) -> Response:
        parts = _data_path(path)
        if isinstance(parts, JSONResponse):
            return parts
        try:
            value = json.loads(await request.body())
        except ValueError as e:
            return _error(400, "invalid_parameter", f"body contains malformed document: {e}")
        try:
            await run_in_threadpool(server.put_data, parts, value)
        except StandInCompileError as e:
            return _error(400, "invalid_parameter", "error(s) occurred while compiling module(s)", e.errors)
        except ValueError as e:
            return _error(400, "invalid_parameter", str(e))
        return Response(status_code=204)

    @app.delete("/v1/data/{path:path}")
    async def delete_data(path: str) -> Response:
        parts = _data_path(path)
        if isinstance(parts, JSONResponse):
            return parts
        if not await run_in_threadpool(server.delete_data, parts):
            return _error(404, "resource_not_found", f"storage_not_found_error: {'/' + '/'.join(parts)}")
        return Response(status_code=204)

    async def _answer(path: tuple[str, ...], policy_input: Any, *, has_input: bool, faulty: bool) -> Response:
        faults = server.faults
        if faulty and faults.mode != "none":
            if faults.delay:
                await asyncio.sleep(faults.delay)
            if faults.mode == "undefined":
                return JSONResponse({})
            if faults.mode == "garbage":
                return Response(b"<html>502 Bad Gateway</html>", media_type="text/html")
            if faults.mode == "malformed":
                return JSONResponse({"result": {"allowed": "yes"}})
            if faults.mode == "error":
                return _error(500, "internal_error", "STAND-IN fault injection: evaluation failed")
        try:
            defined, value = await run_in_threadpool(server.evaluate, path, policy_input, has_input)
        except StandInEvalError as e:
            return _error(500, "internal_error", str(e))
        return JSONResponse({"result": value} if defined else {})

    if fault_injection:

        @app.put("/_standin/faults")
        async def set_faults(request: Request) -> Response:
            doc = json.loads(await request.body())
            server.faults = Faults(mode=doc.get("mode", "none"), delay=float(doc.get("delay", 0.0)))
            log.warning("STAND-IN fault injection: %s", server.faults)
            return Response(status_code=204)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the stand-in until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m standins.opa", description=STANDIN_BANNER)
    parser.add_argument(
        "--policy-dir", type=Path, help="load this directory at start, like `opa run --server DIR`"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8181)
    parser.add_argument(
        "--evaluator",
        choices=["regopy", "opa"],
        default="regopy",
        help="regopy (default) or OPA's Go Rego engine (needs opa-golib-python-bindings)",
    )
    parser.add_argument(
        "--enable-fault-injection", action="store_true", help="tests only: PUT /_standin/faults"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log.warning("%s (evaluator: %s)", STANDIN_BANNER, args.evaluator)
    server = StandInOpaServer(evaluator=args.evaluator)
    if args.policy_dir:
        skipped = server.load_directory(args.policy_dir)
        log.info("loaded %s (left out %d test module(s))", args.policy_dir, len(skipped))
    app = create_app(server, fault_injection=args.enable_fault_injection)
    # A stop does not wait for a deliberately delayed (fault-injected) answer to finish.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
