"""Bulletins and supervision findings as plain text (the CLI's table format and `hcp-sim history`)."""

from __future__ import annotations

from typing import Any

from gateway.bulletin import Bulletin
from gateway.supervision import KIND_ZH, Supervision


def _cell(col_kind: str, v: Any) -> str:
    if v is None:
        return "-"
    if col_kind == "percent":
        return "%.2f%%" % (100 * v)
    if col_kind == "decimal":
        return "%.2f" % v
    return str(v)


def bulletin_text(b: Bulletin) -> str:
    cols = b.columns()
    rows = [r.cells() for r in b.rows]
    totals = b.totals.cells()
    totals.update(name="合计", detail="", rank=None)
    lines = [b.title, "统计周期：%s（%s）%s" % (b.period.span_label, "、".join(b.timezones),
                                          "　发布单位：" + b.issuer if b.issuer else ""), ""]
    from gateway.cli import table  # at call time: gateway.cli imports the CLI modules that import this
    lines.append(table([c.header.replace("\n", "") for c in cols],
                       [[_cell(c.kind.value, r.get(c.key)) for c in cols] for r in [*rows, totals]]))
    lines += ["", "说明："] + ["%d. %s" % (i, n) for i, n in enumerate(b.notes, 1)]
    return "\n".join(lines)


def supervision_text(sv: Supervision, evidence: int) -> str:
    from gateway.cli import table
    lines = ["数据质量监督发现（%s）" % sv.period.label, ""]
    if not sv.findings:
        lines.append("（无发现）")
    month = None
    for f in sv.findings:
        if f.month != month:
            month = f.month
            lines.append("== %s" % month)
        lines.append("[%s] %s　%s" % (KIND_ZH[f.kind], f.hall_name, f.summary))
        if evidence and f.evidence:
            keys = [k for k in f.evidence[0] if not k.endswith("_ms") and k != "flags"]
            shown = f.evidence[:evidence]
            text = table(keys, [[r.get(k) for k in keys] for r in shown])
            lines.append("    " + text.replace("\n", "\n    "))
            if f.evidence_total > len(shown):
                lines.append("    … %d more (see --json)" % (f.evidence_total - len(shown)))
    counts = sv.counts()
    lines += ["", "合计：" + "，".join("%s %d" % (KIND_ZH[k], n) for k, n in counts.items() if n)
              if any(counts.values()) else "合计：0"]
    return "\n".join(lines)
