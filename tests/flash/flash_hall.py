"""A real hall for flash.py tests and the bench: mosquitto + the gateway process + its HTTP API.

mosquitto runs with a password file, the project's ACL and a `gateway` user; the gateway
(`python -m gateway serve`) has its HTTP API on (admin and window tokens, port 0: the real port
is read from its ready line) and [broker] password_file / pid_file pointing at that mosquitto,
so a registration writes the device's password entry with mosquitto_passwd and SIGHUPs it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import TracebackType

from simulator.broker import Mosquitto, standard_acl
from simulator.gateway_proc import GatewayProcess, write_config

ADMIN_TOKEN = "flash-e2e-admin-" + "a" * 16
WINDOW_TOKEN = "flash-e2e-window-" + "w" * 16
GW_PASSWORD = "flash-e2e-gateway-pw"


class RealHall:
    """Start with `with RealHall(workdir) as hall:`; everything it started is stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        # The password-file set-up on purpose: these tests cover the gateway's password-file
        # accounts (mosquitto_passwd + SIGHUP); dynsec registration is covered in tests/gateway.
        self.broker = Mosquitto(self.workdir / "mq", users={"gateway": GW_PASSWORD}, acl=standard_acl(),
                                auth="password_file")
        self.db_path = self.workdir / "gw" / "gateway.db"
        self.config_path = self.workdir / "gw" / "gateway.toml"
        self.gateway = GatewayProcess(self.config_path)
        self.url = ""  # the gateway's HTTP API, set by start()

    def start(self, timeout: float = 20.0) -> RealHall:
        try:
            self.broker.start()
            # mosquitto writes its pid file itself (pid_file in its config): the gateway signals it.
            deadline = time.monotonic() + timeout
            while not (self.broker.pid_path.exists() and self.broker.pid_path.read_text().strip()):
                if time.monotonic() > deadline or not self.broker.running:
                    raise RuntimeError(f"mosquitto wrote no pid file\n{self.broker.log_tail()}")
                time.sleep(0.02)
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            http = (
                f'\n[http]\nhost = "127.0.0.1"\nport = 0\n'
                f'admin_token = "{ADMIN_TOKEN}"\nwindow_token = "{WINDOW_TOKEN}"\n'
            )
            write_config(
                self.config_path,
                mqtt_port=self.broker.port,
                mqtt_password=GW_PASSWORD,
                db_path=self.db_path,
                password_file=self.broker.passwd_path,
                pid_file=self.broker.pid_path,
                extra=http,
            )
            ready = self.gateway.start(timeout)
            m = re.search(r"\bhttp=(127\.0\.0\.1:\d+)", ready)
            if m is None:
                raise RuntimeError(f"the gateway's HTTP API is not on: {ready}")
            self.url = f"http://{m.group(1)}"
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.gateway.terminate()
        self.broker.stop()

    def __enter__(self) -> RealHall:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
