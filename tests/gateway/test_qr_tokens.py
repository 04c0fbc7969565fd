"""The QR channel's signed tokens and key file (gateway/qr/tokens.py): forging, kinds, rotation
and retirement, the file's mode, form tokens (CSRF, one-time id, age), the [qr] config."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config
from gateway.qr import tokens
from gateway.qr.tokens import BadToken, KeyFileError, KeyRing

TAGS = {
    "tag_version": "v1",
    "tag_sets": {
        "v1": {"source": "test", "d": [{"code": "D1", "name": "慢"}], "vd": [{"code": "V1", "name": "差"}]}
    },
}


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def flip(sig: str) -> str:
    """A signature with one bit of its MAC changed (character 8 is all MAC bits)."""
    return sig[:8] + ("A" if sig[8] != "A" else "B") + sig[9:]


def spare(last: str) -> str:
    """The last character with its spare bits (13 bytes in 18 characters: 4 unused) set."""
    return B64[B64.index(last) | 1]


def ring(tmp_path: Path, name: str = "qr.key") -> KeyRing:
    return KeyRing.open(tmp_path / name)


def test_key_file_is_made_0600_and_refused_when_others_can_read_it(tmp_path: Path) -> None:
    r = ring(tmp_path)
    path = tmp_path / "qr.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert r.kids() == [1] and r.current.kid == 1
    assert "kid=1" in repr(r.current) and r.current.secret.hex() not in repr(r.current)
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        KeyRing.open(path)
    os.chmod(path, 0o600)
    path.write_text("1 nothex\n")
    with pytest.raises(KeyFileError, match="line 1") as e:
        KeyRing.open(path, create=False)
    assert "nothex" not in str(e.value)
    with pytest.raises(KeyFileError):
        KeyRing.open(tmp_path / "missing.key", create=False)


def test_tokens_verify_and_forgeries_do_not(tmp_path: Path) -> None:
    r = ring(tmp_path)
    t = tokens.sign(r, "p", "plate123abc")
    assert tokens.verify(r, "p", t) == "plate123abc"
    subject, sig = t.split(".")
    assert len(t) <= 32 and len(sig) == 18
    for bad, code in [
        (subject + "." + flip(sig), "forged"),
        (subject + "." + sig[:-1] + spare(sig[-1]), "malformed"),  # the same bits, respelt
        ("plate123abd." + sig, "forged"),  # another subject, the same signature
        (subject, "malformed"),
        (subject + ".", "malformed"),
        ("a b." + sig, "malformed"),
        ("x" * 40 + "." + sig, "malformed"),
        (subject + "." + "!" * 18, "malformed"),
    ]:
        with pytest.raises(BadToken) as e:
            tokens.verify(r, "p", bad)
        assert e.value.code == code, bad
    with pytest.raises(BadToken, match="forged"):
        tokens.verify(r, "c", t)  # a plate's token is no case link
    with pytest.raises(BadToken, match="forged"):
        tokens.verify(r, "p", tokens.sign(ring(tmp_path, "other.key"), "p", subject))
    with pytest.raises(ValueError):
        tokens.sign(r, "p", "has space")


def test_rotation_keeps_old_tokens_and_retirement_ends_them(tmp_path: Path) -> None:
    r = ring(tmp_path)
    path = tmp_path / "qr.key"
    old = tokens.sign(r, "p", "plate-old")
    assert tokens.rotate_key_file(path) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    r2 = KeyRing.open(path, create=False)
    new = tokens.sign(r2, "p", "plate-new")
    assert tokens.kid_of(new) == 2 and tokens.kid_of(old) == 1
    assert tokens.verify(r2, "p", old) == "plate-old"
    # A running gateway's ring sees the rotation (it re-reads a changed file).
    assert tokens.verify(r, "p", new) == "plate-new"
    with pytest.raises(KeyFileError, match="signs new tokens"):
        tokens.retire_key(path, 2)
    tokens.retire_key(path, 1)
    r3 = KeyRing.open(path, create=False)
    with pytest.raises(BadToken, match="unknown_key"):
        tokens.verify(r3, "p", old)
    with pytest.raises(KeyFileError, match="only key"):
        tokens.retire_key(path, 2)
    with pytest.raises(FileExistsError):
        tokens.write_new_key_file(path)


def test_form_tokens(tmp_path: Path) -> None:
    r = ring(tmp_path)
    f = tokens.form_token(r, "c", "inv1", 1_000_000)
    got = tokens.check_form(r, "c", "inv1", f, 1_000_100, 1800)
    assert len(got.nonce) == 24 and got.issued_s == 1_000_000
    assert tokens.form_token(r, "c", "inv1", 1_000_000) != f  # a new one-time id each time
    for kind, subject, now, code in [
        ("c", "inv2", 1_000_100, "forged"),
        ("p", "inv1", 1_000_100, "forged"),
        ("c", "inv1", 1_001_801, "expired"),
        ("c", "inv1", 999_000, "expired"),
    ]:
        with pytest.raises(BadToken) as e:
            tokens.check_form(r, kind, subject, f, now, 1800)
        assert e.value.code == code
    for bad in ("", "x" * 39, f[:-1], f + "A"):
        with pytest.raises(BadToken):
            tokens.check_form(r, "c", "inv1", bad, 1_000_100, 1800)


def _cfg(tmp_path: Path, qr: dict[str, object], complaints: dict[str, object] | None = None) -> object:
    raw = {"store": {"path": str(tmp_path / "g.db")}, "qr": qr}
    if complaints is not None:
        raw["complaints"] = complaints
    return parse_config(raw, tmp_path)


def test_qr_config_is_checked_whole(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, {"public_url": "https://pj.example.gov.cn/", "key_file": "k/qr.key"}, TAGS)
    s = cfg.sections["qr"]  # type: ignore[attr-defined]
    assert s.base == "https://pj.example.gov.cn" and s.key_file == tmp_path / "k" / "qr.key"
    assert s.receipt_valid_min == 1440 and s.plate is None
    with pytest.raises(ConfigError) as e:
        _cfg(
            tmp_path,
            {
                "public_url": "ftp://x",
                "receipt_valid_min": 1,
                "trusted_proxies": ["a.b"],
                "plate": {"titel": "x"},
                "publik_url": 1,
            },
            TAGS,
        )
    text = str(e.value)
    assert "publik_url" in text and "did you mean public_url" in text and "receipt_valid_min" in text
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, {"public_url": "ftp://x", "trusted_proxies": ["a.b"], "plate": {"titel": "x"}}, TAGS)
    text = str(e.value)
    assert (
        "public_url" in text
        and "'a.b' is not an IP address" in text
        and "[qr.plate] unknown key 'titel'" in text
    )
    with pytest.raises(ConfigError, match="差评 reason tags"):
        _cfg(tmp_path, {"public_url": "https://x.example"})
    with pytest.raises(ConfigError, match="public_url is required"):
        _cfg(tmp_path, {}, TAGS)
    assert _cfg(tmp_path, {"public_url": "https://x.example"}, TAGS).sections["uplink"] is None  # type: ignore


def test_a_plain_gateway_loads_no_qr_module() -> None:
    """Without [qr] the service imports nothing of the QR channel but its tiny points module, and
    the CLI nothing heavy (Jinja2, plate rendering): they load when used."""

    def loaded(mod: str) -> str:
        code = (
            "import sys, %s; print(sorted(m for m in sys.modules if m.startswith("
            "('gateway.qr', 'jinja2', 'segno', 'reportlab', 'PIL'))))" % mod
        )
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()

    assert loaded("gateway.__main__") == "['gateway.qr', 'gateway.qr.points']"
    assert not any(m in loaded("gateway.cli") for m in ("jinja2", "segno", "reportlab", "PIL"))
