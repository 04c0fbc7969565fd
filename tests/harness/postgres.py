"""A real PostgreSQL 15 (Debian's) for the tests: initdb in a temporary directory, a free
loopback port, run as the `postgres` user when we are root (initdb refuses root).

One server per test session; `fresh_database()` gives each test its own database, cloned
from a migrated template (CREATE DATABASE ... TEMPLATE is a file copy: fast). Every wait has
a deadline and checks the server is still alive; `stop()` stops what `start()` started.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

PG_BIN = Path(os.environ.get("HCP_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_DEADLINE_S = 60.0


class PostgresUnavailable(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, fsync: bool = False) -> None:
        self.fsync = fsync
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._n = itertools.count(1)
        self.template: str | None = None

    def _as_postgres(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> PostgresServer:
        if not (PG_BIN / "initdb").exists():
            raise PostgresUnavailable(f"{PG_BIN}/initdb not found: install postgresql-15 (scripts/setup.sh)")
        self.dir = Path(tempfile.mkdtemp(prefix="hcp-pg-"))
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = self.dir / "data"
        out = subprocess.run([*self._as_postgres(), str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"],
                             capture_output=True, timeout=120)
        if out.returncode != 0:
            raise PostgresUnavailable("initdb failed: %s" % out.stderr.decode(errors="replace")[-500:])
        self.port = _free_port()
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + str(self.dir),
                    "-c", "max_connections=200", "-c", "shared_buffers=64MB"]
        if not self.fsync:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*self._as_postgres(), str(PG_BIN / "postgres"), "-D", str(data),
                                      "-p", str(self.port), *settings],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if self.proc.poll() is not None:
                log = (self.dir / "server.log").read_text(errors="replace")[-800:]
                self.stop()
                raise PostgresUnavailable("postgres exited at start: " + log)
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise PostgresUnavailable("postgres did not accept connections within %.0fs"
                                              % START_DEADLINE_S) from None
                time.sleep(0.1)
        return self

    def url(self, dbname: str) -> str:
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, dbname)

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute('CREATE DATABASE "%s"%s' % (name, ' TEMPLATE "%s"' % template if template else ""))
        return self.url(name)

    def migrated_template(self) -> str:
        """A database with every migration applied, once per session."""
        if self.template is None:
            import asyncio

            from gateway.store import open_store
            url = self.create_database("hcp_template")

            async def go() -> None:
                s = await open_store(url)
                await s.close()
            # In a thread of its own: the first caller may be an async test (an event loop is
            # running there, and asyncio.run refuses to nest).
            import threading
            failed: list[BaseException] = []
            t = threading.Thread(target=lambda: _run_catching(asyncio.run, go(), failed))
            t.start()
            t.join()
            if failed:
                raise failed[0]
            self.template = "hcp_template"
        return self.template

    def fresh_database(self, migrated: bool = True) -> str:
        name = "t_%d_%d" % (os.getpid(), next(self._n))
        return self.create_database(name, self.migrated_template() if migrated else None)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()   # SIGTERM: smart shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if getattr(self, "log", None) is not None:
            self.log.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run_catching(run: Any, arg: Any, failed: list[BaseException]) -> None:
    try:
        run(arg)
    except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
        failed.append(e)
