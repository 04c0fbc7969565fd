"""Web console accounts and sessions (migration 0300)."""

from __future__ import annotations

from typing import Any

from gateway.store.rows import ConsoleAccount, ConsoleSession
from gateway.store.sql.conn import Conn

_ACCOUNT_COLS = ("name, display_name, role, halls, depts, password_hash, must_change, disabled,"
                 " failed_logins, locked_until_ms, created_ms, password_ms, last_login_ms")
_SESSION_COLS = "token_hash, account, csrf, created_ms, last_seen_ms, expires_ms, remote"


def _split(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x)


def _account(r: tuple[Any, ...]) -> ConsoleAccount:
    return ConsoleAccount(r[0], r[1], r[2], _split(r[3]), _split(r[4]), r[5], bool(r[6]), bool(r[7]),
                          int(r[8]), None if r[9] is None else int(r[9]), int(r[10]), int(r[11]),
                          None if r[12] is None else int(r[12]))


def _session(r: tuple[Any, ...]) -> ConsoleSession:
    return ConsoleSession(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), r[6])


class SqlConsoleAccounts:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def add(self, a: ConsoleAccount) -> None:
        """IntegrityError if the name is taken."""
        self.c.execute(
            "INSERT INTO console_accounts (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            % _ACCOUNT_COLS,
            (a.name, a.display_name, a.role, ",".join(a.halls), ",".join(a.depts), a.password_hash,
             int(a.must_change), int(a.disabled), a.failed_logins, a.locked_until_ms, a.created_ms,
             a.password_ms, a.last_login_ms))

    def get(self, name: str) -> ConsoleAccount | None:
        r = self.c.one("SELECT %s FROM console_accounts WHERE name = ?" % _ACCOUNT_COLS, (name,))
        return None if r is None else _account(r)

    def listing(self) -> list[ConsoleAccount]:
        return [_account(r) for r in self.c.rows(
            "SELECT %s FROM console_accounts ORDER BY name" % _ACCOUNT_COLS)]

    def set_password(self, name: str, password_hash: str, must_change: bool, at_ms: int) -> bool:
        """A new password also ends any lock-out."""
        return self.c.execute(
            "UPDATE console_accounts SET password_hash = ?, must_change = ?, password_ms = ?,"
            " failed_logins = 0, locked_until_ms = NULL WHERE name = ?",
            (password_hash, int(must_change), at_ms, name)) == 1

    def set_disabled(self, name: str, disabled: bool) -> bool:
        return self.c.execute("UPDATE console_accounts SET disabled = ? WHERE name = ?",
                              (int(disabled), name)) == 1

    def set_profile(self, name: str, role: str, halls: tuple[str, ...], depts: tuple[str, ...],
                    display_name: str) -> bool:
        return self.c.execute(
            "UPDATE console_accounts SET role = ?, halls = ?, depts = ?, display_name = ? WHERE name = ?",
            (role, ",".join(halls), ",".join(depts), display_name, name)) == 1

    def note_failure(self, name: str, locked_until_ms: int | None) -> int:
        """Count one more failed login (and lock until locked_until_ms when given); the new count."""
        self.c.execute(
            "UPDATE console_accounts SET failed_logins = failed_logins + 1,"
            " locked_until_ms = COALESCE(?, locked_until_ms) WHERE name = ?", (locked_until_ms, name))
        v = self.c.scalar("SELECT failed_logins FROM console_accounts WHERE name = ?", (name,))
        return 0 if v is None else int(v)

    def note_login(self, name: str, at_ms: int) -> None:
        self.c.execute("UPDATE console_accounts SET failed_logins = 0, locked_until_ms = NULL,"
                       " last_login_ms = ? WHERE name = ?", (at_ms, name))


class SqlConsoleSessions:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def add(self, s: ConsoleSession) -> None:
        self.c.execute("INSERT INTO console_sessions (%s) VALUES (?, ?, ?, ?, ?, ?, ?)" % _SESSION_COLS,
                       (s.token_hash, s.account, s.csrf, s.created_ms, s.last_seen_ms, s.expires_ms,
                        s.remote))

    def get(self, token_hash: str) -> ConsoleSession | None:
        r = self.c.one("SELECT %s FROM console_sessions WHERE token_hash = ?" % _SESSION_COLS, (token_hash,))
        return None if r is None else _session(r)

    def touch(self, token_hash: str, at_ms: int) -> None:
        self.c.execute("UPDATE console_sessions SET last_seen_ms = %s(last_seen_ms, ?) WHERE token_hash = ?"
                       % self.c.greatest, (at_ms, token_hash))

    def delete(self, token_hash: str) -> bool:
        return self.c.execute("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,)) == 1

    def delete_for(self, account: str) -> int:
        return self.c.execute("DELETE FROM console_sessions WHERE account = ?", (account,))

    def prune(self, now_ms: int, idle_before_ms: int) -> int:
        """Drop sessions past their absolute expiry or idle since before idle_before_ms."""
        return self.c.execute("DELETE FROM console_sessions WHERE expires_ms <= ? OR last_seen_ms < ?",
                              (now_ms, idle_before_ms))
