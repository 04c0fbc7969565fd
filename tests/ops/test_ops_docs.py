"""Every command in the README's and the operations docs' shell blocks runs as written: each
`hcp-gateway ...` line parses with the real CLI (its command path exists, every option is
known: the line is given to click with `--help` added, which stops before anything runs), each
`bash scripts/install.sh ...` line with the install's own option parser, each script named
exists, and every other tool named is on this Debian machine's PATH. Also: the tools answer
`--help` without a traceback, `python3 flash.py` outside the venv ends in one line."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
DOCS = ["README.md", *sorted("docs/" + p.name for p in (REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
FLASH = re.compile(r"^(\S*python\S*\s+)?flash\.py\s")   # a flash.py command in any block


def shell_lines(doc: str) -> list[tuple[str, int, str]]:
    """(doc, line number, command) for each line of its ```sh blocks, and each `$ ` line of its
    other blocks (a transcript), continuations joined."""
    out: list[tuple[str, int, str]] = []
    lang: str | None = None
    pending, start = "", 0
    for n, line in enumerate((REPO / doc).read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line.strip())
        if m:
            lang = None if lang is not None else m.group(1)
            continue
        if lang is None:
            continue
        if lang not in ("sh", "bash") and not pending:
            if line.startswith("$ "):
                line = line[2:]
            elif not FLASH.match(line.strip()):
                continue
        if not pending:
            start = n
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            out.append((doc, start, pending.strip()))
        pending = ""
    return out


def commands(line: str) -> list[list[str]]:
    """The simple commands of a line (split at &&, ||, ;, |), comments dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    out: list[list[str]] = [[]]
    for tok in lex:
        if tok in ("&&", "||", ";", "|", "&"):
            out.append([])
        else:
            out[-1].append(tok)
    return [c for c in out if c]


ALL = [x for doc in DOCS for x in shell_lines(doc)]
SHELL_BUILTINS = {"cd", "export", "echo", "set"}


def test_the_docs_have_commands() -> None:
    docs = {d for d, _, _ in ALL}
    assert {"README.md", "docs/operations.md", "docs/cli-hcp-gateway.md"} <= docs, docs
    assert any("scripts/install.sh" in c for _, _, c in ALL)


@pytest.mark.parametrize("doc,lineno,line", ALL, ids=["%s:%d" % (d, n) for d, n, _ in ALL])
def test_each_command_runs_as_written(doc: str, lineno: int, line: str) -> None:
    from gateway.cli import cli
    from gateway.deploy.install import parser

    for argv in commands(line):
        if argv[0] == "sudo":
            argv = argv[1:]
        tool = argv[0]
        where = "%s:%d: %s" % (doc, lineno, line)
        if tool.startswith(".venv/bin/") and tool != ".venv/bin/python":
            # the README's set-up makes the venv's tools; run from the repository
            assert (REPO / tool).exists(), "%s: %s does not exist after scripts/setup.sh" % (where, tool)
            tool = argv[0] = tool.rsplit("/", 1)[1]
        if tool.endswith("flash.py") or (len(argv) > 1 and argv[1] == "flash.py"):
            if tool != "flash.py" and not tool.endswith("/flash.py"):
                # the interpreter as written: a bare `python` does not exist on Debian, and the
                # system's python3 lacks the packages (flash.py then says to use the venv's)
                assert tool == ".venv/bin/python" and (REPO / tool).exists(), \
                    "%s: run flash.py with .venv/bin/python" % where
                argv = argv[1:]
            import flash
            res = CliRunner().invoke(flash.cli, [*argv[1:], "--help"], catch_exceptions=False)
            assert res.exit_code == 0, "%s\n%s" % (where, res.output)
        elif tool == "hcp-gateway":
            # --help is handled before any command runs, after every option was matched
            res = CliRunner().invoke(cli, [*argv[1:], "--help"], catch_exceptions=False)
            assert res.exit_code == 0, "%s\n%s" % (where, res.output)
            assert res.output.startswith("Usage: "), where
        elif tool == "hcp-sim":
            from simulator.cli import main as hcp_sim
            res = CliRunner().invoke(hcp_sim, [*argv[1:], "--help"], catch_exceptions=False)
            assert res.exit_code == 0, "%s\n%s" % (where, res.output)
        elif tool == "bash":
            script = REPO / argv[1]
            assert script.is_file(), where
            if argv[1] == "scripts/install.sh":
                try:
                    parser().parse_args(argv[2:])
                except SystemExit as e:
                    raise AssertionError("%s: install.sh refuses these options" % where) from e
        elif tool in SHELL_BUILTINS or tool.startswith("<"):
            continue
        else:
            assert shutil.which(tool) or Path("/usr/sbin", tool).exists(), \
                "%s: %s is not on this machine" % (where, tool)


@pytest.mark.parametrize("tool", ["hcp-gateway", "hcp-sim"])
def test_tools_answer_help(tool: str) -> None:
    exe = Path(sys.executable).parent / tool
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "Traceback" not in out.stderr and out.stdout.startswith("Usage:")


def test_flash_py_outside_the_venv_says_how_in_one_line(tmp_path: Path) -> None:
    """The system's python3 (no click, no project packages): one line, not a traceback."""
    python3 = shutil.which("python3", path="/usr/bin:/bin")
    assert python3 is not None
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONNOUSERSITE": "1"}
    out = subprocess.run([python3, "-S", str(REPO / "flash.py"), "--help"], capture_output=True, text=True,
                         timeout=60, check=False, env=env, cwd=tmp_path)
    if out.returncode == 0:
        pytest.skip("this python3 has the packages flash.py needs")
    assert "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and ".venv/bin/python flash.py" in lines[0], out.stderr
    assert os.path.exists(REPO / "flash.py")
