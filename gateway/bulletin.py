"""Bulletins (“好差评”评估通报表): the district's figures for a period, grouped by department,
hall, town (a hall with the village points under it), window, clerk or service item, in the
shape of the Zhangdian bulletin's two attachments. One service (`make_bulletin`) for the CLI
(`hcp-gateway bulletin`), the API (`GET /api/v1/bulletins`) and the web console.

Columns (docs/bulletin.md has the definitions and the configuration):
  办件量    cases the window systems reported as accepted in the period (withdrawn ones left
            out), plus cases invited to a rating that the feed never reported
  评价量    ratings of the period the provincial platform acknowledged ([bulletin] ratings =
            "uploaded", the default), or the invitations' one ratings in the store ("stored")
  评价率    评价量 / 办件量 (or / 邀评量, the cases offered a rating: rate_denominator)
  非常满意 .. 非常不满意, 差评 (= 不满意 + 非常不满意), 有效差评, 已整改, 整改率 (已整改 / 有效差评),
  回访率 (called back / 差评), 满意率 (the configured satisfied grades / 评价量),
  综合得分 (sum of weight x count / 评价量), 排名 (by rank_by, ties share a place)
  默认评价  system default ratings (invitations never rated), counted apart, never in the above
  剔除评价  ratings excluded on review (complaints), counted apart, left out of every other column
Each formula is printed in the bulletin's notes, with the configured weights and grades.
Times: a period's bounds are each hall's local dates (gateway/periods.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import org
from gateway.complaint_figures import ComplaintFigures, NoComplaints, RatingOutcome, complaint_figures
from gateway.config import Config, ConfigError, HallConfig
from gateway.errors import BadInput
from gateway.export import ChartSpec, Column, ColumnKind, Series, Table, competition_ranks
from gateway.periods import Period
from gateway.store import Store
from gateway.store.api import Segment, Tx
from protocol.grades import BAD, GRADES, NAMES_ZH

DEFAULT_WEIGHTS = {"vs": 100.0, "s": 75.0, "bs": 50.0, "d": 25.0, "vd": 0.0}
GROUPS = ("department", "hall", "town", "window", "clerk", "item")
GROUP_ZH = {"department": "各部门", "hall": "各大厅", "town": "各镇（街道）", "window": "各窗口",
            "clerk": "各工作人员", "item": "各事项"}
_EXTRA = {"department": None, "hall": None, "town": None, "window": "window", "clerk": "clerk",
          "item": "item"}
NO_DEPT, UNBOUND, NO_ITEM = "（未指定部门）", "（未绑定）", "（无事项）"


@dataclass(frozen=True)
class BulletinSettings:
    """[bulletin]: the issuing office and every formula (printed in the bulletin's notes)."""

    issuer: str = ""
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    satisfied: tuple[str, ...] = ("vs", "s", "bs")
    rate_denominator: str = "cases"      # cases: 办件量 | invited: cases offered a rating
    ratings: str = "uploaded"            # uploaded: acked by the platform | stored: in the store
    rank_by: str = "score"               # score | satisfaction | rating_rate
    rate_without_base: str = "blank"     # a rate over 0 (e.g. 整改率 with no valid 差评): blank | full

    @classmethod
    def from_config(cls, cfg: Config) -> BulletinSettings:
        sec = cfg.raw.get("bulletin", {})
        w = sec.get("weights", DEFAULT_WEIGHTS)
        if set(w) != set(GRADES) or not all(type(v) in (int, float) and v >= 0 for v in w.values()):
            raise ConfigError("[bulletin] weights must give a number >= 0 for each of vs, s, bs, d, vd,"
                              " e.g. {vs = 100, s = 75, bs = 50, d = 25, vd = 0}")
        sat = sec.get("satisfied", ["vs", "s", "bs"])
        if not sat or not set(sat) <= set(GRADES) or len(set(sat)) != len(sat):
            raise ConfigError("[bulletin] satisfied must list grades among vs, s, bs, d, vd (each once)")
        return cls(issuer=sec.get("issuer", ""), weights={g: float(w[g]) for g in GRADES},
                   satisfied=tuple(g for g in GRADES if g in sat),
                   rate_denominator=sec.get("rate_denominator", "cases"),
                   ratings=sec.get("ratings", "uploaded"), rank_by=sec.get("rank_by", "score"),
                   rate_without_base=sec.get("rate_without_base", "blank"))


# ---- figures --------------------------------------------------------------------------------

@dataclass
class Counts:
    """What one row (or the totals) counts."""

    cases: int = 0           # 办件量
    offered: int = 0         # 邀评量: the cases (办件量's) offered a rating
    ratings: int = 0         # 评价量
    grades: dict[str, int] = field(default_factory=lambda: {g: 0 for g in GRADES})
    valid_bad: int = 0       # 有效差评
    rectified: int = 0       # 已整改
    called_back: int = 0     # 差评 called back
    defaults: int = 0        # 默认评价
    excluded: int = 0        # 剔除评价
    not_uploaded: int = 0    # ratings in the store the platform has not acknowledged (uploaded mode)

    @property
    def bad(self) -> int:
        return sum(self.grades[g] for g in BAD)

    @property
    def empty(self) -> bool:
        """Nothing to show (e.g. a window with walk-up presses only: those are supervision's)."""
        return not (self.cases or self.offered or self.ratings or self.defaults or self.excluded
                    or self.not_uploaded)

    def add(self, o: Counts) -> None:
        for k in ("cases", "offered", "ratings", "valid_bad", "rectified", "called_back", "defaults",
                  "excluded", "not_uploaded"):
            setattr(self, k, getattr(self, k) + getattr(o, k))
        for g in GRADES:
            self.grades[g] += o.grades[g]


@dataclass
class Row:
    key: tuple[str, ...]
    name: str
    detail: str
    counts: Counts
    retired: bool = False
    rating_rate: float | None = None
    satisfaction: float | None = None
    score: float | None = None
    rectification_rate: float | None = None
    callback_rate: float | None = None
    rank: int | None = None

    def finish(self, s: BulletinSettings) -> None:
        c = self.counts
        denominator = c.cases if s.rate_denominator == "cases" else c.offered
        self.rating_rate = _rate(c.ratings, denominator)
        self.satisfaction = _rate(sum(c.grades[g] for g in s.satisfied), c.ratings)
        self.score = round(sum(s.weights[g] * c.grades[g] for g in GRADES) / c.ratings,
                           2) if c.ratings else None
        full = 1.0 if s.rate_without_base == "full" else None
        self.rectification_rate = _rate(c.rectified, c.valid_bad) if c.valid_bad else full
        self.callback_rate = _rate(c.called_back, c.bad) if c.bad else full

    def cells(self) -> dict[str, Any]:
        c = self.counts
        return {"name": self.name, "detail": self.detail, "cases": c.cases, "ratings": c.ratings,
                "rating_rate": self.rating_rate, **{g: c.grades[g] for g in GRADES}, "bad": c.bad,
                "valid_bad": c.valid_bad, "rectified": c.rectified,
                "rectification_rate": self.rectification_rate,
                "callback_rate": self.callback_rate, "satisfaction": self.satisfaction, "score": self.score,
                "rank": self.rank, "defaults": c.defaults, "excluded": c.excluded}

    def extra(self) -> dict[str, Any]:
        """What the JSON carries beyond the table's columns."""
        c = self.counts
        return {"key": list(self.key), "offered": c.offered, "called_back": c.called_back,
                "not_uploaded": c.not_uploaded, "retired": self.retired}


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 6) if d else None


