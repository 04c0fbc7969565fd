"""Shared fixtures: a real mosquitto per test and the real MicroPython 1.27 runner.

Logic lives in simulator/ and tests/harness/; this file only wires it into pytest. Importing
``harness`` works because pytest puts this directory (tests/) on sys.path for its conftest.
"""

from __future__ import annotations

import sys
from pathlib import Path

# pytest puts tests/ on sys.path (this conftest is not in a package), where tests/protocol,
# tests/gateway, tests/firmware and tests/simulator are namespace-package candidates. The editable
# install's finder runs only after sys.path is searched, so without the repo root on sys.path
# "import protocol" gets tests/protocol ("cannot import name ... (unknown location)"). With it,
# the real packages win: a regular package anywhere on sys.path beats a namespace portion.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from harness.mqtt import TEST_USERS  # noqa: E402

from simulator.broker import Mosquitto, standard_acl  # noqa: E402
from simulator.micropython import (  # noqa: E402
    MicroPythonUnavailable,
    RunMicroPython,
    check_runtime,
    run_micropython,
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started broker: users gateway/gwpass, dev-a/pa, dev-b/pb and the standard ACL (~20 ms)."""
    with Mosquitto(tmp_path / "mosquitto", users=TEST_USERS, acl=standard_acl()) as b:
        yield b


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store", default=None, choices=["sqlite", "postgresql"],
                     help="store backend for the gateway/admin/uplink suites (default: $HCP_STORE or sqlite)")


def pytest_configure(config: pytest.Config) -> None:
    import os

    import harness.store
    chosen = config.getoption("--store")
    if chosen:
        os.environ["HCP_STORE"] = chosen
        harness.store.BACKEND = chosen


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """One real PostgreSQL 15 for the session (only started when a test asks for it)."""
    from harness.postgres import PostgresServer, PostgresUnavailable
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def store_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty store for this test: a SQLite path under tmp_path, or a new PostgreSQL
    database (migrated from the session's template) when HCP_STORE=postgresql."""
    import harness.store
    if harness.store.BACKEND == "postgresql":
        server = request.getfixturevalue("pg_server")
        return str(server.fresh_database())
    (tmp_path / "gw").mkdir(exist_ok=True)
    return str(tmp_path / "gw" / "gateway.db")


@pytest.fixture(scope="session")
def mpy_runtime() -> None:
    """Fail (never skip) when node or the npm MicroPython package is missing."""
    try:
        check_runtime()
    except MicroPythonUnavailable as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def mpy(mpy_runtime: None) -> RunMicroPython:
    """``run_micropython``: run code under real MicroPython 1.27 (WebAssembly under node)."""
    return run_micropython


# --- A closing table: which runtime each part of the suite ran in ----------------------------
# The issue asks that the output *show* protocol (and firmware) tests ran under both CPython and
# real MicroPython. A test counts as MicroPython when it runs code through run_micropython (it
# uses the mpy fixture, or its name says micropython); mpy-cross tests count as "mpy-cross".
_RUNTIME_FIXTURES = {"mpy", "mpy_runtime", "micropython_results"}
_tally: dict[tuple[str, str], dict[str, int]] = {}
_where: dict[str, tuple[str, str]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(tests_dir)
        area = rel.parts[0] if len(rel.parts) > 1 else rel.stem.removeprefix("test_")
        name = item.name.lower()
        fixtures = set(getattr(item, "fixturenames", ()))
        if "mpy_cross" in str(rel):
            runtime = "mpy-cross"
        elif fixtures & _RUNTIME_FIXTURES or "micropython" in name or "_mp_" in str(rel):
            runtime = "MicroPython 1.27"
        else:
            runtime = "CPython"
        _where[item.nodeid] = (area, runtime)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    key = _where.get(report.nodeid)
    if key is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    counts = _tally.setdefault(key, {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0})
    if hasattr(report, "wasxfail"):  # an expected failure is reported as skipped: say which
        outcome = "xfailed" if report.skipped else "passed"
    else:
        outcome = "failed" if report.failed else "skipped" if report.skipped else "passed"
    counts[outcome] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _tally:
        return
    tr = terminalreporter
    tr.section("tests by area and runtime")
    for (area, runtime), c in sorted(_tally.items()):
        extra = "".join(", %d %s" % (c[k], k) for k in ("failed", "skipped", "xfailed") if c[k])
        tr.write_line("%-16s %-17s %5d passed%s" % (area, runtime, c["passed"], extra))
