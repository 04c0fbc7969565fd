"""The organisation through its two thin layers: `hcp-gateway halls|departments|windows|staff|
devices|org ...` (main(), exit codes, --json) and /api/v1/org/... (admin token, JSON errors),
on the store_url backend."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adm_support import ADMIN_TOKEN, WINDOW_TOKEN, Recorder, Store, make_config
from aiohttp import web
from district_support import run_cli as run

from gateway import uscc
from gateway.api import make_app
from gateway.store import open_store

D1 = "11370303MB2858350L"
D2 = uscc.complete("11370303004253591")
SECRET = "cd" * 32


def write_config(tmp: Path, store_url: str) -> Path:
    pg = store_url.startswith("postgresql://")
    store = ('url = "%s"' % store_url) if pg else ('path = "%s"' % store_url)
    p = tmp / "gateway.toml"
    p.write_text('[store]\n%s\n\n[hall]\nid = "centre"\nname = "区政务服务中心"\n'
                 'opening_hours = ["08:30-17:30"]\n\n'
                 '[district]\nname = "张店区"\narea_code = "370303"\n' % store)
    return p


def test_cli_organisation(tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, store_url)
    # Secrets never on the command line (issue 14): the device's key and broker password in files.
    (tmp_path / "key").write_text(SECRET + "\n")
    (tmp_path / "pw").write_text("p\n")
    ok = [
        ("halls", "add", "mashang", "--name", "马尚街道便民服务中心", "--kind", "town", "--hours",
         "08:30-12:00,13:30-17:30", "--days", "1-5", "--area-code", "370303004"),
        ("halls", "add", "mashang-v1", "--name", "马尚村便民服务站", "--kind", "village",
         "--parent", "mashang"),
        ("halls", "rename", "mashang", "马尚镇便民服务中心"),
        ("halls", "set", "mashang", "--days", "1-6"),
        ("halls", "move", "mashang-v1", "--no-parent"),
        ("departments", "add", D1.lower(), "--name", "区行政审批局"),
        ("departments", "add", D2, "--name", "区人社局", "--hall", "mashang"),
        ("departments", "rename", D2, "区人力资源和社会保障局"),
        ("devices", "add", "dev-1", "--secret-file", str(tmp_path / "key"), "--broker-password-file",
         str(tmp_path / "pw")),
        ("windows", "add", "A01", "--name", "综合窗口", "--dept", D1),
        ("windows", "add", "M01", "--name", "社保窗口", "--dept", D2, "--hall", "mashang"),
        ("windows", "rename", "A01", "综合受理窗口"),
        ("windows", "move", "A01", "--hall", "mashang", "--dept", D2),
        ("staff", "add", "zhang", "--name", "张三", "--dept", D2),
        ("staff", "rename", "zhang", "张三丰"),
        ("staff", "move", "zhang", "--dept", D1),
        ("devices", "move", "dev-1", "--hall", "mashang"),
        ("windows", "retire", "M01"),
    ]
    for args in ok:
        code, out, err = run(capsys, cfg, *args)
        assert code == 0, (args, out, err)
    code, out, _ = run(capsys, cfg, "--json", "org", "--all")
    tree = json.loads(out)
    assert code == 0 and tree["district"] == {"name": "张店区", "area_code": "370303"}
    halls = {h["hall_id"]: h for h in tree["halls"]}
    assert halls["centre"]["from_config"] and halls["mashang"]["name"] == "马尚镇便民服务中心"
    assert halls["mashang"]["opening_days"] == [1, 2, 3, 4, 5, 6] and halls["mashang-v1"]["parent_id"] is None
    win = {w["window_id"]: w for w in tree["windows"]}
    a01 = win["A01"]
    assert (a01["hall_id"], a01["dept_code"], a01["name"]) == ("mashang", D2, "综合受理窗口")
    assert win["M01"]["retired_ms"] is not None
    assert tree["staff"][0]["display_name"] == "张三丰" and tree["staff"][0]["dept_code"] == D1
    assert tree["devices"] == [{"device_id": "dev-1", "hall_id": "mashang"}]
    code, out, _ = run(capsys, cfg, "org")          # the table, retired hidden
    assert code == 0 and "张店区 (370303)" in out and "M01" not in out and "马尚镇便民服务中心" in out
    code, out, _ = run(capsys, cfg, "--json", "windows", "history", "A01")
    assert [(p["hall_id"], p["dept_code"]) for p in json.loads(out)] == [(None, D1), ("mashang", D2)]

    bad = [
        (("departments", "add", D1[:17] + "X", "--name", "x"), 1, "check character is X, expected L"),
        (("halls", "add", "x", "--name", "x"), 2, "--kind is required"),
        (("halls", "add", "x", "--name", "x", "--kind", "town", "--days", "mon"), 2, "--days must be"),
        (("halls", "add", "x", "--name", "x", "--kind", "town", "--timezone", "Mars/Base"), 1, "not a known"),
        (("halls", "retire", "mashang"), 1, "still has"),
        (("halls", "retire", "centre"), 1, "default hall"),
        (("windows", "move", "A01"), 2, "give --hall and/or --dept"),
        (("windows", "move", "NOPE", "--hall", "centre"), 1, "unknown window NOPE"),
        (("staff", "retire", "nobody"), 1, "unknown staff account nobody"),
        (("org", "at", "dev-1:1:1"), 1, "unknown record dev-1:1:1"),
    ]
    for args, want, text in bad:
        code, out, err = run(capsys, cfg, *args)
        assert code == want and text in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)


@pytest.fixture
async def api(tmp_path: Path, store_url: str) -> AsyncIterator[tuple[aiohttp.ClientSession, str, Store]]:
    cfg = make_config(tmp_path, store_url)
    db = await open_store(cfg.store.url)
    app = make_app(db, cfg, Recorder())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + ADMIN_TOKEN}) as http:
        yield http, "http://127.0.0.1:%d/api/v1/org" % port, Store(db, cfg)
    await runner.cleanup()
    await db.close()


async def test_api_organisation(api: tuple[aiohttp.ClientSession, str, Store]) -> None:
    http, base, store = api

    async def call(method: str, path: str, body: object = None, status: int = 200) -> Any:
        async with http.request(method, base + path, json=body) as r:
            data = await r.json()
            assert r.status == status, (method, path, r.status, data)
            return data

    h = await call("POST", "/halls", {"hall_id": "t1", "name": "甲镇便民服务中心", "kind": "town",
                                      "opening_hours": ["09:00-17:00"],
                                      "opening_days": [1, 2, 3, 4, 5, 6]}, 201)
    assert h["opening_hours"] == ["09:00-17:00"] and h["timezone"] == "Asia/Shanghai"
    await call("POST", "/halls", {"hall_id": "v1", "name": "甲村代办点", "kind": "village",
                                  "parent": "t1"}, 201)
    h = await call("PATCH", "/halls/v1", {"parent": None, "name": "甲村便民服务站"})
    assert h["parent_id"] is None and h["name"] == "甲村便民服务站"
    await call("POST", "/departments", {"code": D1, "name": "区行政审批局", "hall": "t1"}, 201)
    d = await call("PATCH", "/departments/" + D1, {"name": "区审批局"})
    assert d["name"] == "区审批局"
    w = await call("POST", "/windows", {"window": "T01", "name": "甲镇综合窗口", "dept_code": D1,
                                        "hall": "t1"}, 201)
    assert w["hall_id"] == "t1"
    w = await call("PATCH", "/windows/T01", {"name": "综合窗", "hall": "v1"})
    assert (w["name"], w["hall_id"]) == ("综合窗", "v1")
    hist = await call("GET", "/windows/T01/history")
    assert [p["hall_id"] for p in hist["places"]] == ["t1", "v1"]
    s = await call("POST", "/staff", {"account": "li", "name": "李四", "dept_code": D1}, 201)
    assert s["dept_code"] == D1
    await call("PATCH", "/staff/li", {"name": "李小四"})
    await call("POST", "/staff/li/retire")
    await call("POST", "/windows/T01/retire")
    tree = await call("GET", "")
    assert {h["hall_id"] for h in tree["halls"]} == {"hall-1", "t1", "v1"}
    assert tree["windows"] == [] and tree["staff"] == []          # retired hidden ...
    tree = await call("GET", "?all=1")
    assert len(tree["windows"]) == 1
    # Errors: JSON with a stable code, 4xx, nothing changed.
    e = await call("POST", "/departments", {"code": D1[:17] + "0", "name": "x"}, 400)
    assert e["error"] == "bad_dept_code"
    e = await call("POST", "/halls", {"hall_id": "t2", "name": "x"}, 400)
    assert e["error"] == "missing_field"
    e = await call("POST", "/halls", {"hall_id": "t2", "name": "x", "kind": "town", "colour": "red"}, 400)
    assert e["error"] == "unknown_field"
    e = await call("POST", "/halls/t1/retire", None, 409)
    assert e["error"] == "hall_in_use"
    e = await call("PUT", "/devices/dev-x/hall", {"hall": "t1"}, 404)
    assert e["error"] == "unknown_device"
    e = await call("GET", "/records/dev-1:1:1", None, 404)
    assert e["error"] == "unknown_record"
    async with http.get(base, headers={"Authorization": "Bearer " + WINDOW_TOKEN}) as r:
        assert r.status == 401      # the window system's token cannot change the organisation
    n = await store.db.read(lambda tx: len(tx.org.list_halls()))
    assert n == 2
