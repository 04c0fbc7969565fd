"""Per-province adapters: internal records -> the platform's record fields, and the schema
the platform checks them against.

An adapter fixes the defaults of one platform family (field names, grade code table, time
format, envelope); [uplink] settings may override each of them. Logical fields are ours,
field names are the platform's. Integers only appear here, through an explicit table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.uplink.schema import FieldSpec, Schema, time_pattern
from gateway.uplink.settings import GRADE_TABLES, UplinkSettings
from protocol import grades

# Logical fields in upload order; the names are ours, not any platform's.
LOGICAL_FIELDS = (
    "project_no", "task_code", "task_name", "dept_code", "area_code", "channel", "grade",
    "eval_detail", "writing", "assess_time", "assess_number", "user_prop", "default_flag",
    "clerk", "tag_version", "record_id",
)
# Fields that come from the case (the invitation); absent for walk-ups and unpaired presses.
CASE_FIELDS = ("project_no", "task_code", "task_name", "dept_code", "user_prop")

# Upload id of an invitation that closed without any device record (superseded, expired):
# its flagged default rating is keyed by the invitation, as a record is by its record id.
INVITATION_ID_PREFIX = "inv:"


def invitation_upload_id(invitation_id: str) -> str:
    return INVITATION_ID_PREFIX + invitation_id


# Applicant type as the window system may send it -> 1 person, 2 legal entity.
APPLICANT_TYPES = {"1": 1, "2": 2, "person": 1, "individual": 1, "natural": 1,
                   "legal": 2, "entity": 2, "company": 2, "org": 2}


class MappingError(ValueError):
    """A record that cannot be expressed for the platform (kept as a local rejection)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class UplinkRecord:
    """One row of the gateway store joined with its invitation (None fields when absent)."""

    record_id: str
    device_id: str
    kind: str
    grade: str | None
    invitation_id: str | None
    pressed_at_ms: int | None
    received_at_ms: int
    staff_account: str | None
    case_no: str | None = None
    task_code: str | None = None
    task_name: str | None = None
    dept_code: str | None = None
    applicant_type: Any = None
    invitation_staff: str | None = None
    tags: str | None = None           # evaluation tag codes, comma-separated, when known
    comment: str | None = None        # free text, when known
    tag_version: str | None = None    # the tag set the tags belong to
    assess_number: int = 1            # 1 the case's first rating, 2 a follow-up rating (追加评价)
    item_status: str | None = None    # its uplink state so far (None: never considered)
    default_status: str | None = None  # uplink state of "inv:<its invitation>", if that exists
    # Other invitations and uploads of the same case (gateway/store/sql/uplink.py: one first
    # rating per case): the record rating another invitation of the case, whether one is still
    # pending, whether a later one (not withdrawn) exists, and the upload id already carrying
    # the case's rating of this assess number.
    case_rated_by: str | None = None
    case_pending: int = 0
    case_later: int = 0
    case_taken_by: str | None = None
    channel: str = "device"           # how the rating was given: device (an evaluator) | qr (the page)


@dataclass(frozen=True)
class AdapterFamily:
    name: str
    names: dict[str, str]       # logical -> platform field name
    grade_codes: str            # key of settings.GRADE_TABLES
    time_format: str
    envelope: str
    # Capability: the platform takes corrections of a rating it holds (an exclusion after a
    # review, reasons given after the upload) at [uplink] corrections_path. Without it, they
    # are listed for someone to make in the platform's own back office.
    corrections: bool = False


DEFAULT = AdapterFamily(
    name="default",
    names={"project_no": "projectNo", "task_code": "taskCode", "task_name": "taskName",
           "dept_code": "deptCode", "area_code": "areaCode", "channel": "pf", "grade": "satisfaction",
           "eval_detail": "evalDetail", "writing": "writingEvaluation", "assess_time": "assessTime",
           "assess_number": "assessNumber", "user_prop": "userProp", "default_flag": "defaultFlag",
           "clerk": "clerkAccount", "tag_version": "tagVersion", "record_id": "recordId"},
    grade_codes="provincial",
    time_format="%Y-%m-%d %H:%M:%S",
    envelope="json",
    corrections=True,
)

