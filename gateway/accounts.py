"""Web console accounts, roles, scopes, login and sessions: the service the console and
`hcp-gateway users` both call.

Roles (what each may do is `CAPABILITIES`, shown in docs/console.md):
  admin       hall admin (大厅管理员): devices, windows and clerks, pairing, invitations,
              health, uplink (re-queue, reconcile)
  liaison     department liaison (部门账号经办人): that department's 差评 work orders
  supervisor  district supervisor (区级监督员): every hall; bulletins, supervision findings,
              decisions on appeals
  readonly    read-only (只读)
A scope narrows an account to some halls and/or departments (empty: all of them).

Passwords are kept only as Argon2id hashes (argon2-cffi, its default RFC 9106 parameters);
hashing and checking run in a worker thread, never on the event loop. A session is a random
token in an HttpOnly cookie; the store keeps only its SHA-256 and the session's CSRF token.
A session ends after `idle_s` without a request or `max_age_s` after login, at logout, and
when its account's password is changed or the account is disabled. Failed logins are
counted per account: after `max_failures` in a row the account is locked for `lockout_s`
(the console also throttles per client address). Every change is audited with its actor.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.clock import now_ms
from gateway.errors import BadInput, Conflict, DomainError, NotFound
from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.errors import IntegrityError
from gateway.store.rows import ConsoleAccount, ConsoleSession

ROLES: dict[str, str] = {
    "admin": "大厅管理员",
    "liaison": "部门账号经办人",
    "supervisor": "区级监督员",
    "readonly": "只读",
}

# capability -> roles that have it. The console checks these on every page and action.
CAPABILITIES: dict[str, frozenset[str]] = {
    "dashboard": frozenset(ROLES),
    "devices.view": frozenset({"admin", "supervisor", "readonly"}),
    "devices.manage": frozenset({"admin"}),            # windows, clerks, pairing
    "invitations.view": frozenset(ROLES),
    "ratings.view": frozenset(ROLES),
    "uplink.view": frozenset({"admin", "supervisor", "readonly"}),
    "uplink.manage": frozenset({"admin"}),             # re-queue, reconcile
    "audit.view": frozenset({"admin", "supervisor"}),
    "complaints.view": frozenset(ROLES),
    "complaints.act": frozenset({"admin", "liaison"}),
    "complaints.review": frozenset({"supervisor"}),    # decisions on appeals
    "bulletins.view": frozenset({"admin", "supervisor", "readonly"}),
    "findings.view": frozenset({"admin", "supervisor"}),
}

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
SCOPE_ITEM = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
TOUCH_EVERY_MS = 15_000    # a session's last-seen time is written at most this often

_hasher = PasswordHasher()
_dummy_hash: str | None = None


class LoginRefused(DomainError):
    """Wrong name or password (one message for both), locked, disabled."""

    code = "login_refused"


def can(role: str, capability: str) -> bool:
    return role in CAPABILITIES.get(capability, frozenset())


def role_caps(role: str) -> list[str]:
    return sorted(c for c, roles in CAPABILITIES.items() if role in roles)


@dataclass(frozen=True)
class LoginRules:
    idle_s: int = 1800
    max_age_s: int = 12 * 3600
    max_failures: int = 5
    lockout_s: int = 300


@dataclass(frozen=True)
class Scope:
    """Which halls and departments an account sees; an empty tuple means all."""

    halls: tuple[str, ...] = ()
    depts: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return not self.halls and not self.depts

    def allows(self, hall: str | None, dept: str | None) -> bool:
        return ((not self.halls or (hall or "") in self.halls)
                and (not self.depts or (dept or "") in self.depts))

    @classmethod
    def of(cls, a: ConsoleAccount) -> Scope:
        return cls(a.halls, a.depts)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not ACCOUNT_NAME.fullmatch(name):
        raise BadInput("account name must match [A-Za-z0-9_.@-]{1,64}", "bad_account_name")
    return name


def check_role(role: object) -> str:
    if role not in ROLES:
        raise BadInput("role must be one of %s" % ", ".join(ROLES), "bad_role")
    assert isinstance(role, str)
    return role


def check_scope(kind: str, items: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for it in items:
        it = it.strip()
        if not SCOPE_ITEM.fullmatch(it):
            raise BadInput("%s %r: use letters, digits, '_', '.', '-' (at most 64)" % (kind, it), "bad_scope")
        if it not in out:
            out.append(it)
    return tuple(out)


def check_password(name: str, password: object) -> str:
    if not isinstance(password, str):
        raise BadInput("password must be text", "bad_password")
    if len(password) < MIN_PASSWORD:
        raise BadInput("password must have at least %d characters" % MIN_PASSWORD, "weak_password")
    if len(password) > MAX_PASSWORD:
        raise BadInput("password must have at most %d characters" % MAX_PASSWORD, "bad_password")
    if any(ord(c) < 0x20 or c == "\x7f" for c in password):
        raise BadInput("password contains a control character", "bad_password")
    if password.lower() == name.lower() or len(set(password)) < 4:
        raise BadInput("password is too easy to guess", "weak_password")
    return password


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_hex(16))
    return _dummy_hash


def _audit(tx: Tx, actor: str, action: str, subject: str, at_ms: int, **detail: object) -> None:
    tx.audit.add(at_ms, actor, action, {"subject": subject, **detail})


def _get(tx: Tx, name: str) -> ConsoleAccount:
    a = tx.accounts.get(name)
    if a is None:
        raise NotFound("unknown console account %s" % name, "unknown_account")
    return a


# ---- administration (hcp-gateway users) ------------------------------------------------------

async def add_account(store: Store, name: str, password: str, role: str, actor: str, *,
                      display_name: str = "", halls: Iterable[str] = (), depts: Iterable[str] = (),
                      must_change: bool = False) -> ConsoleAccount:
    name = check_name(name)
    role = check_role(role)
    check_password(name, password)
    display_name = display_name.strip()
    if len(display_name) > 64 or any(ord(c) < 0x20 for c in display_name):
        raise BadInput("display name: at most 64 characters, no control characters", "bad_display_name")
    scope_halls, scope_depts = check_scope("hall", halls), check_scope("department", depts)
    hashed = await hash_password(password)
    t = now_ms()
    account = ConsoleAccount(name, display_name, role, scope_halls, scope_depts, hashed, must_change,
                             False, 0, None, t, t, None)

    def unit(tx: Tx) -> None:
        if tx.accounts.get(name) is not None:
            raise Conflict("console account %s already exists" % name, "account_exists")
        try:
            tx.accounts.add(account)
        except IntegrityError:
            raise Conflict("console account %s already exists" % name, "account_exists") from None
        _audit(tx, actor, "account.add", name, t, role=role, halls=list(scope_halls), depts=list(scope_depts))
    await store.write(unit)
    return account


async def list_accounts(store: Store) -> list[ConsoleAccount]:
    return await store.read(lambda tx: tx.accounts.listing())


async def get_account(store: Store, name: str) -> ConsoleAccount:
    return await store.read(lambda tx: _get(tx, name))


async def set_password(store: Store, name: str, password: str, actor: str, *,
                       must_change: bool = False) -> int:
    """Set a new password; every session of the account ends. Returns how many ended."""
    check_password(name, password)
    hashed = await hash_password(password)
    t = now_ms()

    def unit(tx: Tx) -> int:
        _get(tx, name)
        tx.accounts.set_password(name, hashed, must_change, t)
        ended = tx.sessions.delete_for(name)
        _audit(tx, actor, "account.passwd", name, t, sessions_ended=ended, must_change=must_change)
        return ended
    return await store.write(unit)


async def set_disabled(store: Store, name: str, disabled: bool, actor: str) -> int:
    """Disable (every session ends at once) or enable an account; sessions ended."""
    t = now_ms()

    def unit(tx: Tx) -> int:
        _get(tx, name)
        tx.accounts.set_disabled(name, disabled)
        ended = tx.sessions.delete_for(name) if disabled else 0
        _audit(tx, actor, "account.disable" if disabled else "account.enable", name, t, sessions_ended=ended)
        return ended
    return await store.write(unit)


async def set_profile(store: Store, name: str, actor: str, *, role: str | None = None,
                      halls: Iterable[str] | None = None, depts: Iterable[str] | None = None,
                      display_name: str | None = None) -> ConsoleAccount:
    """Change role, scope or display name (the account's sessions end: their rights changed)."""
    t = now_ms()

    def unit(tx: Tx) -> ConsoleAccount:
        a = _get(tx, name)
        new = replace(a, role=check_role(role) if role is not None else a.role,
                      halls=check_scope("hall", halls) if halls is not None else a.halls,
                      depts=check_scope("department", depts) if depts is not None else a.depts,
                      display_name=display_name.strip() if display_name is not None else a.display_name)
        tx.accounts.set_profile(name, new.role, new.halls, new.depts, new.display_name)
        ended = tx.sessions.delete_for(name)
        _audit(tx, actor, "account.profile", name, t, role=new.role, halls=list(new.halls),
               depts=list(new.depts), sessions_ended=ended)
        return new
    return await store.write(unit)


# ---- login and sessions (the console) ---------------------------------------------------------

@dataclass(frozen=True)
class Opened:
    account: ConsoleAccount
    token: str              # goes into the cookie, never into the store or a log
    session: ConsoleSession


async def login(store: Store, name: str, password: str, remote: str, rules: LoginRules,
                clock: Callable[[], int] = now_ms) -> Opened:
    """Check name and password; open a session. LoginRefused says why in one line (the same
    words for an unknown name and a wrong password)."""
    t = clock()
    a = await store.read(lambda tx: tx.accounts.get(name)) if ACCOUNT_NAME.fullmatch(name) else None
    if a is None:
        await asyncio.to_thread(_verify, _dummy(), password)   # the same time as a real check
        raise LoginRefused("账号或密码错误", "bad_credentials")
    if a.locked_until_ms is not None and a.locked_until_ms > t:
        minutes = max(1, -(-(a.locked_until_ms - t) // 60000))
        raise LoginRefused("登录失败次数过多，账号已锁定，请 %d 分钟后再试" % minutes, "locked")
    ok = await asyncio.to_thread(_verify, a.password_hash, password)
    if not ok:
        def failed(tx: Tx) -> int:
            # After max_failures in a row, every further failure locks again: one guess per
            # lock-out period until a good login resets the count.
            now = tx.accounts.get(name)
            n = (now.failed_logins if now is not None else 0) + 1
            lock = t + rules.lockout_s * 1000 if n >= rules.max_failures else None
            tx.accounts.note_failure(name, lock)
            _audit(tx, "console:" + name, "console.lockout" if lock else "console.login_failed", name, t,
                   remote=remote, failures=n)
            return n
        await store.write(failed)
        raise LoginRefused("账号或密码错误", "bad_credentials")
    if a.disabled:
        raise LoginRefused("账号已停用，请联系管理员", "disabled")
    rehash = await asyncio.to_thread(_hasher.check_needs_rehash, a.password_hash)
    new_hash = await hash_password(password) if rehash else None
    token = secrets.token_urlsafe(32)
    s = ConsoleSession(token_hash(token), name, secrets.token_urlsafe(32), t, t, t + rules.max_age_s * 1000,
                       remote[:64])

    def unit(tx: Tx) -> None:
        tx.accounts.note_login(name, t)
        if new_hash is not None:
            tx.accounts.set_password(name, new_hash, a.must_change, a.password_ms)
        tx.sessions.add(s)
        tx.sessions.prune(t, t - rules.idle_s * 1000)
        _audit(tx, "console:" + name, "console.login", name, t, remote=remote)
    await store.write(unit)
    return Opened(a, token, s)


async def session_for(store: Store, token: str, rules: LoginRules,
                      clock: Callable[[], int] = now_ms) -> tuple[ConsoleSession, ConsoleAccount] | None:
    """The live session of a cookie token and its account, or None (unknown, expired, idle too
    long, account disabled). Notes the request time (at most every TOUCH_EVERY_MS)."""
    if not token or len(token) > 128:
        return None
    h = token_hash(token)
    t = clock()

    def read(tx: Tx) -> tuple[ConsoleSession, ConsoleAccount] | None:
        s = tx.sessions.get(h)
        if s is None:
            return None
        a = tx.accounts.get(s.account)
        return None if a is None else (s, a)
    found = await store.read(read)
    if found is None:
        return None
    s, a = found
    if a.disabled or s.expires_ms <= t or s.last_seen_ms + rules.idle_s * 1000 <= t:
        await store.write(lambda tx: tx.sessions.delete(h))
        return None
    if t - s.last_seen_ms >= TOUCH_EVERY_MS:
        await store.write(lambda tx: tx.sessions.touch(h, t))
        s = replace(s, last_seen_ms=t)
    return s, a


async def logout(store: Store, token: str, account: str) -> None:
    t = now_ms()

    def unit(tx: Tx) -> None:
        if tx.sessions.delete(token_hash(token)):
            _audit(tx, "console:" + account, "console.logout", account, t)
    await store.write(unit)


async def change_own_password(store: Store, name: str, old: str, new: str, keep_token: str) -> None:
    """The account's own change: the old password must match; other sessions end, this one stays."""
    a = await get_account(store, name)
    if not await asyncio.to_thread(_verify, a.password_hash, old):
        raise BadInput("原密码不正确", "bad_credentials")
    if old == new:
        raise BadInput("新密码不能与原密码相同", "weak_password")
    check_password(name, new)
    hashed = await hash_password(new)
    t = now_ms()
    keep = token_hash(keep_token)

    def unit(tx: Tx) -> None:
        s = tx.sessions.get(keep)
        tx.accounts.set_password(name, hashed, False, t)
        tx.sessions.delete_for(name)
        if s is not None:
            tx.sessions.add(s)
        _audit(tx, "console:" + name, "account.passwd", name, t, own=True)
    await store.write(unit)