@dataclass
class Bulletin:
    period: Period
    by: str
    hall: str | None
    title: str
    issuer: str
    settings: BulletinSettings
    timezones: list[str]
    rows: list[Row]
    totals: Row
    charts: list[ChartSpec]
    notes: list[str]
    complaints_wired: bool

    def columns(self) -> tuple[Column, ...]:
        first, second = {
            "department": ("单位名称", "统一社会信用代码"), "hall": ("大厅", "类型"),
            "town": ("镇（街道）", "类型"), "window": ("窗口", "所在大厅"), "clerk": ("工作人员", "账号"),
            "item": ("事项名称", "事项编码")}[self.by]
        P, N, D = ColumnKind.PERCENT, ColumnKind.INTEGER, ColumnKind.DECIMAL
        return (Column("name", first), Column("detail", second), Column("cases", "办件量", N),
                Column("ratings", "评价量", N), Column("rating_rate", "评价率", P),
                *(Column(g, NAMES_ZH[g], N) for g in GRADES), Column("bad", "差评", N),
                Column("valid_bad", "有效差评", N), Column("rectified", "已整改", N),
                Column("rectification_rate", "整改率", P), Column("callback_rate", "回访率", P),
                Column("satisfaction", "满意率", P), Column("score", "综合得分", D),
                Column("rank", "排名", N),
                Column("defaults", "系统默认\n评价", N), Column("excluded", "剔除\n评价", N))

    def table(self) -> Table:
        totals = self.totals.cells()
        totals["name"], totals["detail"], totals["rank"] = "合计", "", None
        return Table(title=self.title, issuer=self.issuer, period_label=self.period.span_label,
                     columns=self.columns(), rows=tuple(r.cells() for r in self.rows), totals=totals,
                     notes=tuple(self.notes), charts=tuple(self.charts))

    def to_json(self) -> dict[str, Any]:
        t = self.table().to_json()
        t["rows"] = [{**r.cells(), **r.extra()} for r in self.rows]
        t["totals"] = {**t["totals"], **self.totals.extra()}
        return {**t, "period": {"text": self.period.text, "kind": self.period.kind,
                                "start": self.period.start.isoformat(), "last": self.period.last.isoformat(),
                                "label": self.period.label, "timezones": self.timezones},
                "by": self.by, "hall": self.hall,
                "settings": {"weights": self.settings.weights, "satisfied": list(self.settings.satisfied),
                             "rate_denominator": self.settings.rate_denominator,
                             "ratings": self.settings.ratings, "rank_by": self.settings.rank_by},
                "complaints_wired": self.complaints_wired}


