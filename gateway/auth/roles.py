"""Agencies, client roles and the OAuth2 scopes each role may hold (DESIGN.md section 4)."""

from __future__ import annotations

from typing import Final

from connectors import AGENCIES

__all__ = ["AGENCIES", "ROLES", "ROLE_SCOPES", "SCOPES", "SCOPE_DESCRIPTIONS"]

#: Scope each role receives; a token never carries a scope outside its role's set.
ROLE_SCOPES: Final[dict[str, frozenset[str]]] = {
    "agency_system": frozenset({"exchange"}),
    "privacy_officer": frozenset({"audit"}),
    "auditor": frozenset({"audit:all"}),
    "policy_author": frozenset({"policy"}),
}

#: Role identifiers (contract values).
ROLES: Final = frozenset(ROLE_SCOPES)

#: Every scope the gateway knows, with a line for the OpenAPI document.
SCOPE_DESCRIPTIONS: Final[dict[str, str]] = {
    "exchange": "Open and move cases, share, request and read the inbox (agency systems)",
    "audit": "Read audit entries that name the caller's own agency (privacy officers)",
    "audit:all": "Read the whole audit trail (auditors)",
    "policy": "Read and reload the sharing policies (policy authors)",
}

SCOPES: Final = frozenset(SCOPE_DESCRIPTIONS)
