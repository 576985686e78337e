"""Veilig Delen: a purpose-bound gateway for case information on domestic violence and child abuse."""

from pathlib import Path

__version__ = "0.1.0"
API_VERSION = "1.0.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Where ``policies/`` and ``var/`` are found by default (also ``gateway.settings.REPO_ROOT``); here so
that the command line can name them without loading the settings and pydantic."""
