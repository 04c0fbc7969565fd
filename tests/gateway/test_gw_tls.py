"""Issue 14, item 5 (broker and HTTP side): TLS for the hall LAN, private files 0600.

`hcp-gateway tls init` makes the hall CA and a server certificate (cryptography); mosquitto
listens with TLS; the gateway process and a simulated device (the real firmware on the host
HAL, its CA from config.json as flash.py writes it) connect over it and a press is stored and
acked; the HTTP API serves HTTPS from [http] tls_cert / tls_key. Wrong CA, wrong host name,
plain text to the TLS port and a key readable by others all fail, with one line.
"""

from __future__ import annotations

import secrets
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from gw_support import GW_PASSWORD, db_query, wait_for
from harness.mqtt import MqttProbe

from gateway import tls
from simulator.broker import Mosquitto, standard_acl
from simulator.gateway_proc import GatewayProcess, GatewayProcessError, write_config
from simulator.netutil import free_port
from simulator.vdevice import VirtualDevice

HCP_GATEWAY = [sys.executable, "-m", "gateway.cli"]
ADMIN = "tls-admin-token-" + "a" * 16


def tls_init(directory: Path, *hosts: str, force: bool = False) -> subprocess.CompletedProcess[str]:
    args = [*HCP_GATEWAY, "tls", "init", "--dir", str(directory)]
    for h in hosts:
        args += ["--host", h]
    if force:
        args.append("--force")
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    r = tls_init(d, "gateway.hall.local", "192.168.10.2")
    assert r.returncode == 0, r.stderr
    return d


def test_tls_init_makes_a_ca_and_a_server_certificate_with_private_keys_0600(pki: Path) -> None:
    from cryptography import x509
    for name in (tls.CA_KEY, tls.SERVER_KEY):
        assert stat.S_IMODE((pki / name).stat().st_mode) == 0o600, name
    for name in (tls.CA_CERT, tls.SERVER_CERT):
        assert stat.S_IMODE((pki / name).stat().st_mode) == 0o644, name
    cert = x509.load_pem_x509_certificate((pki / tls.SERVER_CERT).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"gateway.hall.local", "localhost"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"192.168.10.2", "127.0.0.1"}
    # the chain verifies against the CA, for those names only
    ctx = tls.client_context(pki / tls.CA_CERT)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_tls_init_keeps_the_ca_and_refuses_to_overwrite_without_force(pki: Path, tmp_path: Path) -> None:
    d = tmp_path / "t"
    assert tls_init(d, "a.local").returncode == 0
    ca = (d / tls.CA_CERT).read_bytes()
    r = tls_init(d, "a.local")
    assert r.returncode != 0 and "--force" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = tls_init(d, "b.local", force=True)
    assert r.returncode == 0 and "kept CA" in r.stdout
    assert (d / tls.CA_CERT).read_bytes() == ca          # devices already trust it
    r = tls_init(tmp_path / "u", "bad name/x")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def _broker(tmp: Path, pki: Path, users: dict[str, str]) -> Mosquitto:
    return Mosquitto(tmp / "mq", users=users, acl=standard_acl(), client_ids={"gateway": "hcp-gateway"},
                     tls_files=(pki / tls.SERVER_CERT, pki / tls.SERVER_KEY))


async def test_gateway_and_a_simulated_device_over_tls(pki: Path, tmp_path: Path) -> None:
    secret = secrets.token_hex(32)
    broker = _broker(tmp_path, pki, {"gateway": GW_PASSWORD, "dev-t": "dev-t-pw"})
    broker.start()
    gw = None
    dev = None
    try:
        db_path = tmp_path / "gw" / "gateway.db"
        db_path.parent.mkdir()
        cfg_path = write_config(tmp_path / "gw" / "gateway.toml", mqtt_port=broker.tls_port,
                                mqtt_password=GW_PASSWORD, db_path=db_path,
                                broker_toml=broker.gateway_broker_toml())
        cfg_path.write_text(cfg_path.read_text().replace(
            "[store]", 'tls_ca = "%s"\n\n[store]' % (pki / tls.CA_CERT), 1))
        gw = GatewayProcess(cfg_path)
        gw.start()
        assert "mqtt=127.0.0.1:%d" % broker.tls_port in (gw.ready_line or "")
        # registration through the gateway's config ([broker] dynsec over TLS, too)
        from gateway.config import load_config
        from gateway.devices import device_service
        from gateway.store import open_store
        db = await open_store(db_path)
        try:
            await device_service(db, load_config(cfg_path)).register("dev-t", secret, "dev-t-pw", fw="test")
        finally:
            await db.close()
        dev = VirtualDevice("dev-t", tmp_path / "dev", secret, "127.0.0.1", broker.tls_port, "dev-t-pw",
                            broker_ca=(pki / tls.CA_CERT).read_text())
        dev.provision()
        await dev.power_on()
        await wait_for(lambda: dev is not None and dev.online, 20, "device online over TLS")
        press = await dev.press(0)
        assert press.record_id
        await wait_for(lambda: dev is not None and dev.journal_depth() == 0, 20, "ack over TLS")
        assert db_query(db_path, "SELECT record_id FROM records") == [(press.record_id,)]
    finally:
        if dev is not None:
            await dev.stop()
        if gw is not None:
            gw.terminate()
        broker.stop()


