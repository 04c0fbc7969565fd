"""Run the real gateway (`python -m gateway serve --config FILE`) as a child process.

Used by tests, the simulator and the demo. `start()` waits for the readiness line
("gateway ready ...") with a deadline and fails at once, with the log tail, if the process
dies first. `kill()` is SIGKILL (crash tests), `terminate()` a clean SIGTERM stop,
`restart()` both halves. Output goes to a log file in the work directory, so a failing
test can show what the gateway said.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import weakref
from pathlib import Path
from types import TracebackType

from simulator.proc import stop_process

READY_PREFIX = "gateway ready "
REPO = Path(__file__).resolve().parent.parent


class GatewayProcessError(RuntimeError):
    """The gateway did not become ready (died, or deadline passed); carries the log tail."""



class GatewayProcess:
    def __init__(self, config_path: Path, workdir: Path | None = None,
                 python: str = sys.executable, log_level: str = "INFO",
                 env: dict[str, str] | None = None) -> None:
        self.config_path = Path(config_path).resolve()
        self.workdir = Path(workdir or self.config_path.parent).resolve()
        self.python = python
        self.log_level = log_level
        self.env = env
        self.log_path = self.workdir / "gateway.log"
        self.ready_line: str | None = None
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes], float], GatewayProcess] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def _init_store(self, env: dict[str, str]) -> None:
        """`hcp-gateway init` first when the store file is missing, as the runbook does: serve
        refuses a store that does not exist (it never takes one for a fresh store)."""
        import tomllib
        try:
            store = tomllib.loads(self.config_path.read_text()).get("store", {})
        except (OSError, tomllib.TOMLDecodeError):
            return   # serve reports the config problem itself
        path = store.get("path")
        if not isinstance(path, str):
            return
        p = Path(path) if Path(path).is_absolute() else self.config_path.parent / path
        if p.exists():
            return
        subprocess.run([self.python, "-m", "gateway.cli", "--config", str(self.config_path), "init"],
                       stdin=subprocess.DEVNULL, capture_output=True, cwd=self.workdir, env=env, timeout=60)

    def start(self, timeout: float = 20.0) -> str:
        """Start and wait for the readiness line; return it."""
        if self.running:
            raise GatewayProcessError("gateway already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        if self.env:
            env.update(self.env)
        self._init_store(env)
        with open(self.log_path, "ab") as out:
            proc = subprocess.Popen(
                [self.python, "-m", "gateway", "serve", "--config", str(self.config_path),
                 "--log-level", self.log_level],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.workdir, env=env)
        self._proc = proc
        self._finalizer = weakref.finalize(self, stop_process, proc, 2.0)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            line = self._find_ready()
            if line is not None:
                self.ready_line = line
                return line
            if proc.poll() is not None:
                self._forget()
                raise GatewayProcessError(
                    f"gateway exited with code {proc.returncode} before it was ready\n"
                    f"--- log tail ---\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                self.kill()
                raise GatewayProcessError(
                    f"gateway not ready within {timeout}s\n--- log tail ---\n{self.log_tail()}")
            time.sleep(0.02)

    def _find_ready(self) -> str | None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            if line.startswith(READY_PREFIX):
                return line
        return None

    def kill(self) -> None:
        """SIGKILL: the crash case. Nothing gets a chance to flush."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._forget()

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (SIGKILL after timeout); return the exit code."""
        proc = self._proc
        if proc is None:
            return None
        stop_process(proc, timeout)
        self._forget()
        return proc.returncode

    def restart(self, timeout: float = 20.0) -> str:
        self.terminate()
        return self.start(timeout)

    def _forget(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_text()
        return "\n".join(text.splitlines()[-lines:]) if text.strip() else "(no output)"

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.terminate()


def write_config(path: Path, *, mqtt_port: int, mqtt_password: str, db_path: Path | str,
                 mqtt_host: str = "127.0.0.1", client_id: str = "hcp-gateway",
                 batch_ms: int = 5, batch_max: int = 500, extra: str = "",
                 password_file: Path | None = None, pid_file: Path | None = None,
                 broker_toml: str | None = None, mqtt_username: str = "gateway",
                 mqtt_extra: tuple[str, ...] = ()) -> Path:
    """A minimal gateway.toml for tests and the simulator (extra: more TOML appended;
    mqtt_extra: more lines of [mqtt], e.g. 'shared_group = "hall"'). Written 0600: it holds
    secrets, and `serve` refuses a config others can read.
    broker_toml: a whole [broker] section (Mosquitto.gateway_broker_toml(): dynsec control)."""
    lines = [
        "[mqtt]", f'host = "{mqtt_host}"', f"port = {mqtt_port}", f'username = "{mqtt_username}"',
        f'password = "{mqtt_password}"', f'client_id = "{client_id}"', *mqtt_extra, "",
        "[store]",
        f'url = "{db_path}"' if str(db_path).startswith("postgresql://") else f'path = "{db_path}"', "",
        "[ingest]", f"batch_ms = {batch_ms}", f"batch_max = {batch_max}", "rejection_log_s = 1", "",
    ]
    if password_file is not None or pid_file is not None:
        lines.append("[broker]")
        if password_file is not None:
            lines.append(f'password_file = "{password_file}"')
        if pid_file is not None:
            lines.append(f'pid_file = "{pid_file}"')
        lines.append("")
    elif broker_toml:
        lines.append(broker_toml)
    path.write_text("\n".join(lines) + extra)
    path.chmod(0o600)
    return path