# ---- the computation --------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """Which halls, and each time zone's part of the period."""

    segments: list[Segment]
    halls: dict[str, org.Hall]        # every known hall (for names, towns, time zones)
    timezones: list[str]
    default_id: str


def hall_scope(tx: Tx, default: HallConfig, period: Period, hall: str | None) -> Scope:
    halls = {h.hall_id: h for h in org.list_halls_tx(tx, default)}
    if hall is not None and hall not in halls:
        raise BadInput("unknown hall %s" % hall, "unknown_hall")
    chosen = set(halls) if hall is None else _with_descendants(halls, hall)
    zones: dict[str, list[str]] = {}
    for hid in sorted(chosen):
        zones.setdefault(halls[hid].timezone, []).append(hid)
    # All halls on one zone (the usual case): one time range, every record whatever its hall.
    # Otherwise one range per zone for the halls on it; a record naming a hall that is in no
    # list (not in the store, not the default hall) is then in no segment.
    if hall is None and len(zones) == 1:
        tz = next(iter(zones))
        lo, hi = period.bounds(tz)
        return Scope([(None, lo, hi)], halls, [tz], default.id)
    segments: list[Segment] = []
    for tz, ids in sorted(zones.items()):
        lo, hi = period.bounds(tz)
        segments.append((tuple(ids), lo, hi))
    return Scope(segments, halls, sorted(zones), default.id)


