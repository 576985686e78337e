"""Veilig Delen: a purpose-bound gateway for case information on domestic violence and child abuse."""

import sys
from pathlib import Path

# httpx imports its command-line client (``httpx._main``: rich, pygments, click) whenever they are
# installed, as they are here for typer and uvicorn: ~0.15 s of CPU in every gateway, sim-agency and
# ``gateway token`` process, none of which runs that client. A ``None`` entry makes that import fail,
# which httpx handles (its ``httpx.main`` then says the CLI is unavailable); a real one is left alone.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

__version__ = "0.1.0"
API_VERSION = "1.0.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Where ``policies/`` and ``var/`` are found by default (also ``gateway.settings.REPO_ROOT``); here so
that the command line can name them without loading the settings and pydantic."""
