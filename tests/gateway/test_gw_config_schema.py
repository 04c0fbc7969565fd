"""One config schema, checked whole at load (issue 14 item 6): unknown sections and keys are
refused with the name and a suggestion, all errors come at once, and `serve` and every command
exit non-zero at once -- never print the error and hang."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "gw.toml"
    p.write_text('[store]\npath = "g.db"\n' + text)
    return p


def test_typo_in_a_section_name_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[htpp\] \(did you mean http\?\)"):
        load_config(_write(tmp_path, '[htpp]\nport = 8080\n'))


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    p = _write(tmp_path, '[mqtt]\nprot = 1\nport = "x"\n[http]\nadmin_token = "short"\n'
                         '[uplink]\nbatch_size = 0\n[ingest]\nbatch_max = 0\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    lines = str(e.value).splitlines()
    assert "[mqtt] unknown key prot (did you mean port?)" in lines
    assert any("[mqtt] port must be an integer" in ln for ln in lines)
    assert any("[ingest] batch_max must be in 1..100000" in ln for ln in lines)
    assert len(lines) == 3   # the schema errors first; section rules run once the schema is clean


def test_section_rules_all_at_once_and_secrets_not_echoed(tmp_path: Path) -> None:
    p = _write(tmp_path, '[http]\nadmin_token = "short"\n[uplink]\nbatch_size = 0\n'
                         '[mqtt]\npassword = 5\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "password must be a string, got ***" in str(e.value)
    p = _write(tmp_path, '[http]\nadmin_token = "short"\n[uplink]\nbatch_size = 0\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    text = str(e.value)
    assert "admin_token must be at least 16 characters" in text and "batch_size must be 1..10000" in text
    assert "short" not in text


@pytest.mark.parametrize("args", [
    ["-m", "gateway", "serve", "--config"],
    ["-m", "gateway.cli", "--config"],
])
@pytest.mark.parametrize("text", [
    '[uplink]\nbatch_size = 0\n',           # a value a subsystem checks
    '[htpp]\nport = 8080\n',                # a typo
    '[http]\nport = 8080\nadmin_token = "short"\n',
])
def test_serve_and_commands_exit_at_once(tmp_path: Path, args: list[str], text: str) -> None:
    cfg = _write(tmp_path, text)
    argv = [sys.executable, *args, str(cfg)] + (["health"] if "gateway.cli" in args else [])
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 20