def _with_descendants(halls: dict[str, org.Hall], root: str) -> set[str]:
    out = {root}
    grew = True
    while grew:
        grew = False
        for h in halls.values():
            if h.parent_id in out and h.hall_id not in out:
                out.add(h.hall_id)
                grew = True
    return out


def town_of(halls: dict[str, org.Hall], hall_id: str) -> str:
    """The town centre (or district centre) a hall belongs to: itself unless a village point."""
    seen = set()
    h = halls.get(hall_id)
    while h is not None and h.kind == "village" and h.parent_id and h.parent_id not in seen:
        seen.add(h.hall_id)
        parent = halls.get(h.parent_id)
        if parent is None:
            break
        h = parent
    return h.hall_id if h is not None else hall_id


def _in_scope(scope: Scope, hall_id: str, t: int) -> bool:
    return any((halls is None or hall_id in halls) and lo <= t < hi for halls, lo, hi in scope.segments)


@dataclass
class _Acc:
    """Counts per fine key (hall, dept, *extra); a stored NULL hall is the default hall."""

    default_hall: str
    by_key: dict[tuple[str, ...], Counts] = field(default_factory=dict)

    def get(self, key: tuple[Any, ...]) -> Counts:
        k = (self.default_hall if key[0] is None else str(key[0]),
             *("" if v is None else str(v) for v in key[1:]))
        c = self.by_key.get(k)
        if c is None:
            c = self.by_key[k] = Counts()
        return c


# A `rated` record is its invitation's one rating unless attribution flagged it as not linked
# to it (gateway/attribution.py sets exactly these when it does not close the invitation with it).
NOT_THE_RATING = frozenset(("extra", "late", "no_invitation", "foreign_invitation", "attribution_error"))


def is_the_rating(kind: str, flags: str | None) -> bool:
    return kind == "rated" and not (set((flags or "").split(",")) & NOT_THE_RATING)


def classify(mode: str, kind: str, grade: str | None, flags: str | None, up: str | None,
             dflt: int) -> str | None:
    """What a record counts as: a grade code (a rating), "default", "not_uploaded", or None."""
    if mode == "uploaded":
        if up == "acked":
            if int(dflt):
                return "default"
            return grade if grade in GRADES else None
        if grade in GRADES and is_the_rating(kind, flags):
            return "not_uploaded"
        return None
    if grade in GRADES and is_the_rating(kind, flags):
        return grade
    return None


def _add(c: Counts, what: str | None, n: int) -> None:
    if what is None:
        return
    if what == "default":
        c.defaults += n
    elif what == "not_uploaded":
        c.not_uploaded += n
    else:
        c.ratings += n
        c.grades[what] += n


def _sub(c: Counts, what: str, n: int = 1) -> None:
    _add(c, what, -n)


def _apply_outcomes(tx: Tx, scope: Scope, acc: _Acc, settings: BulletinSettings, extra: str | None,
                    outcomes: list[RatingOutcome], trend: Trend, edges: dict[str, list[int]]) -> None:
    """The complaints work's outcomes, grouped like the ratings: an excluded rating leaves the
    columns (and the trend) it counted in for 剔除评价; valid/rectified/called back count for
    the 差评 of the 评价量."""
    mode = settings.ratings
    if not outcomes:
        return
    lo = min(s[1] for s in scope.segments)
    hi = max(s[2] for s in scope.segments)
    by_id = {o.record_id: o for o in outcomes}
    for (rid, hall, dept, window, clerk, task_code, task_name, kind, grade, flags, up, dflt,
         pressed) in tx.figures.records_by_id(sorted(by_id), scope.default_id):
        if not (lo <= int(pressed) < hi and _in_scope(scope, hall, int(pressed))):
            continue
        o = by_id[rid]
        x: tuple[Any, ...] = {None: (), "window": (window,), "clerk": (clerk,),
                              "item": (task_code, task_name)}[extra]
        c = acc.get((hall, dept, *x))
        what = classify(mode, kind, grade, flags, up, dflt)
        if o.excluded:
            if what is not None:
                _sub(c, what)
            if what in GRADES:
                h = scope.halls.get(hall)
                tz_edges = edges.get(h.timezone if h is not None else scope.timezones[0], [])
                b = bisect.bisect_right(tz_edges, int(pressed)) - 1
                if 0 <= b < len(trend.total):
                    trend.total[b] -= 1
                    trend.good[b] -= what in settings.satisfied
            c.excluded += 1
            continue
        if what in BAD:
            c.valid_bad += o.valid_bad
            c.rectified += o.rectified and o.valid_bad
            c.called_back += o.called_back


