"""`hcp-gateway users` (password from standard input only), the [console] config section, and
the vendored npm assets (ECharts, htmx) checked against node_modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness.store import query

from gateway.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[2]
HCP = Path(sys.executable).parent / "hcp-gateway"
sys.path.insert(0, str(REPO / "scripts"))


def _config(tmp: Path, store_url: str) -> Path:
    key = "url" if store_url.startswith("postgresql://") else "path"
    line = '%s = "%s"' % (key, store_url)
    p = tmp / "gateway.toml"
    p.write_text("[store]\n%s\n\n[console]\n" % line)
    return p


def hcp(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HCP), "--config", str(cfg), *args], input=stdin, capture_output=True,
                          text=True,
                          timeout=60)


def test_users_commands(tmp_path: Path, store_url: str) -> None:
    cfg = _config(tmp_path, store_url)
    assert hcp(cfg, "init").returncode == 0
    r = hcp(cfg, "users", "add", "boss", "--role", "admin", "--name", "王主任", stdin="Secret-pass-1\n")
    assert r.returncode == 0 and "boss added" in r.stdout, r.stderr
    r = hcp(cfg, "users", "add", "li", "--role", "liaison", "--dept", "D1", "--dept", "D2",
            stdin="Secret-pass-2\n")
    assert r.returncode == 0, r.stderr
    # Refusals: one line, non-zero, nothing stored.
    for args, stdin, code in ((("users", "add", "x", "--role", "admin"), "short\n", 1),
                              (("users", "add", "boss", "--role", "admin"), "Secret-pass-1\n", 1),
                              (("users", "add", "y", "--role", "king"), "Secret-pass-1\n", 2),
                              (("users", "add", "z", "--role", "admin"), "", 2),
                              (("users", "passwd", "ghost"), "Secret-pass-3\n", 1)):
        r = hcp(cfg, *args, stdin=stdin)
        assert r.returncode == code and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
    r = hcp(cfg, "--json", "users", "list")
    rows = json.loads(r.stdout)
    assert [(a["name"], a["role"], a["depts"]) for a in rows] == [("boss", "admin", []), ("li", "liaison",
                                                                                          ["D1", "D2"])]
    assert "password_hash" not in r.stdout and "argon2" not in r.stdout
    assert hcp(cfg, "users", "passwd", "boss", "--must-change", stdin="Secret-pass-9\n").returncode == 0
    assert hcp(cfg, "users", "disable", "li").returncode == 0
    r = hcp(cfg, "users", "list")
    assert "must change password" in r.stdout and "disabled" in r.stdout and "王主任" in r.stdout
    r = hcp(cfg, "users", "scope", "li", "--all-depts", "--hall", "hall-9")
    assert r.returncode == 0 and "halls hall-9, departments (all)" in r.stdout
    assert hcp(cfg, "users", "enable", "li").returncode == 0
    actions = [x[0] for x in query(store_url, "SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["account.add", "account.add", "account.passwd", "account.disable", "account.profile",
                       "account.enable"]
    # The password never reaches the audit log.
    assert "Secret-pass" not in repr(query(store_url, "SELECT detail_json FROM audit_log"))


def test_console_config_section(tmp_path: Path) -> None:
    base = {"store": {"path": str(tmp_path / "g.db")}}
    cfg = parse_config({**base, "console": {"idle_s": 60, "title": "张店区政务服务中心"}}, tmp_path)
    s = cfg.sections["console"]
    assert s.enabled and s.idle_s == 60 and s.rules.idle_s == 60
    assert not parse_config(base, tmp_path).sections["console"].enabled
    for bad, words in (({"idel_s": 5}, "did you mean idle_s"), ({"idle_s": 1}, "idle_s must be in"),
                       ({"idle_s": 7200, "max_age_s": 3600}, "must not exceed max_age_s"),
                       ({"title": ""}, "title must be"), ({"refresh_ms": "fast"}, "must be an integer")):
        with pytest.raises(ConfigError) as e:
            parse_config({**base, "console": bad}, tmp_path)
        assert words in str(e.value)


def test_vendored_assets_match_node_modules() -> None:
    from vendor_console_assets import VENDOR, problems
    assert problems() == []
    manifest = json.loads((VENDOR / "MANIFEST.json").read_text())
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]
    for entry in manifest.values():
        assert pinned[entry["package"]] == entry["version"]
    # Each vendored script comes with its licence.
    assert "Apache License" in (VENDOR / "echarts.LICENSE.txt").read_text()
    assert "Zero-Clause BSD" in (VENDOR / "htmx.LICENSE.txt").read_text()


def test_templates_reference_only_packaged_files() -> None:
    import re
    root = REPO / "gateway" / "console"
    for t in (root / "templates").glob("*.html"):
        text = t.read_text()
        for name in re.findall(r"static\('([^']+)'\)", text):
            assert (root / "static" / name).is_file(), (t.name, name)
        assert not re.search(r"(src|href|action)=\"(https?:)?//", text), t.name
        assert "<script>" not in text, t.name
