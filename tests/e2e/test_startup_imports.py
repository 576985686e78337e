"""The command line starts without the web stack: ``gateway --help`` and light commands stay fast.

The packages that re-export (``audit``, ``connectors``, ``gateway.auth``, ``gateway.policy``) load a
name's module on its first use (PEP 562); these tests keep that true and every public name reachable.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sqlalchemy", "httpx", "aiohttp", "opa_client", "regopy", "fastapi", "uvicorn", "pydantic", "limits")
"""What ``import gateway.cli`` must not load: each costs 0.1-1 s, and ``--help`` needs none of them."""


def _modules_after(statement: str) -> set[str]:
    # Modules loaded; a None entry is an import blocked on purpose (httpx._main, see gateway/__init__).
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(k for k, v in sys.modules.items() if v)))"
    argv = [sys.executable, "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".", 1)[0] for m in modules}


def test_the_command_line_loads_no_heavy_library_before_a_command_runs() -> None:
    loaded = _top(_modules_after("import gateway.cli"))
    assert sorted(set(HEAVY) & loaded) == []


def test_the_settings_and_connector_names_do_not_load_the_http_stack() -> None:
    loaded = _modules_after("import gateway.settings, connectors.base, audit, gateway.policy")
    http_stack = {"httpx", "aiohttp", "opa_client", "http_message_signatures", "authlib"}
    assert sorted(http_stack & _top(loaded)) == []
    assert "sqlalchemy" not in _top(loaded)


def test_httpx_in_a_gateway_process_does_not_load_its_command_line_client() -> None:
    # gateway/__init__ keeps httpx._main (rich, pygments, click) out; httpx itself works as ever.
    loaded = _top(_modules_after("import gateway, httpx\nassert httpx.Client and httpx.post"))
    assert sorted({"rich", "pygments", "click"} & loaded) == []


@pytest.mark.parametrize("package", ["audit", "connectors", "gateway.auth", "gateway.policy"])
def test_every_public_name_of_a_lazy_package_resolves_to_its_module(package: str) -> None:
    module = importlib.import_module(package)
    where: dict[str, str] = module._WHERE
    assert sorted(where) == sorted(module.__all__)
    for name, defined_in in where.items():
        home, _, attr = defined_in.partition(":")
        assert getattr(module, name) is getattr(importlib.import_module(home), attr or name), name
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = module.no_such_name


def test_the_head_read_from_the_migration_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    from gateway.migrations import alembic_config, script_head

    assert script_head() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_a_database_at_head_starts_without_alembic_and_one_behind_is_migrated(tmp_path: Path) -> None:
    from alembic import command

    from gateway.db import make_engine
    from gateway.migrations import alembic_config, database_revision, script_head, upgrade

    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = make_engine(url)
    upgrade(engine)
    assert database_revision(engine) == script_head()
    statement = "from gateway.db import make_engine\nfrom gateway.migrations import upgrade\n"
    statement += f"upgrade(make_engine({url!r}))"
    assert "alembic" not in _top(_modules_after(statement))

    command.downgrade(alembic_config(engine), "-1")
    behind = database_revision(engine)
    assert behind is not None and behind != script_head()
    upgrade(engine)
    assert database_revision(engine) == script_head()
    engine.dispose()
