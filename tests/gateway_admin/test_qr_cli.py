"""`hcp-gateway qr ...` through main() exactly as the console script runs it, on a real store
(both backends): plates in three formats that decode back to their URL, list, revoke, QR-only
binding, receipt links, keys; exit codes and one-line errors."""

from __future__ import annotations

import getpass
import io
import json
import stat
from pathlib import Path

import pytest
from test_adm_complaints_cli import _tag_toml, run

from gateway.config import load_config

ME = "cli:" + getpass.getuser()


def write_config(tmp: Path, store_url: str, qr: bool = True) -> Path:
    store = ('url = "%s"' % store_url) if store_url.startswith("postgresql") else 'path = "%s"' % store_url
    lines = [
        "[store]",
        store,
        "[hall]",
        'opening_hours = ["00:00-24:00"]',
        "opening_days = [1, 2, 3, 4, 5, 6, 7]",
        "[complaints]",
        'tag_version = "2026.1"',
    ]
    if qr:
        lines += [
            "[qr]",
            'public_url = "https://pj.example.gov.cn"',
            'key_file = "secrets/qr.key"',
            'hall_name = "淄博市张店区政务服务中心"',
        ]
    p = tmp / "gateway.toml"
    p.write_text("\n".join(lines) + "\n" + _tag_toml(), encoding="utf-8")
    return p


def decode_png(data: bytes) -> list[str]:
    import zxingcpp
    from PIL import Image

    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(data)))]


def test_plates_by_the_cli(tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(write_config(tmp_path, store_url))
    assert run(capsys, "--config", c, "init")[0] == 0
    assert (
        run(
            capsys,
            "--config",
            c,
            "windows",
            "add",
            "12",
            "--dept",
            "11370303004253591T",
            "--name",
            "综合受理",
        )[0]
        == 0
    )
    assert run(capsys, "--config", c, "staff", "add", "1024", "--name", "张三")[0] == 0
    # No clerk at the window yet: refused with one line, exit 1.
    code, out, err = run(
        capsys, "--config", c, "qr", "plate", "--window", "12", "--out", str(tmp_path / "p.pdf")
    )
    assert code == 1 and "no clerk is bound at window 12" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "--config", c, "qr", "bind", "--window", "12", "--staff", "1024")
    assert code == 0 and "QR code bound to 1024" in out
    # The key file was made on first use, 0600, and its key never printed.
    key = tmp_path / "secrets" / "qr.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_text().split()[-1]
    urls = []
    for fmt in ("png", "svg", "pdf"):
        out_file = tmp_path / ("plate." + fmt)
        code, out, err = run(
            capsys,
            "--json",
            "--config",
            c,
            "qr",
            "plate",
            "--window",
            "12",
            "--size",
            "A5",
            "--out",
            str(out_file),
        )
        assert code == 0, err
        info = json.loads(out)
        assert info["format"] == fmt and info["bytes"] == out_file.stat().st_size > 1000
        urls.append(info["plate"])
        assert secret not in out + err
    assert len(set(urls)) == 1  # a reprint is the same plate
    found = decode_png((tmp_path / "plate.png").read_bytes())
    assert len(found) == 1 and found[0].startswith("https://pj.example.gov.cn/q/p/" + urls[0] + ".")
    assert "张三" in (tmp_path / "plate.svg").read_text(encoding="utf-8")  # its aria-label / title
    from pypdf import PdfReader

    text = PdfReader(str(tmp_path / "plate.pdf")).pages[0].extract_text()
    assert "张三" in text and "淄博市张店区政务服务中心" in text and "12号窗口" in text
    # list, revoke, list --all
    code, out, _ = run(capsys, "--config", c, "qr", "list")
    assert code == 0 and urls[0] in out and "active" in out
    code, out, err = run(capsys, "--config", c, "qr", "revoke", urls[0], "--reason", "拍照外传")
    assert code == 0 and "revoked" in out
    code, out, err = run(capsys, "--config", c, "qr", "revoke", urls[0], "--reason", "again")
    assert code == 1 and "revoked already" in err
    code, out, _ = run(capsys, "--json", "--config", c, "qr", "list", "--all")
    rows = json.loads(out)
    assert [(r["id"], r["state"], r["revoked_by"]) for r in rows] == [(urls[0], "revoked", ME)]
    code, out, _ = run(
        capsys, "--config", c, "qr", "plate", "--window", "12", "--out", str(tmp_path / "n.png")
    )
    assert code == 0 and urls[0] not in out
    code, out, _ = run(capsys, "--config", c, "qr", "points")
    assert code == 0 and "qr-" in out
    code, out, _ = run(capsys, "--config", c, "qr", "unbind", "--window", "12")
    assert code == 0 and "unbound" in out
    code, out, _ = run(capsys, "--json", "--config", c, "qr", "list")
    assert [r["state"] for r in json.loads(out)] == ["inactive"]
    code, _, err = run(capsys, "--config", c, "qr", "revoke", "../x", "--reason", "r")
    assert code == 1 and "plate id" in err


def test_keys_and_links_by_the_cli(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    c = str(write_config(tmp_path, store_url))
    assert run(capsys, "--config", c, "init")[0] == 0
    code, _, err = run(capsys, "--config", c, "qr", "key", "list")  # made on first use, not yet
    assert code == 1 and "QR key file" in err
    run(capsys, "--config", c, "windows", "add", "5", "--dept", "11370303004253591T", "--name", "社保")
    run(capsys, "--config", c, "staff", "add", "li", "--name", "李四")
    assert run(capsys, "--config", c, "qr", "bind", "--window", "5", "--staff", "li")[0] == 0
    code, out, _ = run(capsys, "--json", "--config", c, "qr", "key", "list")
    assert code == 0 and json.loads(out)["kids"] == [1]
    code, out, _ = run(capsys, "--config", c, "qr", "key", "rotate")
    assert code == 0 and "key 2 added" in out
    code, _, err = run(capsys, "--config", c, "qr", "key", "retire", "2")
    assert code == 1 and "signs new tokens" in err
    # A receipt link of an invitation made by the window system.
    import asyncio

    from gateway import invitations
    from gateway.invitations import InvitationRequest, InvitationRules
    from gateway.store import open_store

    async def invite() -> str:
        cfg = load_config(c)
        store = await open_store(cfg.store.url)
        try:
            out = await invitations.create(
                store,
                InvitationRequest(case_no="C-1", window_id="5", receipt=True),
                "test",
                InvitationRules.from_config(cfg),
            )
            return out.invitation.id
        finally:
            await store.close()

    inv = asyncio.run(invite())
    code, out, _ = run(capsys, "--config", c, "qr", "link", inv)
    assert code == 0 and "https://pj.example.gov.cn/q/c/%s." % inv in out and "+08:00" in out
    code, _, err = run(capsys, "--config", c, "qr", "link", "nope")
    assert code == 1 and "unknown invitation" in err


def test_without_qr_the_commands_say_how_to_turn_it_on(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    c = str(write_config(tmp_path, store_url, qr=False))
    code, _, err = run(capsys, "--config", c, "qr", "list")
    assert code == 2 and "add a [qr] section" in err
    code, _, err = run(capsys, "--config", c, "qr", "plate", "--window", "1")
    assert code == 2 and "--out" in err
