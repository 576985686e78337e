"""Implementation of the audit log; import from ``audit``, not from here."""
