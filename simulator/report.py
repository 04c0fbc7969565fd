"""Console output of a run: phase lines, live progress, the day's report, the reconciliation.

On a terminal the progress is one line rewritten in place; otherwise (CI logs, pipes) it is a
plain line every few seconds. Everything else is plain lines, one per event, so the output
reads as the story of the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from protocol import grades
from simulator.checker import Reconciliation


class Console:
    def __init__(self, out: TextIO | None = None, live: bool | None = None, quiet: bool = False) -> None:
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.quiet = quiet
        self.t0 = time.monotonic()
        self._progress_shown = False
        self._last_plain_progress = ""

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.out.write("\r\033[K")
            self._progress_shown = False

    def _line(self, text: str) -> None:
        self._clear_progress()
        self.out.write(text + "\n")
        self.out.flush()

    def phase(self, text: str) -> None:
        """One plain line per phase: what is happening now, for a newcomer."""
        self._line("[%6.1fs] %s" % (time.monotonic() - self.t0, text))

    def note(self, text: str) -> None:
        if not self.quiet:
            self._line("          %s" % text)

    def error(self, text: str) -> None:
        self._clear_progress()
        sys.stderr.write("hcp-sim: %s\n" % text)
        sys.stderr.flush()

    def progress(self, text: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.out.write("\r\033[K" + text)
            self.out.flush()
            self._progress_shown = True
        elif text != self._last_plain_progress:
            # A log file or pipe gets a line only when the figures change, not every poll.
            self._last_plain_progress = text
            self._line("          .. " + text)

    def block(self, lines: Sequence[str]) -> None:
        for ln in lines:
            self._line(ln)


def progress_loop_text(stats: Mapping[str, Any]) -> str:
    return ("t=%(t)5.0fs sim=%(sim)s  online %(online)d/%(devices)d  invitations %(invited)d  "
            "presses %(accepted)d  journal backlog %(backlog)d" % stats)


def sim_clock_text(sim_s: float) -> str:
    m, s = divmod(int(sim_s), 60)
    h, m = divmod(m, 60)
    return "%02d:%02d:%02d" % (h, m, s)


def _w(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if ord(c) > 0x2E80 else 1 for c in text)


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - _w(text))
    return gap + text if right else text + gap


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right_from: int = 1) -> list[str]:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([_w(h)] + [_w(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(_pad(c, widths[i], right=i >= right_from) for i, c in enumerate(r))

    out = [fmt(list(headers)), "  ".join("-" * w for w in widths)]
    out += [fmt(r) for r in cells]
    return out


def reconciliation_lines(rec: Reconciliation) -> list[str]:
    rows = [(r.name, r.expected, r.found, r.lost, r.doubled, r.wrong, "ok" if r.ok else "MISMATCH")
            for r in rec.rows]
    lines = table(("check", "expected", "found", "lost", "doubled", "wrong", ""), rows)
    for p in rec.problems:
        lines.append("  ! " + p)
    if rec.problems_hidden:
        lines.append("  ! ... %d more problems not listed" % rec.problems_hidden)
    for n in rec.notes[:10]:
        lines.append("  i " + n)
    if len(rec.notes) > 10:
        lines.append("  i ... %d more notes not listed" % (len(rec.notes) - 10))
    verdict = "OK" if rec.ok else "MISMATCH"
    lines.append("verdict: %s (lost %d, doubled %d)" % (verdict, rec.lost, rec.doubled))
    return lines


GRADE_HEADERS = tuple(grades.NAMES_ZH[g] for g in grades.GRADES)


def day_report_lines(per_clerk: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rows with window, staff, dept, cases, and counts per grade code; satisfaction computed here
    (share of rated presses that are not 差评) when the row does not carry it."""
    rows = []
    for r in per_clerk:
        counts = [int(r.get(g, 0)) for g in grades.GRADES]
        rated = sum(counts)
        bad = sum(int(r.get(g, 0)) for g in grades.BAD)
        sat = r.get("satisfaction")
        if sat is None:
            sat = (100.0 * (rated - bad) / rated) if rated else None
        score = r.get("score")
        rows.append((r.get("window", ""), r.get("staff", ""), r.get("cases", ""), *counts,
                     r.get("unrated", 0), bad, r.get("valid_bad", "-"),
                     "-" if sat is None else "%.1f%%" % sat, "-" if score is None else "%.1f" % score))
    headers = ("窗口", "办事员", "办件", *GRADE_HEADERS, "未评", "差评", "有效差评", "满意率", "得分")
    return table(headers, rows, right_from=2)


Printer = Callable[[str], None]
