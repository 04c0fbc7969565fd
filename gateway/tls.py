"""TLS for the hall LAN: the hall's own CA, the server certificate, and the SSL contexts.

`hcp-gateway tls init` (gateway/tls_cli.py) makes, with the `cryptography` library:
    ca.pem      the hall CA's certificate: public; devices (flash.py writes it into their
                config), the gateway's MQTT client and the simulator trust it
    ca.key      the CA's private key (0600): only needed to issue another server certificate
    server.pem  the server certificate for the given host names / IPs, then the CA
                certificate (the chain mosquitto's `certfile` and aiohttp serve)
    server.key  its private key (0600): mosquitto's `keyfile`, [http] tls_key
One CA per hall: nothing outside the hall needs to trust it, and no public CA can issue a
certificate the devices would accept. The private keys are written 0600 from the start
(created with that mode, never widened) and a wider key is refused when loaded.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError

CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.pem", "ca.key", "server.pem", "server.key"
DEFAULT_DAYS = 3650        # ten years: a hall renews its certificate with the hardware
CA_DAYS = 7300


class TlsError(ConfigError):
    """A TLS file is missing, unreadable, too widely readable or not what it should be (a
    config error: the service refuses to start with one line, exit 2)."""


def check_private(path: Path) -> None:
    """A private key must be readable by its owner only (0600 or stricter)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise TlsError("TLS key %s does not exist" % path) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TlsError("TLS key %s is readable by others (mode %o): chmod 600 %s"
                       % (path, stat.S_IMODE(mode), path))


def server_context(cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """A server context for [http] tls_cert / tls_key (TLS 1.2 at least)."""
    if cert is None or key is None:
        raise TlsError("a TLS server needs both a certificate and a key")
    check_private(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as e:
        raise TlsError("cannot load TLS certificate %s / key %s: %s" % (cert, key, e)) from None
    return ctx


def client_context(ca: Path, *, trust_leaf: bool = False) -> ssl.SSLContext:
    """A client context that trusts only `ca` (the hall CA), checking the host name.
    trust_leaf: `ca` may be the server certificate itself (the CLI calling its own service
    trusts exactly the certificate the service presents)."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as e:
        raise TlsError("cannot load CA certificate %s: %s" % (ca, e)) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if trust_leaf:
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


@dataclass(frozen=True)
class Made:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    names: tuple[str, ...]
    reused_ca: bool


def _write(path: Path, data: bytes, private: bool) -> None:
    """Write via a temporary file created with its final mode (a key is never readable by
    others, not even for a moment), then rename into place."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        os.fchmod(fd, 0o600 if private else 0o644)  # O_CREAT's mode is masked by umask only
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def init(directory: Path, names: list[str], days: int = DEFAULT_DAYS, *, force: bool = False,
         now: dt.datetime | None = None) -> Made:
    """Make (or reuse) the hall CA in `directory` and issue a server certificate for `names`
    (host names and IP addresses; localhost and 127.0.0.1 are always added, so local tools
    reach the service by loopback). An existing server certificate is replaced only with
    force; an existing CA is kept (devices already trust it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / n for n in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)]
    ca_cert_p, ca_key_p, srv_cert_p, srv_key_p = paths
    if srv_cert_p.exists() and not force:
        raise TlsError("%s exists: pass --force to issue a new server certificate" % srv_cert_p)
    all_names = list(dict.fromkeys([*names, "localhost", "127.0.0.1"]))
    sans: list[x509.GeneralName] = []
    for n in all_names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            if not n or any(c.isspace() or c in "/:@" for c in n):
                raise TlsError("%r is neither a host name nor an IP address" % n) from None
            sans.append(x509.DNSName(n))
    now = now or dt.datetime.now(dt.UTC)
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()

    reused = ca_cert_p.exists() and ca_key_p.exists()
    if reused:
        check_private(ca_key_p)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_p.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_p.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise TlsError("%s is not the EC key `tls init` makes" % ca_key_p)
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "haochaping hall"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "haochaping hall CA")])
        ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, hashes.SHA256()))
        _write(ca_key_p, ca_key.private_bytes(pem, pkcs8, none), private=True)
        _write(ca_cert_p, ca_cert.public_bytes(pem), private=False)

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, all_names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(srv_key_p, key.private_bytes(pem, pkcs8, none), private=True)
    _write(srv_cert_p, cert.public_bytes(pem) + ca_cert.public_bytes(pem), private=False)
    return Made(ca_cert_p, ca_key_p, srv_cert_p, srv_key_p, tuple(all_names), reused)
