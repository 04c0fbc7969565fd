"""Signed tokens of the QR channel, and the key file they are signed with.

A token names its subject and proves the gateway made it:

    <subject>.<sig>      sig = base64url(kid byte + HMAC-SHA256(key[kid], kind NUL subject)[:12])

subject is a plate id (random) or an invitation id ([A-Za-z0-9_-]{1,32}); kind ("p" plate, "c"
case link) is inside the MAC, so one kind's signature is worthless as another's. 96 bits of tag
against guessing (every guess is a request, rate limited per address); short, so a receipt's QR
code stays small. What a token may do (revoked, expired, used) is the store's business, not the
token's: a token carries no state.

Forms on the page carry a second token (the form token): a random one-time id (also the
submission's idempotency key), when the form was made, and a MAC over both and the page's subject.
A form posted from anywhere else, too old, or for another page is refused (CSRF); the same form
posted twice is the same submission.

The key file ([qr] key_file) holds one key per line, "<kid> <64 hex>", oldest first; the last one
signs new tokens, every one listed still verifies. It is created 0600 on first use and refused
if group or others can read it. Rotation: `hcp-gateway qr key rotate` adds a key; plates printed
before keep working until their key is retired (`qr key retire KID`), which is the moment to have
reprinted them. Keys never appear in logs, argv or errors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SUBJECT = re.compile(r"[A-Za-z0-9_-]{1,32}")
KINDS = ("p", "c")
TAG_BYTES = 12
NONCE_BYTES = 12
_LINE = re.compile(r"(\d{1,3}) ([0-9a-f]{64})")
_SIG_LEN = 18          # base64url of 1 + 12 bytes, no padding
_FORM_LEN = 39         # base64url of 12 + 4 + 1 + 12 bytes, no padding
RELOAD_EVERY_S = 2.0   # how often a running gateway looks for a rotated key file


class KeyFileError(ValueError):
    """The key file cannot be used; one line saying why (never a key)."""


class BadToken(ValueError):
    """A token that is malformed, forged, or signed with a key no longer held."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code   # malformed | forged | unknown_key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64 = re.compile(r"[A-Za-z0-9_-]*")


def _unb64(text: str) -> bytes:
    # Strict: the decoder alone skips characters outside the alphabet.
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise BadToken("malformed")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadToken("malformed") from None
    if _b64(raw) != text:   # the last character's spare bits set: one token, one spelling
        raise BadToken("malformed")
    return raw


@dataclass(frozen=True)
class Key:
    kid: int
    secret: bytes

    def __repr__(self) -> str:   # never the secret, whatever prints it
        return "Key(kid=%d)" % self.kid