def test_tls_refuses_wrong_ca_wrong_name_and_plain_text(pki: Path, tmp_path: Path) -> None:
    with _broker(tmp_path, pki, {"gateway": GW_PASSWORD, "dev-a": "pa"}) as broker:
        # plain MQTT to the TLS port: no CONNACK
        with MqttProbe(broker.host, broker.tls_port, "dev-a", "pa") as p, \
                pytest.raises((TimeoutError, OSError)):
            p.connect(timeout=2)
        # another CA
        other = tmp_path / "other"
        assert tls_init(other, "127.0.0.1").returncode == 0
        with pytest.raises(ssl.SSLCertVerificationError):
            _tls_handshake(broker.tls_port, tls.client_context(other / tls.CA_CERT), "127.0.0.1")
        # a name the certificate does not have
        with pytest.raises(ssl.SSLCertVerificationError):
            _tls_handshake(broker.tls_port, tls.client_context(pki / tls.CA_CERT), "evil.example")
        _tls_handshake(broker.tls_port, tls.client_context(pki / tls.CA_CERT), "localhost")


def _tls_handshake(port: int, ctx: ssl.SSLContext, name: str) -> None:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name):
        pass


def test_a_private_key_readable_by_others_is_refused(pki: Path, tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_bytes((pki / tls.SERVER_KEY).read_bytes())
    key.chmod(0o640)
    with pytest.raises(tls.TlsError, match="readable by others"):
        tls.server_context(pki / tls.SERVER_CERT, key)


# ---- HTTPS for the API --------------------------------------------------------------------------

def _https_config(tmp: Path, pki: Path, key: Path, mqtt_port: int, http_port: int) -> Path:
    p = write_config(tmp / "gateway.toml", mqtt_port=mqtt_port, mqtt_password=GW_PASSWORD,
                     db_path=tmp / "gateway.db", client_id="hcp-gateway")
    p.write_text(p.read_text() + '\n[http]\nhost = "127.0.0.1"\nport = %d\nadmin_token = "%s"\n'
                 'tls_cert = "%s"\ntls_key = "%s"\n' % (http_port, ADMIN, pki / tls.SERVER_CERT, key))
    return p


async def test_api_serves_https(pki: Path, tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_bytes((pki / tls.SERVER_KEY).read_bytes())
    key.chmod(0o600)
    port = free_port()
    with Mosquitto(tmp_path / "mq", users={"gateway": GW_PASSWORD}, acl=standard_acl(),
                   client_ids={"gateway": "hcp-gateway"}) as broker:
        cfg = _https_config(tmp_path, pki, key, broker.port, port)
        gw = GatewayProcess(cfg)
        try:
            line = gw.start()
            assert "https=127.0.0.1:%d" % port in line
            ctx = tls.client_context(pki / tls.CA_CERT)
            async with aiohttp.ClientSession() as http:
                async with http.get("https://127.0.0.1:%d/api/v1/bindings" % port, ssl=ctx,
                                    headers={"Authorization": "Bearer " + ADMIN}) as r:
                    assert r.status == 200 and await r.json() == {"bindings": []}
                async with http.get("https://localhost:%d/api/v1/bindings" % port, ssl=ctx) as r:
                    assert r.status == 401 and (await r.json())["error"] == "unauthorized"
                # plain HTTP to the HTTPS port gets nothing useful
                with pytest.raises(aiohttp.ClientError):
                    async with http.get("http://127.0.0.1:%d/api/v1/bindings" % port) as r:
                        await r.read()
                # an untrusting client refuses the hall's certificate
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    async with http.get("https://127.0.0.1:%d/api/v1/bindings" % port) as r:
                        await r.read()
        finally:
            gw.terminate()


def test_gateway_refuses_to_start_with_a_widely_readable_tls_key(pki: Path, tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_bytes((pki / tls.SERVER_KEY).read_bytes())
    key.chmod(0o644)
    cfg = _https_config(tmp_path, pki, key, free_port(), free_port())
    gw = GatewayProcess(cfg)
    t0 = time.monotonic()
    with pytest.raises(GatewayProcessError, match="exited with code 2"):
        gw.start(timeout=30)
    assert time.monotonic() - t0 < 30
    out = gw.log_text()
    assert "readable by others" in out and "Traceback" not in out, out


def test_tls_options_in_the_config_are_checked(tmp_path: Path) -> None:
    from gateway.config import parse_config
    cfg = parse_config({"store": {"path": "g.db"}, "mqtt": {"tls_ca": "tls/ca.pem"}}, tmp_path)
    assert cfg.mqtt.tls_ca == tmp_path / "tls" / "ca.pem"
