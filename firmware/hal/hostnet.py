"""The host HAL's Wi-Fi for CPython (the simulator and the CPython tests): TCP through asyncio.

Apart from firmware/hal/host.py so the host HAL loaded under MicroPython (the memory bench, the
wasm tests, which bring their own net) does not carry it; HostHal loads it when given no net.
"""


class HostNet:
    """The device's Wi-Fi as the simulator sees it: up or cut, an RSSI, TCP via asyncio."""

    def __init__(self, up=True, rssi=-55):
        self.up = up
        self._rssi = rssi
        self._writers = []

    def is_up(self):
        return self.up

    def rssi(self):
        return self._rssi if self.up else -127

    async def open(self, host, port, ca=None):
        if not self.up:
            raise OSError(113, "wifi down")
        import asyncio
        ctx = None
        if ca:                             # the broker's certificate checked against the CA, as on the device
            import ssl
            ctx = ssl.create_default_context(cadata=ca)
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        self._writers = [w for w in self._writers if not w.is_closing()]
        self._writers.append(writer)
        return reader, writer

    def cut(self):
        """Wi-Fi lost: every open connection dies at once, as on the device."""
        self.up = False
        for w in self._writers:
            try:
                w.transport.abort()
            except Exception:
                pass
        self._writers = []

    def restore(self):
        self.up = True
