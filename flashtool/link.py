"""Raw-REPL link to a MicroPython board, over mpremote's SerialTransport (pyserial beneath).

mpremote uses raw-paste when the board offers it and plain raw mode otherwise.  What we add:
bounded waits everywhere (a silent or unplugged board must fail in seconds, not hang), and
every failure turned into a one-line LinkError / DeviceError.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import struct
from types import TracebackType
from typing import Any

import serial
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from flashtool.errors import DeviceError, LinkError

_HELPERS = os.path.join(os.path.dirname(__file__), "device_code", "repl_helpers.py")


class _BoundedTransport(SerialTransport):  # type: ignore[misc]
    """SerialTransport whose inter-byte waits never exceed `io_timeout` seconds."""

    io_timeout = 3.0

    def read_until(  # noqa: PLR0913 - mirrors the base signature
        self,
        min_num_bytes: int,
        ending: bytes,
        timeout: float = 10,
        data_consumer: Any = None,
        timeout_overall: float | None = None,
    ) -> bytes:
        data: bytes = super().read_until(
            min_num_bytes, ending, min(timeout, self.io_timeout), data_consumer, timeout_overall
        )
        return data


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text.strip()


class Link:
    """One open raw-REPL session with a board."""

    def __init__(self, port: str, baud: int = 115200, timeout: float = 3.0) -> None:
        self.port = port
        self.timeout = timeout
        if "://" not in port and not os.path.exists(port):
            raise LinkError(f"{port}: no such serial port (see `flash.py ports`)")
        _BoundedTransport.io_timeout = timeout
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self._t = _BoundedTransport(port, baudrate=baud, timeout=timeout)
        except (TransportError, OSError, serial.SerialException, ValueError) as e:
            raise LinkError(f"{port}: cannot open port: {e}") from None
        self._in_raw = False

    def __enter__(self) -> Link:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._in_raw:
                self._t.exit_raw_repl()
        with contextlib.suppress(Exception):
            self._t.close()

    def enter_raw(self, soft_reset: bool = True) -> None:
        """Interrupt whatever runs, enter the raw REPL (a soft reset runs /boot.py)."""
        try:
            # mpremote prints the unexpected bytes before raising: keep them for our message.
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                self._t.enter_raw_repl(soft_reset=soft_reset, timeout_overall=self.timeout * 2)
        except (TransportError, OSError, serial.SerialException) as e:
            seen = buf.getvalue().strip()
            detail = f" (it sent {seen[:60]})" if seen and seen != "b''" else ""
            raise LinkError(
                f"{self.port}: no MicroPython REPL answered within {self.timeout * 2:.0f}s{detail}: {e}"
            ) from None
        self._in_raw = True
        with open(_HELPERS, encoding="utf-8") as f:
            self.exec(f.read())

    def exec(self, code: str | bytes, timeout: float | None = None) -> bytes:
        """Run code on the board; return its stdout. Device exceptions become DeviceError."""
        try:
            out, err = self._t.exec_raw(code, timeout=timeout or self.timeout)
        except (TransportError, OSError, serial.SerialException, struct.error) as e:
            raise LinkError(f"{self.port}: the device stopped answering ({e or type(e).__name__})") from None
        if err:
            raise DeviceError(f"device error: {_last_line(err.decode('utf-8', 'replace'))}")
        data: bytes = out
        return data

    def eval(self, code: str, timeout: float | None = None) -> Any:
        """Run code that prints one Python literal; return the value."""
        out = self.exec(code, timeout).decode("utf-8", "replace")
        try:
            return ast.literal_eval(out.strip())
        except (ValueError, SyntaxError):
            raise DeviceError(f"device sent an unreadable answer: {out.strip()[:80]!r}") from None
