"""Test certificates for a TLS broker, made by the gateway's own `hcp-gateway tls init` code
(gateway/tls.py: EC P-256, what an ESP32 verifies fastest and Mbed TLS's smallest handshake).

The device gets the CA's PEM as config.json's broker.ca; mosquitto gets the server certificate
(with the CA appended) and its key.
"""

from __future__ import annotations

from pathlib import Path

from gateway import tls


def make_pki(d: Path) -> dict[str, Path]:
    """In d: ca.pem/ca.key, server.pem/server.key (signed by the CA, for 127.0.0.1 and
    localhost), and other.pem, an unrelated CA for negative tests."""
    d.mkdir(parents=True, exist_ok=True)
    made = tls.init(d, ["127.0.0.1"])
    other = tls.init(d / "other", ["127.0.0.1"])
    (d / "other.pem").write_bytes(other.ca_cert.read_bytes())
    return {"ca": made.ca_cert, "other": d / "other.pem", "server": made.server_cert, "key": made.server_key}


def tls_listener_conf(port: int, pki: dict[str, Path], log: Path) -> str:
    """A mosquitto config with one TLS listener on 127.0.0.1 (anonymous: for transport tests)."""
    return "\n".join([
        f"listener {port} 127.0.0.1", "allow_anonymous true", f"cafile {pki['ca']}",
        f"certfile {pki['server']}", f"keyfile {pki['key']}", "tls_version tlsv1.2",
        f"log_dest file {log}", "user root", ""])
