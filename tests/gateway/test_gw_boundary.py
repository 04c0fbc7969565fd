"""Issue 15's grep conditions, kept true: SQL text and database drivers only in gateway/store/;
no private attribute of paho, aiomqtt or a driver anywhere in the project's code."""

from __future__ import annotations

import re
from pathlib import Path

from test_gw_connection import PRIVATE

REPO = Path(__file__).resolve().parents[2]
DRIVER = re.compile(r"^\s*(import|from)\s+(sqlite3|aiosqlite|psycopg|psycopg2|asyncpg)\b", re.M)
SQL = re.compile(r"\b(SELECT\s+[\w*(),. ]+\s+FROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET"
                 r"|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|TRIGGER)|BEGIN\s+IMMEDIATE|PRAGMA\s+\w+|ON\s+CONFLICT)\b")


def _sources(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py"))


def test_sql_and_drivers_only_behind_the_store_boundary() -> None:
    found = []
    for p in _sources("gateway"):
        if p.is_relative_to(REPO / "gateway" / "store"):
            continue
        text = p.read_text(encoding="utf-8")
        found += ["%s: %s" % (p.relative_to(REPO), m.group(0).strip()) for m in DRIVER.finditer(text)]
        found += ["%s: SQL %r" % (p.relative_to(REPO), m.group(0)) for m in SQL.finditer(text)]
    assert found == []


def test_no_private_library_attribute_anywhere() -> None:
    found = []
    # (flashtool/device_code reads MicroPython's sys.implementation._mpy: documented there, not a library)
    for p in _sources("gateway", "simulator", "bench", "protocol", "tests"):
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if PRIVATE.search(line):
                found.append("%s:%d: %s" % (p.relative_to(REPO), n, line.strip()))
    assert found == []
