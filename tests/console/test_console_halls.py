"""A console account scoped to halls sees what the district's organisation puts in those
halls (gateway/org.py), on both backends: a window moved to another hall goes with its device,
an unbound device is its own hall's, and moving them back moves them back."""

from __future__ import annotations

import re

from console_support import PASSWORD, App

from gateway import accounts, org
from gateway.org import HallSpec


def devices_in(text: str) -> list[str]:
    return re.findall(r'data-device="([^"]+)"', text)


async def test_hall_scope_follows_the_district_halls(app: App) -> None:
    default = app.cfg.hall
    await accounts.add_account(app.store, "admin_h1", PASSWORD, "admin", "test", halls=["hall-1"])
    h1 = await app.client("admin_h1")
    h2 = await app.client("admin_h2")
    # Everything is in the default hall (hall-1) at first; dev-4 is bound to no window.
    _, text, _ = await h1.get("/devices")
    assert devices_in(text) == ["dev-1", "dev-2", "dev-3", "dev-4"]
    _, text, _ = await h2.get("/devices")
    assert devices_in(text) == []

    # The district opens hall-2; window B01 (dev-3's) and the unbound dev-4 move there.
    await org.add_hall(app.store, default, "hall-2", HallSpec(name="某某镇便民服务中心", kind="town"),
                       "cli:admin")
    await org.move_window(app.store, default, "B01", "cli:admin", hall_id="hall-2")
    await org.move_device(app.store, default, "dev-4", "hall-2", "cli:admin")
    _, text, _ = await h1.get("/devices")
    assert devices_in(text) == ["dev-1", "dev-2"]
    _, text, _ = await h2.get("/devices")
    assert devices_in(text) == ["dev-3", "dev-4"]
    assert (await h2.get("/devices/dev-3"))[0] == 200 and (await h2.get("/devices/dev-4"))[0] == 200
    assert (await h1.get("/devices/dev-3"))[0] == 403 and (await h1.get("/devices/dev-4"))[0] == 403
    _, text, _ = await h2.get("/org")
    assert re.findall(r'data-window="([^"]+)"', text) == ["B01"]
    # Pairing is checked against the same halls: hall-2's admin cannot take hall-1's window.
    status, text, _ = await h2.post("/pairing", {"device": "dev-4", "window": "A01", "staff_account": "zhang",
                                                 "force": "1"})
    assert status == 403 and "不在您的管理范围内" in text

    # Back to hall-1 (the window's place history keeps both periods).
    await org.move_window(app.store, default, "B01", "cli:admin", hall_id="hall-1")
    await org.move_device(app.store, default, "dev-4", "hall-1", "cli:admin")
    _, text, _ = await h1.get("/devices")
    assert devices_in(text) == ["dev-1", "dev-2", "dev-3", "dev-4"]
    _, text, _ = await h2.get("/devices")
    assert devices_in(text) == []
