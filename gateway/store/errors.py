"""Errors the store raises, whatever the backend: domain code catches these, never a
driver's exception types."""

from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked (I/O, a lost connection, a bad migration)."""


class IntegrityError(StoreError):
    """A constraint refused the write (unique key, foreign key, a bindings trigger)."""


class StoreUnusable(StoreError):
    """The store is not ours, is damaged, or cannot be opened: one line says which."""


class MigrationError(StoreError):
    """A migration file is misnamed, duplicated, or failed to apply."""
