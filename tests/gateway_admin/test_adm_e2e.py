"""End to end: real mosquitto, the real gateway process (service.py starts gateway.api), a
protocol-level test device, the real hcp-gateway console script and the HTTP API."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adm_support import ADMIN_TOKEN, WINDOW_TOKEN

from simulator.netutil import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
from gw_support import GatewayEnv, TestDevice, db_query, make_env, wait_for  # noqa: E402

HCP_GATEWAY = Path(sys.executable).parent / "hcp-gateway"

pytestmark = pytest.mark.slow


async def hcp(env: GatewayEnv, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(HCP_GATEWAY),
        "--config",
        str(env.config_path),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def new_commands(dev: TestDevice, t: str, seen: int) -> list[dict[str, Any]]:
    return dev.commands(t)[seen:]


async def test_invitation_flow_through_the_real_gateway(tmp_path: Path) -> None:
    port = free_port()
    extra = (
        '\n[http]\nhost = "127.0.0.1"\nport = %d\nwindow_token = "%s"\nadmin_token = "%s"\n'
        '\n[hall]\nopening_hours = ["00:00-24:00"]\nopening_days = [1, 2, 3, 4, 5, 6, 7]\n'
        % (port, WINDOW_TOKEN, ADMIN_TOKEN)
    )
    env = make_env(tmp_path, ["dev-a", "dev-b"], extra_config=extra)
    dev = env.device("dev-a")
    try:
        for args in (
            ("windows", "add", "A01", "--name", "综合窗口"),
            ("staff", "add", "zhang", "--name", "张三"),
        ):
            code, _, err = await hcp(env, *args)
            assert code == 0, err
        ready = env.gateway.start()
        assert "http=127.0.0.1:%d" % port in ready
        base = "http://127.0.0.1:%d" % port
        await dev.connect()
        await dev.hello()
        # Not bound yet: the hello is answered with `unpaired`.
        await wait_for(lambda: len(dev.commands("unpaired")) == 1, what="unpaired after hello")

        # Binding through the CLI reaches the device at once (via the service's admin API).
        code, out, err = await hcp(env, "pair", "dev-a", "--window", "A01", "--staff", "zhang")
        assert code == 0 and err == "", err
        await wait_for(lambda: len(dev.commands("paired")) == 1, what="paired")
        assert {k: dev.commands("paired")[0][k] for k in ("win", "clerk")} == {"win": "A01", "clerk": "张三"}

        async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + WINDOW_TOKEN}) as http:
            case = {
                "window": "A01",
                "case_no": "370303-2026-000777",
                "task_name": "不动产登记",
                "countdown_s": 30,
            }
            async with http.post(base + "/api/v1/invitations", json=case) as r:
                assert r.status == 201, await r.text()
                inv = (await r.json())["invitation_id"]
            await wait_for(lambda: len(dev.commands("invite")) == 1, what="invite")
            got = dev.commands("invite")[0]
            assert (got["i"], got["case"], got["item"], got["cd"]) == (inv, case["case_no"], "不动产登记", 30)

            # The citizen presses (device clock synced): rated; a second press is an extra.
            now_s = int(time.time())
            rid = await dev.press(kind="rated", grade="s", inv=inv, w=now_s)
            rid2 = await dev.press(kind="rated", grade="vd", inv=inv, w=now_s + 1)
            await wait_for(lambda: rid in dev.acks and rid2 in dev.acks, what="acks")
            async with http.get(base + "/api/v1/invitations/" + inv) as r:
                body = await r.json()
            assert (body["status"], body["grade"], body["record_id"]) == ("rated", "s", rid)
            rows = db_query(
                env.db_path, "SELECT record_id, staff_account, window_id, flags FROM records ORDER BY rs"
            )
            assert rows == [(rid, "zhang", "A01", ""), (rid2, "zhang", "A01", "extra")]

            # A pending invitation is restored when the device says hello again (reboot).
            async with http.post(base + "/api/v1/invitations", json={**case, "case_no": "C-2"}) as r:
                inv2 = (await r.json())["invitation_id"]
            await wait_for(lambda: len(dev.commands("invite")) == 2, what="second invite")
            await dev.hello()
            await wait_for(lambda: len(dev.commands("invite")) == 3, what="invite restored after hello")
            assert dev.commands("invite")[2]["i"] == inv2 and len(dev.commands("paired")) == 2
            async with http.delete(base + "/api/v1/invitations/" + inv2) as r:
                assert r.status == 200 and (await r.json())["status"] == "cancelled"
            await wait_for(lambda: [c["i"] for c in dev.commands("cancel")] == [inv2], what="cancel")

        code, out, err = await hcp(env, "unpair", "dev-a")
        assert code == 0, err
        await wait_for(lambda: len(dev.commands("unpaired")) == 2, what="unpaired")
        assert dev.bad_commands == 0
        code, out, _ = await hcp(env, "--json", "report")
        rep = json.loads(out)
        (row,) = rep["rows"]
        # C-2 was withdrawn (cancelled): not a case (issue 16).
        assert (row["cases"], row["ratings"], row["extras"], row["cancelled"], row["grades"]["s"]) == (
            1,
            1,
            1,
            1,
            1,
        )
    finally:
        await dev.disconnect()
        env.gateway.terminate()
        env.broker.stop()