# GB/T 39046-2020 codes (1 = 非常满意) and its basic time format. The field names are this
# project's choice for the second family (the standard fixes codes, not a JSON interface).
GBT39046 = AdapterFamily(
    name="gbt39046",
    names={"project_no": "serviceNo", "task_code": "itemCode", "task_name": "itemName",
           "dept_code": "orgCode", "area_code": "regionCode", "channel": "channel",
           "grade": "evaluateLevel", "eval_detail": "evaluateTags", "writing": "evaluateText",
           "assess_time": "evaluateTime", "assess_number": "evaluateNumber",
           "user_prop": "applicantType", "default_flag": "isDefault", "clerk": "handler",
           "tag_version": "tagVersion", "record_id": "evaluateId"},
    grade_codes="gbt39046",
    time_format="%Y%m%dT%H%M%S",
    envelope="json",
)

FAMILIES = {DEFAULT.name: DEFAULT, GBT39046.name: GBT39046}


class Adapter:
    """A family with the hall's overrides applied: maps records and declares the schema."""

    def __init__(self, settings: UplinkSettings) -> None:
        fam = FAMILIES[settings.adapter]
        unknown = sorted(set(settings.fields) - set(LOGICAL_FIELDS))
        if unknown:
            raise ValueError("uplink.fields: unknown logical fields %s (known: %s)"
                             % (", ".join(unknown), ", ".join(LOGICAL_FIELDS)))
        self.settings = settings
        self.name = fam.name
        self.names = {**fam.names, **settings.fields}
        if len(set(self.names.values())) != len(self.names):
            raise ValueError("uplink.fields: two logical fields map to the same platform field")
        self.grade_table = GRADE_TABLES[settings.grade_codes or fam.grade_codes]
        self.time_format = settings.time_format or fam.time_format
        self.envelope = settings.envelope or fam.envelope
        self.tz = settings.tz
        self.can_correct = fam.corrections and bool(settings.corrections_path)

    @property
    def id_field(self) -> str:
        return self.names["record_id"]

    def format_time(self, ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, self.tz).strftime(self.time_format)

    def map(self, r: UplinkRecord) -> dict[str, Any]:
        """The platform record for r, or MappingError when r cannot be uploaded as is."""
        s = self.settings
        out: dict[str, Any] = {}
        if r.kind == "extra":
            raise MappingError("not_a_rating", "extra presses are never ratings")
        if r.kind == "rated":
            if r.grade is None or not grades.is_grade(r.grade):
                raise MappingError("no_grade", "rated record without a valid grade")
            grade, default_flag = r.grade, 0
        elif r.kind == "unrated":
            grade, default_flag = s.default_grade, 1
        else:   # walkup / unpaired, only when the settings make them uploadable
            if r.grade is None or not grades.is_grade(r.grade):
                raise MappingError("no_grade", "%s record without a valid grade" % r.kind)
            grade, default_flag = r.grade, 0
        if r.kind in ("rated", "unrated"):
            if r.case_no is None:
                raise MappingError("no_case", "invitation %r is not known to the gateway" % r.invitation_id)
            out["project_no"] = r.case_no
            out["task_code"] = r.task_code or ""
            out["task_name"] = r.task_name or ""
            out["dept_code"] = r.dept_code or ""
            prop = APPLICANT_TYPES.get(str(r.applicant_type).strip().lower())
            if prop is None:
                raise MappingError("bad_applicant_type", "applicant type %r is not person/legal entity"
                                   % (r.applicant_type,))
            out["user_prop"] = prop
        out["area_code"] = s.area_code
        # 评价渠道: the QR page's ratings as [uplink] qr_pf (3 二维码), the evaluators' as pf.
        out["channel"] = s.qr_pf if r.channel == "qr" else s.pf
        out["grade"] = self.grade_table[grade]
        if r.tags:
            out["eval_detail"] = r.tags
        if r.comment:
            out["writing"] = r.comment
        out["assess_time"] = self.format_time(r.pressed_at_ms or r.received_at_ms)
        # 1 the case's first rating; 2 a follow-up rating (a follow-up invitation's), never a
        # second first rating.
        out["assess_number"] = 2 if r.assess_number == 2 and r.kind == "rated" else 1
        out["default_flag"] = default_flag
        clerk = r.staff_account or r.invitation_staff
        if clerk:
            out["clerk"] = clerk
        out["tag_version"] = (r.tag_version if r.tags and r.tag_version else s.tag_version)[:16]
        out["record_id"] = r.record_id
        return {self.names[k]: v for k, v in out.items()}

    def map_correction(self, record_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One correction as the platform's corrections interface takes it: the rating's id
        field, "action" ("exclude" with a "reason", or "reasons" with the tag and text fields
        under the platform's own names)."""
        out: dict[str, Any] = {self.id_field: record_id, "action": action}
        if action == "exclude":
            out["reason"] = payload.get("reason", "")
        else:
            out[self.names["eval_detail"]] = payload.get("tags") or ""
            out[self.names["writing"]] = payload.get("text") or ""
            out[self.names["tag_version"]] = (payload.get("tag_version") or self.settings.tag_version)[:16]
        return out

    def schema(self) -> Schema:
        s = self.settings
        case_required = s.require_project_no

        def spec(t: str, required: bool = True, **kw: Any) -> FieldSpec:
            f: FieldSpec = {"type": t, "required": required}
            f.update(kw)  # type: ignore[typeddict-item]
            return f

        logical: dict[str, FieldSpec] = {
            "project_no": spec("str", case_required, max_len=64),
            "task_code": spec("str", case_required, max_len=64),
            "task_name": spec("str", case_required, max_len=200),
            "dept_code": spec("str", case_required, pattern=s.dept_code_pattern),
            "area_code": spec("str", pattern=r"\d{6,12}"),
            "channel": spec("int", codes=[1, 2, 3, 4, 5, 6, 7]),
            "grade": spec("int", codes=sorted(self.grade_table.values())),
            "eval_detail": spec("str", False, pattern=r"[0-9A-Za-z_-]+(,[0-9A-Za-z_-]+)*", max_len=200,
                                correctable=True),
            "writing": spec("str", False, max_len=500, correctable=True),
            "assess_time": spec("str", pattern=time_pattern(self.time_format), time_format=self.time_format),
            "assess_number": spec("int", codes=[1, 2]),
            "user_prop": spec("int", case_required, codes=[1, 2]),
            "default_flag": spec("int", codes=[0, 1]),
            "clerk": spec("str", False, max_len=64),
            "tag_version": spec("str", max_len=16, correctable=True),
            # A record id, or the id of an invitation's default rating ("inv:<invitation id>").
            "record_id": spec("str", pattern=r"[a-z0-9-]{1,32}:[1-9]\d*:[1-9]\d*|inv:[A-Za-z0-9_-]{1,32}"),
        }
        return {
            "adapter": self.name,
            "id_field": self.id_field,
            "envelope": self.envelope,
            "fields": {self.names[k]: v for k, v in logical.items()},
        }


def make_adapter(settings: UplinkSettings) -> Adapter:
    return Adapter(settings)


def corrections_mode(settings: UplinkSettings | None) -> str | None:
    """How the platform learns of corrections: "send" (the adapter can), "manual" (listed for
    the platform's back office), None (no uplink: nothing went up, nothing to correct)."""
    if settings is None or not settings.enabled:
        return None
    return "send" if make_adapter(settings).can_correct else "manual"