@dataclass
class Trend:
    """Ratings and satisfied ratings per sub-period of the period (the trend chart)."""

    labels: list[str]
    total: list[int]
    good: list[int]


def collect(tx: Tx, scope: Scope, period: Period, settings: BulletinSettings, by: str,
            complaints: ComplaintFigures) -> tuple[_Acc, int, int, Trend]:
    """Every count of the period per fine key, in one read unit of work; how many more cases
    and offered cases the totals have than the rows' sum (a case invited at two windows is one
    case of the district, counted once in the totals); and the trend."""
    extra = _EXTRA[by]
    acc = _Acc(scope.default_id)
    mode = settings.ratings
    seg, d = scope.segments, scope.default_id
    buckets = period.buckets()
    trend = Trend([b[0] for b in buckets], [0] * len(buckets), [0] * len(buckets))
    edges_by_tz: dict[str, list[int]] = {}
    for one in seg:   # each time zone's part: its own bucket edges
        halls = one[0]
        tz = scope.halls[halls[0]].timezone if halls else scope.timezones[0]
        edges = [Period("", "range", b[1], b[2]).bounds(tz)[0] for b in buckets] + [period.bounds(tz)[1]]
        edges_by_tz[tz] = edges
        for row in tx.figures.ratings([one], d, extra, edges):
            key, (b, kind, grade, flags, up, dflt, n) = row[:-7], row[-7:]
            what = classify(mode, kind, grade, flags, up, dflt)
            _add(acc.get(key), what, int(n))
            if what in GRADES:
                trend.total[int(b)] += int(n)
                trend.good[int(b)] += int(n) if what in settings.satisfied else 0
    if mode == "uploaded":
        for row in tx.figures.invitation_defaults(seg, d, extra):
            key, (up, n) = row[:-2], row[-2:]
            if up == "acked":
                acc.get(key).defaults += int(n)
    else:
        for row in tx.figures.unrated_invitations(seg, d, extra):
            acc.get(row[:-1]).defaults += int(row[-1])
    for row in tx.figures.cases(seg, d, extra):
        c = acc.get(row[:-2])
        c.cases += int(row[-2])
        c.offered += int(row[-1] or 0)
    unreported_sum = 0
    for row in tx.figures.unreported(seg, d, extra):
        c = acc.get(row[:-1])
        c.cases += int(row[-1])        # invited, never reported by the feed: still a case, offered
        c.offered += int(row[-1])
        unreported_sum += int(row[-1])
    lo = min(s[1] for s in seg)
    hi = max(s[2] for s in seg)
    _apply_outcomes(tx, scope, acc, settings, extra, complaints.outcomes(tx, lo, hi), trend, edges_by_tz)
    more = tx.figures.unreported_total(seg, d) - unreported_sum
    return acc, more, more, trend


def _trend_chart(trend: Trend, period: Period) -> ChartSpec:
    values = tuple(round(g / t, 6) if t else None for g, t in zip(trend.good, trend.total, strict=True))
    x_title = "日期" if period.days <= 31 else "周" if period.days <= 92 else "月份"
    return ChartSpec("line", "满意率走势", tuple(trend.labels), (Series("满意率", values),),
                     y_title="满意率", x_title=x_title, percent=True)