class KeyRing:
    """The keys of the key file, re-read when the file changes (a rotation by the CLI is in
    force in a running gateway within RELOAD_EVERY_S)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[int, Key] = {}
        self._current: Key | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, create: bool = True) -> KeyRing:
        ring = cls(path)
        if create and not path.exists():
            write_new_key_file(path)
        ring._load()
        return ring

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except OSError as e:
            raise KeyFileError("QR key file %s: %s" % (self.path, e.strerror or e)) from None
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError("QR key file %s is not a regular file" % self.path)
        if st.st_mode & 0o077:
            raise KeyFileError("QR key file %s is readable by group or others (mode %04o); run: chmod 600 %s"
                               % (self.path, stat.S_IMODE(st.st_mode), self.path))
        keys = parse_key_file(self.path)
        self._keys = {k.kid: k for k in keys}
        self._current = keys[-1]
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)

    def _maybe_reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_EVERY_S:
            return
        with self._lock:
            self._checked = now
            try:
                st = self.path.stat()
            except OSError:
                return   # keep the keys we have; the next look may find it back
            if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
                try:
                    self._load()
                except KeyFileError:
                    pass   # a half-written or broken file: keep the keys we have

    @property
    def current(self) -> Key:
        self._maybe_reload()
        assert self._current is not None
        return self._current

    def get(self, kid: int) -> Key | None:
        key = self._keys.get(kid)
        if key is None:
            self._maybe_reload(force=True)   # perhaps rotated by the CLI a moment ago
            key = self._keys.get(kid)
        return key

    def kids(self) -> list[int]:
        self._maybe_reload()
        return sorted(self._keys)


def parse_key_file(path: Path) -> list[Key]:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError("QR key file %s cannot be read: %s" % (path, getattr(e, "strerror", None) or
                                                                  type(e).__name__)) from None
    keys: list[Key] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.fullmatch(line)
        if m is None or not 1 <= int(m.group(1)) <= 255:
            raise KeyFileError('QR key file %s line %d is not "<kid 1..255> <64 hex>"' % (path, n))
        kid = int(m.group(1))
        if any(k.kid == kid for k in keys):
            raise KeyFileError("QR key file %s line %d: key id %d appears twice" % (path, n, kid))
        keys.append(Key(kid, bytes.fromhex(m.group(2))))
    if not keys:
        raise KeyFileError("QR key file %s holds no key" % path)
    return keys


_HEADER = ("# haochaping QR signing keys: <kid> <key>, oldest first; the last signs new tokens.\n"
           "# Secret: mode 0600, never copied into logs or tickets. docs/qr.md: rotation.\n")


def _write(path: Path, keys: list[Key]) -> None:
    """Atomically (temp file 0600 + rename), so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".%s.%d.tmp" % (path.name, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(_HEADER + "".join("%d %s\n" % (k.kid, k.secret.hex()) for k in keys))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_new_key_file(path: Path) -> None:
    """A key file with one fresh key (kid 1); refuses to overwrite an existing file. A missing
    directory is made 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # FileExistsError if there
    os.close(fd)
    _write(path, [Key(1, secrets.token_bytes(32))])


def rotate_key_file(path: Path) -> int:
    """Add a fresh key (it signs from now on); returns its id."""
    KeyRing.open(path, create=False)   # the permission check
    keys = parse_key_file(path)
    used = {k.kid for k in keys}
    kid = max(used) + 1 if max(used) < 255 else next((i for i in range(1, 256) if i not in used), 0)
    if not kid:
        raise KeyFileError("QR key file %s has 255 keys: retire old ones first" % path)
    _write(path, [*keys, Key(kid, secrets.token_bytes(32))])
    return kid


def retire_key(path: Path, kid: int) -> None:
    """Remove a key: every token signed with it stops working at once."""
    KeyRing.open(path, create=False)   # permission check
    keys = parse_key_file(path)
    if not any(k.kid == kid for k in keys):
        raise KeyFileError("QR key file %s has no key %d" % (path, kid))
    if len(keys) == 1:
        raise KeyFileError("key %d is the only key: rotate first, then retire it" % kid)
    if keys[-1].kid == kid:
        raise KeyFileError("key %d signs new tokens: rotate first, then retire it" % kid)
    _write(path, [k for k in keys if k.kid != kid])


# ---- tokens ----------------------------------------------------------------------------------

def _mac(key: Key, *parts: bytes) -> bytes:
    return hmac.new(key.secret, b"\0".join(parts), hashlib.sha256).digest()[:TAG_BYTES]


def sign(ring: KeyRing, kind: str, subject: str) -> str:
    if kind not in KINDS or not SUBJECT.fullmatch(subject):
        raise ValueError("bad token kind or subject")
    key = ring.current
    return "%s.%s" % (subject, _b64(bytes([key.kid]) + _mac(key, b"tok", kind.encode(), subject.encode())))


def verify(ring: KeyRing, kind: str, token: str) -> str:
    """The subject of a genuine token of this kind; BadToken otherwise."""
    subject, dot, sig = token.rpartition(".")
    if not dot or len(sig) != _SIG_LEN or not SUBJECT.fullmatch(subject):
        raise BadToken("malformed")
    raw = _unb64(sig)
    if len(raw) != 1 + TAG_BYTES:
        raise BadToken("malformed")
    key = ring.get(raw[0])
    if key is None:
        raise BadToken("unknown_key")
    if not hmac.compare_digest(raw[1:], _mac(key, b"tok", kind.encode(), subject.encode())):
        raise BadToken("forged")
    return subject


def kid_of(token: str) -> int | None:
    _, _, sig = token.rpartition(".")
    try:
        return _unb64(sig)[0] if len(sig) == _SIG_LEN else None
    except BadToken:
        return None


@dataclass(frozen=True)
class Form:
    nonce: str        # the submission's one-time id (hex)
    issued_s: int


def form_token(ring: KeyRing, kind: str, subject: str, now_s: int) -> str:
    """A fresh form for the page of (kind, subject)."""
    key = ring.current
    nonce = secrets.token_bytes(NONCE_BYTES)
    issued = int(now_s).to_bytes(4, "big")
    mac = _mac(key, b"form", kind.encode(), subject.encode(), nonce, issued)
    return _b64(nonce + issued + bytes([key.kid]) + mac)


def check_form(ring: KeyRing, kind: str, subject: str, token: str, now_s: int, valid_s: int) -> Form:
    """The form's one-time id, if the form was made by us for this page and is not too old;
    BadToken (malformed / forged / unknown_key / expired) otherwise."""
    if not isinstance(token, str) or len(token) != _FORM_LEN:
        raise BadToken("malformed")
    raw = _unb64(token)
    if len(raw) != NONCE_BYTES + 4 + 1 + TAG_BYTES:
        raise BadToken("malformed")
    nonce, issued, kid, mac = raw[:12], raw[12:16], raw[16], raw[17:]
    key = ring.get(kid)
    if key is None:
        raise BadToken("unknown_key")
    if not hmac.compare_digest(mac, _mac(key, b"form", kind.encode(), subject.encode(), nonce, issued)):
        raise BadToken("forged")
    t = int.from_bytes(issued, "big")
    if not t - 60 <= now_s <= t + valid_s:
        raise BadToken("expired")
    return Form(nonce.hex(), t)
