"""Veilig Delen: a purpose-bound gateway for case information on domestic violence and child abuse."""

__version__ = "0.1.0"
API_VERSION = "1.0.0"
