"""TLS to the hall broker on MicroPython (ESP32 and the unix port): the tls module, the broker's
certificate checked against the CA that flash.py wrote into config.json (broker.ca, PEM).

The CA goes to Mbed TLS as DER: MicroPython's unix port builds Mbed TLS without its PEM parser,
and DER parses on every port. A context is made per connection and dropped with it, so Mbed TLS's
state is heap only while the link is up (docs/firmware.md, "TLS").
"""

import binascii

import tls


def der(ca):
    """The first certificate of a PEM text as DER bytes (DER bytes are returned as they are)."""
    if type(ca) is not str:
        return ca
    start = ca.find("-----BEGIN CERTIFICATE-----")
    end = ca.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        raise ValueError("broker.ca is not a PEM certificate")
    return binascii.a2b_base64(ca[start + 27:end].replace("\n", "").replace("\r", ""))


def client(ca):
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(der(ca))
    return ctx
