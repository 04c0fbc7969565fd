"""What the repositories return: plain dataclasses, the same for every backend."""

from __future__ import annotations

from dataclasses import KW_ONLY, asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    secret_hex: str
    fw: str | None
    created_at: int
    last_seen: int | None
    online: bool
    status_b: int | None
    status_c: int | None
    boot: int | None
    last_hb_json: str | None
    last_hello_json: str | None
    journal_depth: int | None
    reconnects: int
    last_rst: str | None
    cmd_boot: int | None
    cmd_n_reserved: int
    enabled: bool
    limited: int = 0               # messages dropped by the per-device rate limit (ingest gate)
    limited_at: int | None = None  # the last such drop
    quenched_until: int | None = None  # its broker account disabled for flooding until then

    def public(self) -> dict[str, Any]:
        """Everything but the secret (for the API and CLI)."""
        d = asdict(self)
        d.pop("secret_hex")
        d["online"] = int(self.online)
        d["enabled"] = int(self.enabled)
        return d


@dataclass(frozen=True)
class DeviceHealth:
    """The fields the registry writes back in batches."""

    device_id: str
    last_seen: int | None
    online: bool
    status_b: int | None
    status_c: int | None
    boot: int
    fw: str | None
    journal_depth: int | None
    reconnects: int
    last_rst: str | None
    last_hb_json: str | None
    last_hello_json: str | None
    limited: int = 0
    limited_at: int | None = None


@dataclass(frozen=True)
class Window:
    window_id: str
    dept_code: str
    name: str
    hall_id: str | None = None      # None: the default hall ([hall] in the config)
    retired_ms: int | None = None

    @property
    def retired(self) -> bool:
        return self.retired_ms is not None


@dataclass(frozen=True)
class Staff:
    account: str
    display_name: str
    dept_code: str = ""             # the clerk's own department ("" when not given)
    retired_ms: int | None = None

    @property
    def retired(self) -> bool:
        return self.retired_ms is not None


@dataclass(frozen=True)
class HallRow:
    """A hall as stored (table halls); gateway.org.Hall is the domain view."""

    hall_id: str
    name: str
    kind: str                       # centre | town | village
    parent_id: str | None
    area_code: str
    timezone: str
    opening_hours: str              # "08:30-12:00,13:30-17:30"
    opening_days: str               # "1,2,3,4,5"
    created_ms: int
    retired_ms: int | None


@dataclass(frozen=True)
class Department:
    dept_code: str                  # unified social credit code (GB 32100-2015)
    name: str
    hall_id: str | None             # where it sits (None: the default hall)
    created_ms: int
    retired_ms: int | None

    @property
    def retired(self) -> bool:
        return self.retired_ms is not None


@dataclass(frozen=True)
class WindowPlace:
    """Where a window was, [valid_from_ms, valid_to_ms)."""

    window_id: str
    hall_id: str | None
    dept_code: str
    valid_from_ms: int
    valid_to_ms: int | None


@dataclass(frozen=True)
class Binding:
    id: int
    device_id: str
    window_id: str
    staff_account: str
    display_name: str
    valid_from_ms: int
    valid_to_ms: int | None
    created_by: str
    ended_by: str | None

    @property
    def active(self) -> bool:
        return self.valid_to_ms is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Invitation:
    id: str
    device_id: str
    window_id: str
    staff_account: str
    binding_id: int
    case_no: str
    task_code: str
    task_name: str
    dept_code: str
    applicant_type: int | None
    countdown_s: int
    status: str
    created_ms: int
    expires_ms: int
    closed_ms: int | None
    close_reason: str | None
    record_id: str | None
    grade: str | None
    assess_number: int = 1   # 1 the case's first rating, 2 a follow-up rating (追加评价)
    hall_id: str | None = None      # the window's hall when it was issued (None: the default hall)
    receipt: bool = False    # printed on the 办件 receipt as a QR link, never shown on an evaluator

    def __post_init__(self) -> None:
        object.__setattr__(self, "receipt", bool(self.receipt))   # 0/1 from the database

    def public(self) -> dict[str, Any]:
        """The API's view (no internal ids beyond what the window system needs)."""
        d = asdict(self)
        d["invitation_id"] = d.pop("id")
        d.pop("binding_id")
        if self.status != "rated":
            d.pop("grade")
        return d


@dataclass(frozen=True)
class NewInvitation:
    id: str
    device_id: str
    window_id: str
    staff_account: str
    binding_id: int
    case_no: str
    task_code: str
    task_name: str
    dept_code: str
    applicant_type: int | None
    countdown_s: int
    created_ms: int
    expires_ms: int
    created_by: str
    assess_number: int = 1
    # By name only: two optional fields of the same kind, added by different features.
    _: KW_ONLY
    hall_id: str | None = None      # the window's hall at issue (None: the default hall)
    receipt: bool = False           # a receipt (QR link) invitation, never shown on an evaluator


@dataclass(frozen=True)
class Change:
    """One entry of the change feed other instances and processes poll."""

    id: int
    kind: str        # e.g. "device.key"
    subject: str     # e.g. the device id


