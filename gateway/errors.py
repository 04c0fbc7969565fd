"""Domain errors: a stable code and one readable line, nothing about HTTP or the CLI.

The HTTP API maps the class to a status (gateway.api.app.STATUS), the CLI prints the line
and exits 1. Subclasses say what kind of refusal it is."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class BadInput(DomainError):
    code = "bad_input"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Unavailable(DomainError):
    """A dependency (the broker's accounts, the platform) did not do its part."""

    code = "unavailable"
