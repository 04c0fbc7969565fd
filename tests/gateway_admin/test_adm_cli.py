"""hcp-gateway admin commands: through click's CliRunner, through main() (the error wrapper)
and once as the real console script in a subprocess."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from adm_support import ADMIN_TOKEN, Recorder
from click.testing import CliRunner

from gateway.bindings import now_ms
from gateway.cli import cli, main
from gateway.config import load_config
from gateway.store import open_store
from simulator.netutil import free_port

SECRET = "ab" * 32
HCP_GATEWAY = Path(sys.executable).parent / "hcp-gateway"


def write_config(tmp: Path, http_port: int) -> Path:
    p = tmp / "gateway.toml"
    p.write_text(
        '[store]\npath = "data/gateway.db"\n\n[hall]\nopening_hours = ["00:00-24:00"]\n'
        "opening_days = [1, 2, 3, 4, 5, 6, 7]\n\n"
        '[http]\nhost = "127.0.0.1"\nport = %d\nadmin_token = "%s"\n' % (http_port, ADMIN_TOKEN)
    )
    return p


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """main() exactly as the console script runs it: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    """A config whose [http] port has no service behind it, and a seeded store."""
    p = write_config(tmp_path, free_port())
    r = CliRunner()
    for args, stdin in (
        (["devices", "add", "dev-1"], SECRET + "\np1\n"),        # secrets on stdin, never argv
        (["devices", "add", "dev-2"], SECRET + "\np2\n"),
        (["windows", "add", "A01", "--name", "综合窗口", "--dept", "11370303004253591T"], None),
        (["windows", "add", "A02", "--name", "社保窗口"], None),
        (["staff", "add", "zhang", "--name", "张三"], None),
        (["staff", "add", "li", "--name", "李四"], None),
    ):
        res = r.invoke(cli, ["--config", str(p), *args], input=stdin)
        assert res.exit_code == 0, res.output
    return p


