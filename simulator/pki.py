"""Test certificates for a TLS broker: a CA and a server certificate for 127.0.0.1, made with openssl.

For the tests and benches of the firmware's TLS path until the project's own `hcp-gateway tls init`
makes them (the hardening issue); the device gets the CA's PEM as config.json's broker.ca.
EC P-256 keys: what an ESP32 verifies fastest, and Mbed TLS's smallest handshake.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> dict[str, Path]:
    """In d: ca.pem/ca.key, server.pem/server.key (signed by the CA, SAN IP:127.0.0.1 and
    DNS:localhost), and other.pem, an unrelated CA for negative tests."""
    d.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30",
                 "-subj", f"/CN=hcp test {name}", cwd=d)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "30", "-extfile", "san.ext", cwd=d)
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return {n: d / f"{n}.pem" for n in ("ca", "other", "server")} | {"key": d / "server.key"}


def tls_listener_conf(port: int, pki: dict[str, Path], log: Path) -> str:
    """A mosquitto config with one TLS listener on 127.0.0.1 (anonymous: for transport tests)."""
    return "\n".join([
        f"listener {port} 127.0.0.1", "allow_anonymous true", f"cafile {pki['ca']}",
        f"certfile {pki['server']}", f"keyfile {pki['key']}", "tls_version tlsv1.2",
        f"log_dest file {log}", "user root", ""])
