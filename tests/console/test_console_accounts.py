"""The accounts and sessions repository (migration 0300) and the service over it
(gateway/accounts.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from harness.store import query

from gateway import accounts
from gateway.errors import BadInput, Conflict, NotFound
from gateway.store import open_store
from gateway.store.errors import IntegrityError
from gateway.store.rows import ConsoleAccount, ConsoleSession

RULES = accounts.LoginRules(idle_s=60, max_age_s=600, max_failures=3, lockout_s=120)
PW = "Correct-horse-1"


class Clock:
    def __init__(self, t: int = 1_800_000_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


async def test_repository_round_trip(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        a = ConsoleAccount("amy", "艾米", "liaison", ("hall-1",), ("D1", "D2"), "$argon2id$x", False, False,
                           0,
                           None, 1, 1, None)
        await store.write(lambda tx: tx.accounts.add(a))
        with pytest.raises(IntegrityError):
            await store.write(lambda tx: tx.accounts.add(a))
        got = await store.read(lambda tx: tx.accounts.get("amy"))
        assert got == a and "password_hash" not in got.public()
        assert await store.read(lambda tx: tx.accounts.get("nobody")) is None
        assert await store.write(lambda tx: tx.accounts.note_failure("amy", None)) == 1
        assert await store.write(lambda tx: tx.accounts.note_failure("amy", 99)) == 2
        got = await store.read(lambda tx: tx.accounts.get("amy"))
        assert (got.failed_logins, got.locked_until_ms) == (2, 99)
        await store.write(lambda tx: tx.accounts.note_login("amy", 50))
        got = await store.read(lambda tx: tx.accounts.get("amy"))
        assert (got.failed_logins, got.locked_until_ms, got.last_login_ms) == (0, None, 50)
        await store.write(lambda tx: tx.accounts.note_failure("amy", 77))
        assert await store.write(lambda tx: tx.accounts.set_password("amy", "$argon2id$y", True, 60))
        got = await store.read(lambda tx: tx.accounts.get("amy"))
        assert (got.password_hash, got.must_change, got.password_ms, got.locked_until_ms) == (
            "$argon2id$y", True, 60, None)
        assert await store.write(lambda tx: tx.accounts.set_profile("amy", "admin", (), ("D3",), "Amy"))
        assert await store.write(lambda tx: tx.accounts.set_disabled("amy", True))
        got = await store.read(lambda tx: tx.accounts.get("amy"))
        assert (got.role, got.halls, got.depts, got.display_name, got.disabled) == (
            "admin", (), ("D3",), "Amy",
                                                                                    True)
        assert not await store.write(lambda tx: tx.accounts.set_disabled("nobody", True))
        assert [x.name for x in await store.read(lambda tx: tx.accounts.listing())] == ["amy"]

        s1 = ConsoleSession("h1", "amy", "c1", 10, 10, 1000, "127.0.0.1")
        s2 = ConsoleSession("h2", "amy", "c2", 10, 10, 20, "")
        await store.write(lambda tx: (tx.sessions.add(s1), tx.sessions.add(s2)))
        await store.write(lambda tx: tx.sessions.touch("h1", 500))
        await store.write(lambda tx: tx.sessions.touch("h1", 400))     # never goes back
        assert (await store.read(lambda tx: tx.sessions.get("h1"))).last_seen_ms == 500
        # h2 is past its absolute expiry at 30; h1 was seen at 500, within the idle limit.
        assert await store.write(lambda tx: tx.sessions.prune(30, 100)) == 1
        assert await store.read(lambda tx: tx.sessions.get("h2")) is None
        assert await store.write(lambda tx: tx.sessions.delete_for("amy")) == 1
        assert not await store.write(lambda tx: tx.sessions.delete("h1"))
        with pytest.raises(IntegrityError):      # a session needs an account
            await store.write(lambda tx: tx.sessions.add(ConsoleSession("h3", "ghost", "c", 1, 1, 2, "")))
    finally:
        await store.close()


async def test_passwords_are_argon2id_and_sessions_are_stored_as_hashes(store_url: str) -> None:
    store = await open_store(store_url)
    clock = Clock()
    try:
        await accounts.add_account(store, "boss", PW, "admin", "cli:root", display_name="王主任")
        stored = query(store_url, "SELECT password_hash FROM console_accounts WHERE name = 'boss'")[0][0]
        assert stored.startswith("$argon2id$") and PW not in stored
        opened = await accounts.login(store, "boss", PW, "10.0.0.5", RULES, clock)
        dump = repr(query(store_url, "SELECT * FROM console_sessions"))
        assert opened.token not in dump
        assert hashlib.sha256(opened.token.encode()).hexdigest() in dump
        found = await accounts.session_for(store, opened.token, RULES, clock)
        assert found is not None and found[1].name == "boss" and found[0].csrf == opened.session.csrf
        assert await accounts.session_for(store, opened.token + "x", RULES, clock) is None
        actions = query(store_url, "SELECT actor, action FROM audit_log ORDER BY id")
        assert actions == [("cli:root", "account.add"), ("console:boss", "console.login")]
    finally:
        await store.close()


async def test_bad_input_is_refused_with_a_clear_error(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        for name, pw, role, code in (("a b", PW, "admin", "bad_account_name"), ("x" * 65, PW, "admin",
                                     "bad_account_name"), ("ok", "short", "admin", "weak_password"),
                                     ("samepass12", "samepass12", "admin", "weak_password"),
                                     ("ok", "aaaaaaaaaaaa", "admin", "weak_password"),
                                     ("ok", PW + "\n", "admin", "bad_password"),
                                     ("ok", PW, "root", "bad_role")):
            with pytest.raises(BadInput) as e:
                await accounts.add_account(store, name, pw, role, "test")
            assert e.value.code == code
        with pytest.raises(BadInput):
            await accounts.add_account(store, "ok", PW, "admin", "test", depts=["a,b"])
        await accounts.add_account(store, "ok", PW, "admin", "test")
        with pytest.raises(Conflict):
            await accounts.add_account(store, "ok", PW, "admin", "test")
        with pytest.raises(NotFound):
            await accounts.set_password(store, "nobody", PW, "test")
        assert [a.name for a in await accounts.list_accounts(store)] == ["ok"]
    finally:
        await store.close()


async def test_failed_logins_lock_the_account_then_it_opens_again(store_url: str) -> None:
    store = await open_store(store_url)
    clock = Clock()
    try:
        await accounts.add_account(store, "amy", PW, "readonly", "test")
        for _ in range(RULES.max_failures):
            with pytest.raises(accounts.LoginRefused) as e:
                await accounts.login(store, "amy", "wrong-password", "r", RULES, clock)
            assert e.value.code == "bad_credentials"
        with pytest.raises(accounts.LoginRefused) as e:
            await accounts.login(store, "amy", PW, "r", RULES, clock)   # right password, but locked
        assert e.value.code == "locked" and "锁定" in str(e.value)
        clock.t += RULES.lockout_s * 1000 + 1
        await accounts.login(store, "amy", PW, "r", RULES, clock)
        # An unknown name gets the same answer as a wrong password.
        with pytest.raises(accounts.LoginRefused) as e:
            await accounts.login(store, "ghost", PW, "r", RULES, clock)
        assert e.value.code == "bad_credentials" and str(e.value) == "账号或密码错误"
        actions = [r[0] for r in query(store_url, "SELECT action FROM audit_log WHERE actor = 'console:amy'"
                                                  " ORDER BY id")]
        assert actions == ["console.login_failed", "console.login_failed", "console.lockout", "console.login"]
    finally:
        await store.close()


async def test_sessions_end_when_idle_too_long_or_too_old(store_url: str) -> None:
    store = await open_store(store_url)
    clock = Clock()
    try:
        await accounts.add_account(store, "amy", PW, "readonly", "test")
        o = await accounts.login(store, "amy", PW, "r", RULES, clock)
        # Requests every 50 s keep it alive (idle limit 60 s) ...
        for _ in range(5):
            clock.t += 50_000
            assert await accounts.session_for(store, o.token, RULES, clock) is not None
        # ... until its absolute age (600 s) is reached, whatever.
        clock.t = o.session.created_ms + RULES.max_age_s * 1000
        assert await accounts.session_for(store, o.token, RULES, clock) is None
        o = await accounts.login(store, "amy", PW, "r", RULES, clock)
        clock.t += RULES.idle_s * 1000
        assert await accounts.session_for(store, o.token, RULES, clock) is None
        assert query(store_url, "SELECT count(*) FROM console_sessions")[0][0] == 0
    finally:
        await store.close()


async def test_password_change_disable_and_role_change_end_sessions(store_url: str) -> None:
    store = await open_store(store_url)
    clock = Clock()
    try:
        await accounts.add_account(store, "amy", PW, "readonly", "test")
        a = await accounts.login(store, "amy", PW, "r", RULES, clock)
        b = await accounts.login(store, "amy", PW, "r", RULES, clock)
        # Her own change keeps the browser she made it in, ends the other one.
        await accounts.change_own_password(store, "amy", PW, "New-password-2", a.token)
        assert await accounts.session_for(store, a.token, RULES, clock) is not None
        assert await accounts.session_for(store, b.token, RULES, clock) is None
        with pytest.raises(BadInput):
            await accounts.change_own_password(store, "amy", "not-it-at-all", "Other-password-3", a.token)
        # An admin's reset ends every session and can require a new password at next login.
        ended = await accounts.set_password(store, "amy", "Reset-password-4", "cli:root", must_change=True)
        assert ended == 1
        c = await accounts.login(store, "amy", "Reset-password-4", "r", RULES, clock)
        assert c.account.must_change
        assert await accounts.set_profile(store, "amy", "cli:root", role="liaison", depts=["D1"]) is not None
        assert await accounts.session_for(store, c.token, RULES, clock) is None
        d = await accounts.login(store, "amy", "Reset-password-4", "r", RULES, clock)
        assert await accounts.set_disabled(store, "amy", True, "cli:root") == 1
        assert await accounts.session_for(store, d.token, RULES, clock) is None
        with pytest.raises(accounts.LoginRefused) as e:
            await accounts.login(store, "amy", "Reset-password-4", "r", RULES, clock)
        assert e.value.code == "disabled"
        await accounts.set_disabled(store, "amy", False, "cli:root")
        await accounts.login(store, "amy", "Reset-password-4", "r", RULES, clock)
        actions = [r[0] for r in query(store_url, "SELECT action FROM audit_log WHERE action LIKE 'account.%'"
                                                  " ORDER BY id")]
        assert actions == ["account.add", "account.passwd", "account.passwd", "account.profile",
                           "account.disable", "account.enable"]
    finally:
        await store.close()


async def test_audit_page_is_newest_first_with_filters(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        def fill(tx: object) -> None:
            for i in range(30):
                tx.audit.add(i, "cli:a" if i % 3 else "console:b", "x.one" if i % 2 else "x.two", {"i": i})  # type: ignore[attr-defined]
        await store.write(fill)
        page = await store.read(lambda tx: tx.audit.page(None, 10))
        assert [r["at_ms"] for r in page] == list(range(29, 19, -1))
        page2 = await store.read(lambda tx: tx.audit.page(page[-1]["id"], 10))
        assert [r["at_ms"] for r in page2] == list(range(19, 9, -1))
        mine = await store.read(lambda tx: tx.audit.page(None, 100, "console:b", "x.two"))
        assert [r["at_ms"] for r in mine] == [24, 18, 12, 6, 0]
    finally:
        await store.close()


def test_migration_0300_exists_on_both_backends() -> None:
    root = Path(__file__).resolve().parents[2] / "gateway" / "store" / "migrations"
    assert (root / "sqlite" / "0300_console_accounts.sql").exists()
    assert (root / "postgres" / "0300_console_accounts.sql").exists()
