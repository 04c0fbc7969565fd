"""The SQL the install (gateway/deploy/install.py, `--postgres`) runs through `psql` as the local
cluster's superuser to find out whether the store's role and database exist yet. SQL text lives
behind the store boundary (tests/gateway/test_gw_boundary.py); the install only runs it."""

from __future__ import annotations


def _literal(text: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings: only quotes are doubled)."""
    return "'" + text.replace("'", "''") + "'"


def role_exists_query(role: str) -> str:
    """Prints 1 when the role exists (`psql -tAc`)."""
    return "SELECT 1 FROM pg_roles WHERE rolname = %s" % _literal(role)


def database_exists_query(name: str) -> str:
    """Prints 1 when the database exists (`psql -tAc`)."""
    return "SELECT 1 FROM pg_database WHERE datname = %s" % _literal(name)
