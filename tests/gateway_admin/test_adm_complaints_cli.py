"""A complaint's whole life by the command line (`hcp-gateway complaints ...`, through main()
exactly as the console script runs it), on a real store; the actor of every step recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
from pathlib import Path

import pytest
from cmp_support import TAG_SETS

from gateway import bindings, invitations
from gateway.attribution import AttributionRules, attribute_sync
from gateway.cli import main
from gateway.complaints import ComplaintService
from gateway.config import load_config
from gateway.devices import add_device
from gateway.invitations import InvitationRequest, InvitationRules
from gateway.store import open_store
from gateway.store.api import Tx
from gateway.workdays import WorkCalendar

ME = "cli:" + getpass.getuser()


def write_config(tmp: Path, store_url: str) -> Path:
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
    year = dt.date.today().year
    try:
        WorkCalendar().check_year(year)
    except LookupError:
        # The command line runs on today's clock. In a year the pinned calendar library does not
        # know, this test types in a plain arrangement (no holidays) so it still runs; the
        # unknown-year behaviour itself is tested in test_adm_complaints.py.
        lines += ["[calendar.national.%d]" % year, 'source = "test only"', "holidays = []"]
    p = tmp / "gateway.toml"
    p.write_text("\n".join(lines) + "\n" + _tag_toml(), encoding="utf-8")
    return p


def _tag_toml() -> str:
    out = []
    for v, ts in TAG_SETS.items():
        out.append('[complaints.tag_sets."%s"]' % v)
        out.append('source = "%s"' % ts["source"])
        for g in ("d", "vd"):
            out.append(
                "%s = [%s]"
                % (g, ", ".join('{ code = "%s", name = "%s" }' % (t["code"], t["name"]) for t in ts[g]))
            )  # type: ignore[index]
    return "\n".join(out) + "\n"


def seed(cfg_path: Path, grades: tuple[str, ...]) -> None:
    """Devices, a window and a clerk, an invitation per grade rated by the device a minute
    ago, and the complaints opened as the leader's job does (the sweep)."""

    async def go() -> None:
        cfg = load_config(cfg_path)
        store = await open_store(cfg.store.url)
        try:
            now = bindings.now_ms()
            await store.write(lambda tx: add_device(tx, "dev-1", "ab" * 32, "t", "test", now))
            await bindings.add_window(store, "A01", "11370303004253591T", "综合窗口", "test")
            await bindings.add_staff(store, "zhang", "张三", "test")
            await bindings.pair(store, "dev-1", "A01", "zhang", "test", at_ms=now - 3_600_000)
            for i, g in enumerate(grades):
                t = now - 60_000 + i * 1000
                out = await invitations.create(
                    store,
                    InvitationRequest(case_no="C-%d" % i, window_id="A01"),
                    "test",
                    InvitationRules(),
                    at_ms=t - 5000,
                )
                rec = {
                    "record_id": "dev-1:1:%d" % (i + 1),
                    "device_id": "dev-1",
                    "rb": 1,
                    "rs": i + 1,
                    "kind": "rated",
                    "grade": g,
                    "invitation_id": out.invitation.id,
                    "device_wall_s": t // 1000,
                    "uptime_ms": 1000,
                    "pressed_at_ms": t,
                    "time_source": "device",
                    "received_at_ms": t,
                    "msg_boot": 1,
                    "binding_id": None,
                    "window_id": None,
                    "staff_account": None,
                    "flags": "",
                }

                def unit(tx: Tx, rec: dict[str, object] = rec) -> None:
                    tx.records.insert_many([attribute_sync(tx, rec, AttributionRules.from_config(cfg))])

                await store.write(unit)
            await ComplaintService.from_config(store, cfg).sweep()
        finally:
            await store.close()

    asyncio.run(go())


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_complaints_whole_life_by_the_cli(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, store_url)
    seed(cfg, ("d", "vd", "vd", "s"))
    c = ["--config", str(cfg)]

    code, out, _ = run(capsys, *c, "complaints", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["id", "rated", "grade", "case"] and len(lines) == 2 + 3
    assert "contact" in lines[2] and "+08:00" in lines[2]  # the next deadline, with its zone
    code, out, _ = run(capsys, *c, "complaints", "list", "--json", "--limit", "2")
    listed = json.loads(out)
    assert (listed["total"], listed["hidden"], len(listed["complaints"])) == (3, 1, 2)

    # Complaint 1 (不满意) worked to its end.
    steps = [
        ("contact", "1", "--note", "phoned the citizen; the form was asked for twice"),
        ("verify", "1", "--valid", "--by", "12345热线"),
        ("rectify", "1", "--note", "checklist at the window updated; clerk briefed"),
        ("callback", "1", "--grade", "s", "--tag", "D03", "--text", "这次说清楚了"),
        ("close", "1", "--note", "done"),
    ]
    expected = ["contacted", "rectifying", "rectified", "callback_done", "closed"]
    for step, state in zip(steps, expected, strict=True):
        code, out, err = run(capsys, *c, "complaints", *step)
        assert code == 0, err
        assert out.startswith("complaint #1 ") and ("now %s " % state) in out, out
    code, out, _ = run(capsys, *c, "complaints", "show", "1", "--json")
    v = json.loads(out)
    assert (v["state"], v["verdict"], v["callback_grade"], v["tags"], v["comment"]) == (
        "closed",
        "valid",
        "s",
        ["D03"],
        "这次说清楚了",
    )
    assert [(h["action"], h["actor"]) for h in v["history"]] == [
        ("open", "gateway"),
        ("contact", ME),
        ("verify", ME + " (12345热线)"),
        ("rectify", ME),
        ("callback", ME),
        ("close", ME),
    ]
    assert v["deadlines"]["contact"]["status"] == "met" and v["deadlines"]["rectify"]["status"] == "met"
    code, out, _ = run(capsys, *c, "complaints", "show", "1")
    assert code == 0 and "complaint #1  closed (已办结)" in out and "D03 一次性告知不到位" in out

    # Complaint 2: the clerk appeals, the review overturns it: excluded, kept.
    for step in (
        ("appeal", "2", "--note", "the citizen says she pressed the wrong key"),
        ("review", "2", "--start"),
        ("review", "2", "--overturn", "--reason", "mistaken_press", "--note", "confirmed by phone"),
    ):
        code, out, err = run(capsys, *c, "complaints", *step)
        assert code == 0, err
    assert "overturned: now closed" in out and "appeal overturned" in out
    # Complaint 3: not valid; a supervisor excludes it as malicious.
    code, out, err = run(
        capsys,
        *c,
        "complaints",
        "verify",
        "3",
        "--invalid",
        "--reason",
        "malicious",
        "--note",
        "the same caller, every day",
    )
    assert code == 0, err
    code, out, err = run(
        capsys, *c, "complaints", "exclude", "3", "--reason", "malicious", "--note", "evidence kept"
    )
    assert code == 0, err

    # Refusals: one line, exit 1 (refused) or 2 (usage); nothing changes.
    for args, want, text in [
        (
            ("rectify", "1", "--note", "again"),
            1,
            "complaint 1 is closed: rectify is possible only when it is rectifying",
        ),
        (("show", "99"), 1, "unknown complaint 99"),
        (("verify", "2"), 2, "give --valid or --invalid"),
        (("reasons", "1", "--tag", "Z9"), 1, "tag 'Z9' is not a 不满意 tag of set 2026.1"),
        (("appeal", "1", "--note", "x"), 0, ""),
    ]:
        code, out, err = run(capsys, *c, "complaints", *args)
        assert code == want, (args, out, err)
        if text:
            assert text in err and err.count("\n") == 1 and "Traceback" not in err
    code, out, _ = run(capsys, *c, "--json", "report")
    total = json.loads(out)["total"]
    assert (total["ratings"], total["bad"], total["valid_bad"], total["excluded"], total["rectified"]) == (
        2,
        1,
        1,
        2,
        1,
    )
    code, out, _ = run(capsys, *c, "report")
    assert "有效差评" in out.splitlines()[1]
    code, out, _ = run(capsys, *c, "complaints", "tags")
    assert code == 0 and "2026.1*" in out and "V02" in out
