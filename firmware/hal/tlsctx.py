"""TLS to the hall broker on MicroPython (ESP32 and the unix port): the tls module, the broker's
certificate checked against the CA that flash.py wrote into config.json (broker.ca, PEM).

A context is made per connection and dropped with it: Mbed TLS's state (~2 KB of context plus the
parsed CA) is then heap only while the link is up (docs/firmware.md, "TLS").
"""

import tls


def client(ca):
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(ca)
    return ctx
