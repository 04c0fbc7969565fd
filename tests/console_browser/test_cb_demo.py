"""`hcp-sim demo --console`: after the run the hall keeps running and prints the console's
address with a one-time login; that login works once and must set its own password."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import aiohttp
import pytest

from simulator.hall import Hall, HallOptions
from simulator.report import Console

pytestmark = pytest.mark.slow


async def test_demo_leaves_the_console_open_with_a_one_time_login(tmp_path: Path) -> None:
    out = io.StringIO()
    hall = Hall(HallOptions(devices=2, departments=1, minutes=0.5, speed=10, workdir=tmp_path / "hall",
                            keep=True, console=True, push=False, countdown_s=10, boot_spread_s=0.2),
                Console(out=out, quiet=True))
    res = await asyncio.wait_for(hall.run(close=False), 240)
    offer = asyncio.create_task(hall.offer_console())
    try:
        assert res.ok
        deadline = asyncio.get_running_loop().time() + 60
        while "one-time login" not in out.getvalue():
            assert not offer.done(), offer.exception()
            assert asyncio.get_running_loop().time() < deadline, out.getvalue()[-2000:]
            await asyncio.sleep(0.1)
        text = out.getvalue()
        base = re.search(r"The web console is open: (http://127\.0\.0\.1:\d+)/", text).group(1)  # type: ignore[union-attr]
        password = re.search(r"account demo-admin, password (\S+)", text).group(1)  # type: ignore[union-attr]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(base + "/login") as r:
                token = re.search(r'name="_csrf" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
            form = {"_csrf": token, "name": "demo-admin", "password": password}
            async with s.post(base + "/login", data=form, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/account"   # set your own first
            async with s.get(base + "/devices", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/account"
            async with s.get(base + "/account") as r:
                page = await r.text()
                csrf = re.search(r'name="_csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            new = {"_csrf": csrf, "old": password, "new": "Own-password-1", "new2": "Own-password-1"}
            async with s.post(base + "/account/password", data=new, allow_redirects=False) as r:
                assert r.status == 303
            async with s.get(base + "/devices") as r:
                assert r.status == 200 and "hcp-sim-0001" in await r.text()
        assert not offer.done()      # still serving until cancelled (Ctrl-C)
    finally:
        offer.cancel()
        await asyncio.gather(offer, return_exceptions=True)
        await hall.close()
    assert hall.gateway is not None and not hall.gateway.running
