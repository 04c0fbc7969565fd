"""flash.py --ca (issue 14, item 5): the hall CA goes into the device's config.json (broker.ca),
a file that is not a CA certificate is refused before the board is touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flashtool import device_config
from flashtool.errors import FlashError
from gateway import tls


def test_the_ca_is_written_into_the_broker_section(tmp_path: Path) -> None:
    made = tls.init(tmp_path / "tls", ["gateway.hall.local"])
    pem = device_config.read_ca(str(made.ca_cert))
    ident = device_config.Identity("hcp-0a1b2c3d4e5f", "hall-1", "net", "pw", "gateway.hall.local", 8883, pem)
    cfg = json.loads(device_config.encode(device_config.build(ident, None, rotate=False)))
    assert cfg["broker"]["ca"] == pem and cfg["broker"]["port"] == 8883
    # without --ca nothing changes
    plain = device_config.build(device_config.Identity("hcp-0a1b2c3d4e5f", "hall-1", "net", "pw", "h", 1883),
                                None, rotate=False)
    assert "ca" not in plain["broker"]


def test_a_private_key_or_garbage_is_not_taken_for_a_ca(tmp_path: Path) -> None:
    made = tls.init(tmp_path / "tls", ["h"])
    for bad in (made.server_key, tmp_path / "missing.pem"):
        with pytest.raises(FlashError, match="--ca"):
            device_config.read_ca(str(bad))
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\xff\xfe not a certificate")
    with pytest.raises(FlashError, match="--ca"):
        device_config.read_ca(str(junk))