@dataclass(frozen=True)
class Names:
    halls: dict[str, org.Hall]
    departments: dict[str, Any]
    windows: dict[str, Any]
    staff: dict[str, Any]


def _names(tx: Tx, scope: Scope) -> Names:
    return Names(scope.halls, {d.dept_code: d for d in tx.org.list_departments()},
                 {w.window_id: w for w in tx.org.list_windows()}, {s.account: s for s in tx.org.list_staff()})


def _label(by: str, key: tuple[str, ...], n: Names, default_id: str) -> tuple[str, str, bool]:
    """(name, detail, retired) of a row."""
    k = key[0]
    if by in ("hall", "town"):
        h = n.halls.get(k)
        return ((h.name, org.HALL_KIND_ZH.get(h.kind, h.kind), h.retired) if h else (k, "", False))
    if by == "department":
        d = n.departments.get(k)
        if not k:
            return NO_DEPT, "", False
        return (d.name, k, d.retired) if d else (k, k, False)
    if by == "window":
        if not k:
            return UNBOUND, "", False
        w = n.windows.get(k)
        if w is None:
            return k, "", False
        h = n.halls.get(w.hall_id or default_id)
        return (("%s %s" % (k, w.name)).strip(), h.name if h else (w.hall_id or ""), w.retired)
    if by == "clerk":
        if not k:
            return UNBOUND, "", False
        s = n.staff.get(k)
        return (s.display_name, k, s.retired) if s else (k, k, False)
    return (key[1] or NO_ITEM, key[0], False)   # item: (code, name)


def _row_key(by: str, fine: tuple[str, ...], halls: dict[str, org.Hall]) -> tuple[str, ...]:
    hall, dept = fine[0], fine[1]
    if by == "hall":
        return (hall,)
    if by == "town":
        return (town_of(halls, hall),)
    if by == "department":
        return (dept,)
    return tuple(fine[2:])


def _notes(s: BulletinSettings, scope: Scope, complaints_wired: bool) -> list[str]:
    zh = NAMES_ZH
    sat = "＋".join(zh[g] for g in s.satisfied)
    weights = "＋".join("%s×%g" % (zh[g], s.weights[g]) for g in GRADES)
    denominator = "办件量" if s.rate_denominator == "cases" else "邀评量（已邀请评价的办件数）"
    ratings = ("统计周期内作出并已上传至省级好差评平台（经平台确认）的评价数" if s.ratings == "uploaded"
               else "统计周期内作出、存入本系统的评价数（每个邀请只计一次评价）")
    notes = [
        "统计时间按各大厅所在时区（%s）的自然日计算。" % "、".join(scope.timezones),
        "办件量：窗口受理系统报送、受理时间在统计周期内的办件数（不含撤件），加上已邀请评价但未报送的办件。",
        "评价量：%s；系统默认评价和剔除的评价单独列出，不计入评价量、各等级、满意率和综合得分。" % ratings,
        "评价率 = 评价量 ÷ %s。" % denominator,
        "满意率 = （%s）÷ 评价量。" % sat,
        "综合得分 = （%s）÷ 评价量。" % weights,
        "差评 = 不满意＋非常不满意；有效差评为经核实的差评；"
        "整改率 = 已整改 ÷ 有效差评；回访率 = 已回访差评 ÷ 差评。",
        "排名按%s从高到低，相同者名次并列；无评价的不参与排名。" % {
            "score": "综合得分", "satisfaction": "满意率", "rating_rate": "评价率"}[s.rank_by],
        "系统默认评价：已邀请评价而群众未作评价、由系统按规定生成的评价。",
    ]
    if not complaints_wired:
        notes.append("有效差评、已整改、回访、剔除数据来自差评整改工单；本系统尚未接入差评工单，相关数据按0计。")
    return notes


