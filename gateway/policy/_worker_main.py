"""The policy worker process: compile one revision, then answer one input at a time.

Run as a script (``python -I <this file>``) by `gateway.policy._workers`, never imported by the gateway:
it imports only the standard library and regopy, so a replacement for a killed worker starts in a
fraction of the time the gateway's packages would take. The parent already compiled and probed the
same source, so errors here are the parent's to report.

Protocol over the inherited socket (``multiprocessing.connection`` framing): the first message is the
source as JSON ``{"entrypoint", "modules", "data"}``; the worker answers ``ready`` (or ``!`` and an
error). Then each message is one input as UTF-8 JSON text and each answer a tag byte and text: ``o``
and the output, or ``e`` and regopy's error.
"""

from __future__ import annotations

import json
import os
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

PARENT_CHECK_SECONDS = 1.0


def main() -> None:
    """Serve until the parent closes the connection; exit when the parent is gone."""
    fd = int(os.environ.pop("VEILIGDELEN_POLICY_WORKER_FD"))
    parent = int(os.environ.pop("VEILIGDELEN_POLICY_PARENT"))
    conn = Connection(fd)
    # The parent kills a stuck worker; if the parent itself dies, nobody would, so the worker watches.
    # regopy (ctypes) releases the GIL while it evaluates, so this runs during a stuck evaluation too.
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import regopy

    try:
        spec = json.loads(conn.recv_bytes())
        interp, bundle, entrypoint = _compile(regopy, spec)
    except EOFError:
        return
    except Exception as e:  # whatever fails, the parent hears it and refuses the worker
        conn.send_bytes(b"!" + f"{type(e).__name__}: {e}"[:2000].encode())
        return
    conn.send_bytes(b"ready")
    while True:
        try:
            term = conn.recv_bytes().decode()
        except (EOFError, OSError):
            return  # the parent closed the connection: the engine is closed or gone
        try:
            interp.set_input_term(term)
            output = interp.query_bundle_entrypoint(bundle, entrypoint)
            reply = (b"o" if output.ok() else b"e") + str(output).encode()
        except Exception as e:  # never die on one input: the parent maps it to engine_error
            reply = b"e" + f"{type(e).__name__}: {e}".encode()
        conn.send_bytes(reply)


def _compile(regopy: Any, spec: dict[str, Any]) -> tuple[Any, Any, str]:
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE
    for name, text in sorted(spec["modules"].items()):
        interp.add_module(name, text)
    interp.add_data_json(json.dumps(spec["data"], ensure_ascii=False))
    bundle = interp.build(None, [spec["entrypoint"]])
    if not bundle.ok():
        raise RuntimeError("the bundle did not build")
    return interp, bundle, spec["entrypoint"]


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(PARENT_CHECK_SECONDS)


if __name__ == "__main__":
    main()
