"""The service's log: admin actions (registration, pairing, unpairing, windows, staff) logged
by the running service whoever made them (here the CLI, straight into the store), once; the
JSON format (config or --log-format), times with their zone, no Python reprs, no secrets."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import Path

import pytest
from gw_support import make_env, wait_for
from ops_support import cli

from gateway.oplog import describe

pytestmark = pytest.mark.slow
REPR = re.compile(r"\{'|\b[A-Z]\w+\(\w+=|<[\w.]+ object at 0x")
ZONED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")


async def _admin_actions(config: Path, tmp: Path) -> tuple[str, str]:
    secret, pw = secrets.token_hex(32), "broker-pw-" + secrets.token_hex(8)
    (tmp / "s").write_text(secret + "\n")
    (tmp / "p").write_text(pw + "\n")
    for args in (["windows", "add", "A07", "--dept", "11540100MB00000008", "--name", "市场监管 A07"],
                 ["staff", "add", "zhangsan", "--name", "张三"],
                 ["devices", "add", "dev-new", "--secret-file", str(tmp / "s"), "--broker-password-file",
                  str(tmp / "p")],
                 ["pair", "dev-new", "--window", "A07", "--staff", "zhangsan"],
                 ["unpair", "dev-new"]):
        rc, out, err = await cli(config, *args)
        assert rc == 0, (args, err)
    return secret, pw


async def test_admin_actions_in_the_json_log(tmp_path: Path, store_url: str) -> None:
    env = await asyncio.to_thread(make_env, tmp_path, ["dev-a"], store_url=store_url,
                                  extra_config='\n[log]\nformat = "json"\n')
    try:
        await asyncio.to_thread(env.gateway.start)
        secret, pw = await _admin_actions(env.config_path, tmp_path)
        await wait_for(lambda: "binding.close" in env.gateway.log_text(), 15, "the unpair in the log")
        await asyncio.to_thread(env.gateway.terminate)
        text = env.gateway.log_text()
        assert secret not in text and pw not in text
        entries = []
        for line in text.splitlines():
            if line.startswith("gateway ready "):
                continue
            e = json.loads(line)                      # every log line is one JSON object
            assert {"ts", "level", "logger", "msg"} <= set(e) and ZONED.match(e["ts"]), line
            assert not REPR.search(e["msg"]), line
            entries.append(e)
        admin = [e for e in entries if e.get("event") == "admin"]
        assert [e["action"] for e in admin] == ["window.add", "staff.add", "device.add", "binding.open",
                                                "binding.close"]
        assert all(e["actor"].startswith("cli:") and e["logger"] == "gateway.admin" for e in admin)
        pair = admin[3]
        assert pair["subject"] == "dev-new" and pair["detail"]["window"] == "A07"
        assert pair["msg"].startswith("admin: binding.open dev-new ") and "staff=zhangsan" in pair["msg"]
        assert admin[2]["msg"].startswith("admin: device.add dev-new") and admin[2]["subject"] == "dev-new"
        assert any(e["msg"].startswith("stopped: received ") for e in entries)
    finally:
        await asyncio.to_thread(env.gateway.terminate)
        await asyncio.to_thread(env.broker.stop)


async def test_text_log_has_zoned_times_and_no_reprs_and_a_new_leader_logs_nothing_twice(
        tmp_path: Path, store_url: str) -> None:
    env = await asyncio.to_thread(make_env, tmp_path, ["dev-a"], store_url=store_url)
    try:
        await asyncio.to_thread(env.gateway.start)
        await _admin_actions(env.config_path, tmp_path)
        await wait_for(lambda: "binding.close" in env.gateway.log_text(), 15, "the unpair in the log")
        await asyncio.to_thread(env.gateway.terminate)
        await asyncio.to_thread(env.gateway.start)          # the next leader carries on from the cursor
        rc, out, err = await cli(env.config_path, "staff", "add", "lisi", "--name", "李四")
        assert rc == 0, err
        await wait_for(lambda: "staff.add lisi" in env.gateway.log_text(), 15, "the new action")
        await asyncio.to_thread(env.gateway.terminate)
        text = env.gateway.log_text()
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("gateway ready ")]
        starts = [ln for ln in lines if ZONED.match(ln)]
        assert starts and all(not REPR.search(ln) for ln in starts), [ln for ln in starts if REPR.search(ln)]
        assert text.count("admin: binding.open dev-new") == 1 and text.count("admin: staff.add zhangsan") == 1
        assert "admin: staff.add lisi" in text
    finally:
        await asyncio.to_thread(env.gateway.terminate)
        await asyncio.to_thread(env.broker.stop)


async def test_log_format_flag_overrides_the_config(tmp_path: Path, store_url: str) -> None:
    env = await asyncio.to_thread(make_env, tmp_path, ["dev-a"], store_url=store_url,
                                  extra_config='\n[log]\nformat = "text"\n')
    proc = await asyncio.create_subprocess_exec(
        *(env.gateway.python, "-m", "gateway.cli", "--config", str(env.config_path), "serve", "--log-format",
          "json"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert ready.startswith(b"gateway ready ")
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        lines = err.decode().splitlines()
        assert lines and all(json.loads(ln)["logger"].startswith("gateway") for ln in lines), lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.to_thread(env.broker.stop)


def test_describe_quotes_values_with_spaces() -> None:
    line, fields = describe({"id": 3, "action": "window.add", "actor": "cli:root",
                             "detail_json": json.dumps({"subject": "A07", "name": "市场监管 A07",
                                                        "dept_code": ""})})
    assert line == 'admin: window.add A07 dept_code="" name="市场监管 A07" by cli:root'
    assert fields["detail"] == {"name": "市场监管 A07", "dept_code": ""} and fields["audit_id"] == 3