def build(tx: Tx, cfg: Config, period: Period, by: str, hall: str | None, settings: BulletinSettings,
          complaints: ComplaintFigures) -> Bulletin:
    """The whole bulletin inside one read unit of work."""
    if by not in GROUPS:
        raise BadInput("--by must be one of %s" % ", ".join(GROUPS), "bad_group")
    scope = hall_scope(tx, cfg.hall, period, hall)
    acc, more_cases, more_offered, trend = collect(tx, scope, period, settings, by, complaints)
    names = _names(tx, scope)
    rows: dict[tuple[str, ...], Row] = {}
    by_hall: dict[str, Counts] = {}
    by_dept: dict[str, Counts] = {}
    for fine, counts in acc.by_key.items():
        key = _row_key(by, fine, scope.halls)
        r = rows.get(key)
        if r is None:
            name, detail, retired = _label(by, key, names, scope.default_id)
            r = rows[key] = Row(key, name, detail, Counts(), retired)
        r.counts.add(counts)
        # The chart reads at the supervisor's level: a village point counts with its town.
        by_hall.setdefault(town_of(scope.halls, fine[0]), Counts()).add(counts)
        by_dept.setdefault(fine[1], Counts()).add(counts)
    out = sorted((r for r in rows.values() if not r.counts.empty), key=lambda r: r.key)
    totals = Row(("*",), "合计", "", Counts())
    for r in out:
        r.finish(settings)
        totals.counts.add(r.counts)
    totals.counts.cases += more_cases
    totals.counts.offered += more_offered
    totals.finish(settings)
    measure: Callable[[Row], float | None] = {
        "score": lambda r: r.score, "satisfaction": lambda r: r.satisfaction,
        "rating_rate": lambda r: r.rating_rate}[settings.rank_by]
    for r, rank in zip(out, competition_ranks([measure(r) for r in out]), strict=True):
        r.rank = rank
    out.sort(key=lambda r: (r.rank is None, r.rank or 0, r.name))
    charts = [_trend_chart(trend, period), _bad_by_department(by_dept, names),
              _rate_by_hall(by_hall, scope, settings)]
    wired = not isinstance(complaints, NoComplaints)
    issuer = settings.issuer
    title = "%s%s“好差评”评估通报表" % (period.label, GROUP_ZH[by])
    return Bulletin(period, by, hall, title, issuer, settings, scope.timezones, out, totals, charts,
                    _notes(settings, scope, wired), wired)


def _bad_by_department(by_dept: dict[str, Counts], names: Names) -> ChartSpec:
    items = sorted(by_dept.items(), key=lambda kv: (-kv[1].bad, kv[0]))
    cats = tuple(_label("department", (k,), names, "")[0] for k, _ in items)
    bad = Series("差评", tuple(float(c.bad) for _, c in items))
    return ChartSpec("bar", "差评数（按部门）", cats, (bad,),
                     y_title="件", x_title="部门")


def _rate_by_hall(by_hall: dict[str, Counts], scope: Scope, s: BulletinSettings) -> ChartSpec:
    rows = []
    for hid, c in sorted(by_hall.items()):
        r = Row((hid,), "", "", c)
        r.finish(s)
        h = scope.halls.get(hid)
        rows.append((h.name if h else hid, r.rating_rate))
    rates = Series("评价率", tuple(v for _, v in rows))
    return ChartSpec("bar", "评价率（按大厅）", tuple(n for n, _ in rows), (rates,),
                     y_title="评价率", x_title="大厅", percent=True)


async def make_bulletin(store: Store, cfg: Config, period: Period, by: str = "department",
                        hall: str | None = None,
                        complaints: ComplaintFigures | None = None,
                        settings: BulletinSettings | None = None) -> Bulletin:
    s = settings or cfg.sections.get("bulletin") or BulletinSettings.from_config(cfg)
    c = complaints if complaints is not None else complaint_figures(cfg)
    return await store.read(lambda tx: build(tx, cfg, period, by, hall, s, c))

