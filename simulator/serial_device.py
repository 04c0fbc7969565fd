"""Virtual serial device: real MicroPython 1.27 (WebAssembly) behind a pseudo-terminal.

`VirtualSerialDevice` creates a pty pair, runs `simulator/mpy/serial_bridge.mjs` under node
with pipes, and relays bytes between the pty master and the bridge in a thread.  Clients
(flash.py, mpremote, miniterm) open the slave path like any serial port.

We keep our own slave descriptor open for the device's whole life: without it, the master
sees a hang-up each time a client closes the port, and the pty loses its raw-mode settings.

For tests, `cut_link()` simulates a pulled cable (bytes from the host are discarded until
`restore_link()`), optionally after a number of further bytes (`cut_link(after=n)`).

CLI: `python -m simulator.serial_device [--uid HEX] [--link PATH] [--state-dir DIR]`
(also registered as `hcp-sim serial-device`): prints the pty path and runs until Ctrl-C.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import tty
from types import TracebackType

import click

REPO = pathlib.Path(__file__).resolve().parent.parent
BRIDGE = REPO / "simulator" / "mpy" / "serial_bridge.mjs"


class SerialDeviceError(RuntimeError):
    """The virtual device could not start or died."""


class VirtualSerialDevice:
    def __init__(
        self,
        uid: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        link: str | os.PathLike[str] | None = None,
        exec_timeout: float = 10.0,
        start_timeout: float = 15.0,
        node: str | None = None,
        raw_paste: bool = True,
    ) -> None:
        self.raw_paste = raw_paste
        self.uid = uid
        self.state_dir = pathlib.Path(state_dir) if state_dir else None
        self.link = pathlib.Path(link) if link else None
        self.exec_timeout = exec_timeout
        self.start_timeout = start_timeout
        self.node = node or shutil.which("node") or "node"
        self.path = ""
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self._proc: subprocess.Popen[bytes] | None = None
        self._master = -1
        self._slave = -1
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready = threading.Event()
        self._cut_lock = threading.Lock()
        self._cut_after: int | None = None  # bytes still passed before the link is cut
        self.bytes_from_host = 0
        self.dropped_to_host = 0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> str:
        if not BRIDGE.exists():
            raise SerialDeviceError(f"bridge not found: {BRIDGE}")
        args = [self.node, str(BRIDGE), "--exec-timeout", str(self.exec_timeout)]
        if self.uid:
            args += ["--uid", self.uid]
        if not self.raw_paste:
            args.append("--no-raw-paste")
        if self.state_dir:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            args += ["--state-dir", str(self.state_dir)]
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        try:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=REPO,
                start_new_session=True,
            )
        except OSError as e:
            self._close_fds()
            raise SerialDeviceError(f"cannot run node: {e}") from None
        for target in (self._relay, self._read_log):
            t = threading.Thread(target=target, daemon=True, name=f"vserial-{target.__name__}")
            t.start()
            self._threads.append(t)
        deadline = time.monotonic() + self.start_timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None:
                self.stop()
                raise SerialDeviceError("bridge exited at start: " + " | ".join(self.log))
            if time.monotonic() > deadline:
                self.stop()
                raise SerialDeviceError(f"bridge not ready within {self.start_timeout}s")
        if self.link:
            if self.link.is_symlink() or self.link.exists():
                self.link.unlink()
            self.link.symlink_to(self.path)
        return self.path

    def stop(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for t in self._threads:
            t.join(5)
        self._threads.clear()
        self._close_fds()
        if self.link and self.link.is_symlink():
            self.link.unlink()

    def _close_fds(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> VirtualSerialDevice:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- link faults (tests) ---------------------------------------------------------
    def cut_link(self, after: int = 0) -> None:
        """Discard host->device bytes once `after` more bytes have passed."""
        with self._cut_lock:
            self._cut_after = after

    def restore_link(self) -> None:
        with self._cut_lock:
            self._cut_after = None

    def _pass_from_host(self, data: bytes) -> bytes:
        with self._cut_lock:
            if self._cut_after is None:
                return data
            keep = data[: self._cut_after]
            self._cut_after -= len(keep)
            return keep

    # -- threads ---------------------------------------------------------------------
    def _read_log(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.log.append(line)
            if "READY" in line:
                self._ready.set()

    def _relay(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        out_fd = proc.stdout.fileno()
        in_fd = proc.stdin.fileno()
        os.set_blocking(self._master, False)
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master, out_fd], [], [], 0.1)
            except (OSError, ValueError):
                return
            if self._master in ready:
                try:
                    data = os.read(self._master, 65536)
                except BlockingIOError:
                    data = b""
                except OSError:
                    return
                self.bytes_from_host += len(data)
                data = self._pass_from_host(data)
                if data:
                    try:
                        os.write(in_fd, data)
                    except OSError:
                        return
            if out_fd in ready:
                data = os.read(out_fd, 65536)
                if not data:
                    return  # bridge exited
                self._to_host(data)

    def _to_host(self, data: bytes) -> None:
        # Like a UART with nobody listening: wait a little for the host, then drop.
        view = memoryview(data)
        deadline = time.monotonic() + 2.0
        while view and not self._stop.is_set():
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.dropped_to_host += len(view)
                    return
                select.select([], [self._master], [], 0.05)
            except OSError:
                return


@click.command("serial-device")
@click.option(
    "--uid", help="Unique id (hex) the device reports as /.uid; default: random, or kept in --state-dir."
)
@click.option("--link", type=click.Path(dir_okay=False), help="Also expose the pty under this symlink path.")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Persist the device filesystem here.")
@click.option("--exec-timeout", default=10.0, show_default=True, help="Watchdog: seconds one exec may run.")
@click.option("--json", "as_json", is_flag=True, help='Print {"port": PATH, "uid": HEX} instead of the path.')
def serial_device(uid: str | None, link: str | None, state_dir: str | None, exec_timeout: float,
                  as_json: bool) -> None:
    """Run a virtual MicroPython board behind a pseudo-terminal until Ctrl-C."""
    dev = VirtualSerialDevice(uid=uid, state_dir=state_dir, link=link, exec_timeout=exec_timeout)
    try:
        path = dev.start()
    except SerialDeviceError as e:
        if as_json:
            click.echo(json.dumps({"error": "cannot_start", "message": str(e)}))
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"port": path, "uid": dev.uid, "link": link}))
    else:
        click.echo(path)
    if link:
        click.echo(f"link: {link}", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if not dev.alive():
                click.echo("error: bridge exited: " + " | ".join(dev.log), err=True)
                sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        dev.stop()


if __name__ == "__main__":
    serial_device()