@dataclass(frozen=True)
class AlertRow:
    """One raised condition (gateway/alerts.py): open while resolved_ms is None."""

    id: int
    cond_key: str
    kind: str
    severity: str
    subject: str
    detail: dict[str, Any]
    opened_ms: int
    notified_ms: int | None
    resolved_ms: int | None
    recovery_notified_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Complaint:
    """A 差评 work order (table complaints, migration 0200); times are UTC epoch ms."""

    id: int
    record_id: str
    channel: str
    grade: str
    assess_number: int
    invitation_id: str | None
    case_no: str
    task_code: str
    task_name: str
    rated_ms: int
    opened_ms: int
    hall_id: str
    hall_name: str
    hall_tz: str
    dept_code: str
    dept_name: str
    window_id: str
    window_name: str
    staff_account: str
    staff_name: str
    state: str
    verdict: str
    invalid_reason: str | None
    complex: bool
    tag_version: str | None
    tags: str
    comment: str
    reasons_source: str | None
    callback_grade: str | None
    appeal_state: str
    overturn_reason: str | None
    notified_ms: int
    contacted_ms: int | None
    verified_ms: int | None
    rectified_ms: int | None
    callback_ms: int | None
    closed_ms: int | None
    appealed_ms: int | None
    review_started_ms: int | None
    decided_ms: int | None
    contact_due_ms: int | None
    rectify_due_ms: int | None
    appeal_due_ms: int | None
    review_due_ms: int | None
    calendar_error: str | None
    version: int
    updated_ms: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COMPLAINT_COLUMNS = tuple(Complaint.__dataclass_fields__)


@dataclass(frozen=True)
class NewComplaint:
    """What opening a complaint writes (the rest takes the table's defaults)."""

    record_id: str
    channel: str
    grade: str
    assess_number: int
    invitation_id: str | None
    case_no: str
    task_code: str
    task_name: str
    rated_ms: int
    opened_ms: int
    hall_id: str
    hall_name: str
    hall_tz: str
    dept_code: str
    dept_name: str
    window_id: str
    window_name: str
    staff_account: str
    staff_name: str
    notified_ms: int
    contact_due_ms: int | None
    rectify_due_ms: int | None
    appeal_due_ms: int | None
    calendar_error: str | None


@dataclass(frozen=True)
class Correction:
    """Something the platform must be told about a rating that went up (uplink_corrections)."""

    id: int
    record_id: str
    complaint_id: int | None
    action: str
    payload: dict[str, Any]
    status: str
    created_ms: int
    attempts: int
    sent_ms: int | None
    done_ms: int | None
    done_by: str | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InstanceBeat:
    """What a running gateway instance says about itself every few seconds."""

    instance: str            # host:pid
    client_id: str           # its [mqtt] client_id
    version: str
    started_ms: int
    seen_ms: int
    mqtt_ok: bool
    mqtt_error: str | None
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QrPlate:
    """A printed static plate (qr_plates, migration 0400): a window and its clerk, as issued."""

    id: str
    kid: int
    window_id: str
    staff_account: str
    binding_id: int
    issued_ms: int
    issued_by: str
    revoked_ms: int | None
    revoked_by: str | None
    revoke_reason: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_ms is not None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QrSubmission:
    """One rating given on the QR page (qr_submissions), keyed by its form's one-time id."""

    nonce: str
    via: str           # plate | case
    subject: str       # the plate id, or the invitation id of the link
    record_id: str
    outcome: str       # rated | follow_up | extra | walkup
    grade: str
    tags: str
    comment: str
    created_ms: int


@dataclass(frozen=True)
class ConsoleAccount:
    """A web console account (migration 0300). halls / depts: its scope, () = all."""

    name: str
    display_name: str
    role: str
    halls: tuple[str, ...]
    depts: tuple[str, ...]
    password_hash: str
    must_change: bool
    disabled: bool
    failed_logins: int
    locked_until_ms: int | None
    created_ms: int
    password_ms: int
    last_login_ms: int | None

    def public(self) -> dict[str, Any]:
        """Everything but the password hash (for the CLI and the console)."""
        d = asdict(self)
        d.pop("password_hash")
        d["halls"] = list(self.halls)
        d["depts"] = list(self.depts)
        return d


@dataclass(frozen=True)
class ConsoleSession:
    """A logged-in browser: the SHA-256 of its cookie token, never the token itself."""

    token_hash: str
    account: str
    csrf: str
    created_ms: int
    last_seen_ms: int
    expires_ms: int
    remote: str


@dataclass(frozen=True)
class CaseRow:
    """One 办件 as the window system reported it (table cases)."""

    case_no: str
    hall_id: str | None
    window_id: str | None
    staff_account: str | None
    staff_name: str
    dept_code: str
    task_code: str
    task_name: str
    status: str                 # accepted | finished | withdrawn
    accepted_ms: int
    finished_ms: int | None
    reported_ms: int = 0
    updated_ms: int = 0
    reported_by: str = ""

    def same_report(self, other: CaseRow) -> bool:
        """The same facts (times of reporting aside)."""
        keep = ("reported_ms", "updated_ms", "reported_by")
        return all(getattr(self, k) == getattr(other, k) for k in self.__dataclass_fields__ if k not in keep)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