def test_pair_force_unpair_and_history(cfg_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(cfg_path)
    code, out, err = run(capsys, "--config", c, "pair", "dev-1", "--window", "A01", "--staff", "zhang")
    assert code == 0 and out.strip() == "paired: dev-1 -> window A01, staff zhang (张三)" and err == ""
    # A second active binding for the clerk: one line, exit 1, nothing changed.
    code, out, err = run(capsys, "--config", c, "pair", "dev-2", "--window", "A02", "--staff", "zhang")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("hcp-gateway: error: staff zhang is already bound")
    code, out, err = run(
        capsys, "--config", c, "pair", "dev-2", "--window", "A02", "--staff", "zhang", "--force"
    )
    assert code == 0
    assert out.splitlines() == [
        "closed: dev-1 at window A01, staff zhang",
        "paired: dev-2 -> window A02, staff zhang (张三)",
    ]
    code, out, _ = run(capsys, "--config", c, "unpair", "dev-2")
    assert code == 0 and out.strip() == "unpaired: dev-2 (was window A02, staff zhang)"
    code, out, err = run(capsys, "--config", c, "unpair", "dev-2")
    assert code == 1 and err.strip() == "hcp-gateway: error: device dev-2 has no active binding"
    code, out, _ = run(capsys, "--config", c, "--json", "bindings", "--history")
    hist = json.loads(out)
    assert [
        (b["device_id"], b["window_id"], b["staff_account"], b["valid_to_ms"] is not None) for b in hist
    ] == [
        ("dev-1", "A01", "zhang", True),
        ("dev-2", "A02", "zhang", True),
    ]
    assert all(b["created_by"].startswith("cli:") for b in hist)
    code, out, _ = run(capsys, "--config", c, "bindings")
    assert code == 0 and out.strip() == "(no bindings)"
    res = CliRunner().invoke(cli, ["--config", c, "bindings", "--history"])
    lines = res.output.splitlines()
    assert lines[0].split() == ["device", "window", "staff", "name", "from", "to", "by"] and len(lines) == 4


@pytest.mark.parametrize(
    "args,code,text",
    [
        (
            ["pair", "dev-9", "--window", "A01", "--staff", "zhang"],
            1,
            "unknown device dev-9 (register it first)",
        ),
        (["pair", "dev-1", "--window", "Z9", "--staff", "zhang"], 1, "unknown window Z9"),
        (["pair", "dev-1", "--window", "A01"], 2, "Missing option '--staff'"),
        (["windows", "add", "A01"], 1, "window A01 already exists"),
        (["ratings", "--date", "22/11/2026"], 2, "--date must be YYYY-MM-DD"),
        (["ratings", "--kind", "weird"], 2, "Invalid value for '--kind'"),
        (["invitations", "--status", "nope"], 2, "Invalid value for '--status'"),
        (["devices", "add", "BAD", "--secret-file", "/dev/null", "--broker-password-file", "/dev/null"], 1,
         "device id must match"),
        (["devices", "add", "dev-1", "--secret", "00"], 2, "No such option '--secret'"),
        (["frobnicate"], 2, "No such command 'frobnicate'"),
    ],
)
def test_errors_are_one_line_and_non_zero(
    cfg_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, text: str
) -> None:
    got, out, err = run(capsys, "--config", str(cfg_path), *args)
    assert got == code, err
    assert err.count("\n") == 1 and err.startswith("hcp-gateway: error: ") and text in err, err
    assert "Traceback" not in out + err


def test_config_and_store_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "missing.toml"), "windows")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[store\n")
    code, _, err = run(capsys, "--config", str(bad), "bindings")
    assert code == 2 and "not valid TOML" in err and err.count("\n") == 1
    cfg = write_config(tmp_path, 1)
    code, _, err = run(capsys, "--config", str(cfg), "health")
    assert code == 1 and "store" in err and "does not exist" in err and "hcp-gateway init" in err


def test_ratings_invitations_report_tables(cfg_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(cfg_path)
    assert run(capsys, "--config", c, "pair", "dev-1", "--window", "A01", "--staff", "zhang")[0] == 0
    cfg = load_config(cfg_path)
    t = now_ms() + 60_000  # after the binding started
    day = dt.datetime.fromtimestamp(t / 1000, tz=cfg.hall.tz).date()

    async def seed() -> str:
        from adm_support import Store

        from gateway import invitations

        db = await open_store(cfg.store.url)
        try:
            store = Store(db, cfg)
            out = await invitations.create(
                db,
                invitations.InvitationRequest(case_no="CASE-1", window_id="A01"),
                "t",
                invitations.InvitationRules(),
                at_ms=t,
            )
            await store.rec("dev-1", "rated", t + 5000, "vd", out.invitation.id)
            await store.rec("dev-1", "rated", t + 6000, "vs", out.invitation.id)
            await store.rec("dev-1", "walkup", t + 9000, "s")
            return out.invitation.id
        finally:
            await db.close()

    inv = asyncio.run(seed())
    code, out, _ = run(
        capsys, "--config", c, "--json", "ratings", "--date", day.isoformat(), "--staff", "zhang"
    )
    rows = json.loads(out)
    assert [(r["kind"], r["grade"], r["counted"], r["flags"]) for r in rows] == [
        ("rated", "vd", True, ""),
        ("rated", "vs", False, "extra"),
        ("walkup", "s", False, "no_invitation"),
    ]
    code, out, _ = run(capsys, "--config", c, "ratings", "--kind", "walkup")
    assert code == 0 and "dev-1:1:3" in out and "dev-1:1:1" not in out
    assert "+08:00" in out                     # every time shown with its zone
    # A listing cut by --limit says how many rows it hid (on stderr with --json).
    code, out, err = run(capsys, "--config", c, "ratings", "--limit", "1")
    assert code == 0 and "dev-1:1:1" in out and "dev-1:1:2" not in out
    assert out.splitlines()[-1] == "(2 more not shown; raise --limit)"
    code, out, err = run(capsys, "--config", c, "--json", "ratings", "--limit", "2")
    assert len(json.loads(out)) == 2 and err == "(1 more not shown; raise --limit)\n"
    code, out, _ = run(capsys, "--config", c, "invitations", "--status", "rated")
    assert code == 0 and inv in out and "CASE-1" in out
    code, out, _ = run(capsys, "--config", c, "--json", "report", "--date", day.isoformat())
    rep = json.loads(out)
    (row,) = rep["rows"]
    assert (row["window_id"], row["staff_account"], row["cases"], row["ratings"]) == ("A01", "zhang", 1, 1)
    assert (row["grades"]["vd"], row["bad"], row["extras"], row["walkups"], row["score"]) == (1, 1, 1, 1, 0.0)
    code, out, _ = run(capsys, "--config", c, "report", "--date", day.isoformat())
    assert code == 0 and "差评" in out and "100.0%" in out  # rating rate 1/1
    code, out, _ = run(capsys, "--config", c, "report", "--date", (day - dt.timedelta(days=1)).isoformat())
    assert code == 0 and out.splitlines()[-1].split()[:5] == ["*", "*", "0", "0", "-"]


def test_pair_and_unpair_are_noted_for_the_running_gateway(
    cfg_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI has no device connection: it notes the change in the store's change feed, in
    the same unit of work, and the running gateway's leader delivers it (deliver_noted, as the
    service does; the end-to-end test sees the device get it from a real gateway)."""
    from gateway.bindings import deliver_noted

    c = str(cfg_path)

    async def delivered(after: int) -> tuple[int, list[tuple[str, str, dict[str, Any]]]]:
        store = await open_store(load_config(c).store.url)
        try:
            notes = await store.read(lambda tx: tx.changes.since(after))
            send = Recorder()
            await deliver_noted(store, send, [(n.kind, n.subject) for n in notes])
            return (notes[-1].id if notes else after), send.sent
        finally:
            await store.close()

    last, _ = asyncio.run(delivered(0))
    code, out, err = run(capsys, "--config", c, "--json", "pair", "dev-1", "--window", "A01",
                         "--staff", "zhang")
    assert code == 0 and err == "" and json.loads(out)["devices"] == ["dev-1"]
    last, sent = asyncio.run(delivered(last))
    assert sent == [("dev-1", "paired", {"win": "A01", "clerk": "张三"})]
    code, out, _ = run(capsys, "--config", c, "pair", "dev-1", "--window", "A01", "--staff", "zhang")
    assert code == 0 and "already bound" in out
    last, sent = asyncio.run(delivered(last))
    assert sent == []                     # nothing changed, nothing to tell
    code, out, _ = run(capsys, "--config", c, "--json", "unpair", "dev-1")
    assert code == 0 and json.loads(out)["devices"] == ["dev-1"]
    last, sent = asyncio.run(delivered(last))
    assert sent == [("dev-1", "unpaired", {})]


def test_the_real_console_script(cfg_path: Path, tmp_path: Path) -> None:
    def hcp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HCP_GATEWAY), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )

    r = hcp("--config", str(cfg_path), "pair", "dev-1", "--window", "A01", "--staff", "li")
    assert r.returncode == 0 and "paired: dev-1 -> window A01, staff li (李四)" in r.stdout
    r = hcp("--config", str(cfg_path), "pair", "dev-2", "--window", "A01", "--staff", "zhang")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("hcp-gateway: error: window A01 is already bound")
    r = hcp("--config", str(tmp_path / "nowhere.toml"), "bindings")
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    r = hcp("--config", str(cfg_path), "--json", "bindings")
    data: list[dict[str, Any]] = json.loads(r.stdout)
    assert r.returncode == 0 and [b["staff_account"] for b in data] == ["li"]


def test_devices_add_reads_secrets_from_files(cfg_path: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sf, pf = tmp_path / "secret", tmp_path / "pw"
    sf.write_text(SECRET + "\n")
    pf.write_text("pw-3\n")
    code, out, err = run(capsys, "--config", str(cfg_path), "devices", "add", "dev-3",
                         "--secret-file", str(sf), "--broker-password-file", str(pf))
    assert code == 0 and "dev-3 registered" in out, err
    pf.write_text("x\n")
    sf.write_text("00\n")
    code, _, err = run(capsys, "--config", str(cfg_path), "devices", "add", "BAD", "--secret-file", str(sf),
                       "--broker-password-file", str(pf))
    assert code == 1 and "device id must match" in err


def test_every_command_speaks_json(cfg_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(cfg_path)
    code, out, _ = run(capsys, "--config", c, "--json", "init")
    assert code == 0 and json.loads(out)["schema_version"] > 0
    code, out, _ = run(capsys, "--config", c, "windows", "add", "A09", "--name", "九号", "--json")
    assert code == 0 and json.loads(out) == {"window_id": "A09", "dept_code": "", "name": "九号",
                                             "hall_id": None, "retired_ms": None}   # the default hall
    code, out, _ = run(capsys, "--config", c, "--json", "staff", "add", "wang", "--name", "王五")
    assert code == 0 and json.loads(out) == {"account": "wang", "display_name": "王五", "dept_code": "",
                                             "retired_ms": None}
