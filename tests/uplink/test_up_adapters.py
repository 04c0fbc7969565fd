"""Both adapters: the mapping (grade direction, time format, names) and that each record
satisfies the schema the adapter declares, checked by the real stand-in; settings errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from up_support import Database, Seeder, fast_settings, local_ms

from gateway.uplink.adapters import MappingError, UplinkRecord, make_adapter
from gateway.uplink.push import push_once
from gateway.uplink.schema import validate_record
from gateway.uplink.settings import UplinkConfigError, UplinkSettings, load_settings
from gateway.uplink.wire import WireError, decode_batch, encode_batch
from simulator.platform import PlatformStandIn

CASE = dict(case_no="330100-2025-000123", task_code="T0001", task_name="居民身份证换领",
            dept_code="11540102MB0000001X", applicant_type=2, invitation_staff="clerk01")


def rec(grade: str | None = "vs", kind: str = "rated", **kw: object) -> UplinkRecord:
    base: dict[str, object] = dict(record_id="hcp-dev1:3:17", device_id="hcp-dev1", kind=kind, grade=grade,
                                   invitation_id="inv-1", pressed_at_ms=local_ms("2025-03-03", 14, 5, 9),
                                   received_at_ms=local_ms("2025-03-03", 14, 5, 10), staff_account="clerk01",
                                   **CASE)
    base.update(kw)
    return UplinkRecord(**base)  # type: ignore[arg-type]


def test_default_adapter_fields() -> None:
    a = make_adapter(UplinkSettings(area_code="540102"))
    out = a.map(rec("vs"))
    assert out == {"projectNo": "330100-2025-000123", "taskCode": "T0001", "taskName": "居民身份证换领",
                   "deptCode": "11540102MB0000001X", "areaCode": "540102", "pf": 5, "satisfaction": 5,
                   "assessTime": "2025-03-03 14:05:09", "assessNumber": 1, "userProp": 2, "defaultFlag": 0,
                   "clerkAccount": "clerk01", "tagVersion": "1", "recordId": "hcp-dev1:3:17"}
    assert validate_record(a.schema(), out) is None
    assert [a.map(rec(g))["satisfaction"] for g in ("vs", "s", "bs", "d", "vd")] == [5, 4, 3, 2, 1]


def test_gbt39046_adapter_fields() -> None:
    a = make_adapter(UplinkSettings(adapter="gbt39046", area_code="540102"))
    out = a.map(rec("vs"))
    assert out["evaluateLevel"] == 1 and out["evaluateTime"] == "20250303T140509"
    assert out["evaluateId"] == "hcp-dev1:3:17" and out["serviceNo"] == CASE["case_no"]
    assert validate_record(a.schema(), out) is None
    assert [a.map(rec(g))["evaluateLevel"] for g in ("vs", "s", "bs", "d", "vd")] == [1, 2, 3, 4, 5]
    # The other family's record does not pass this schema (names differ).
    other = make_adapter(UplinkSettings(area_code="540102")).map(rec("vs"))
    assert validate_record(a.schema(), other) == ("unknown_field",
                                                  "field projectNo is not in the gbt39046 schema")


def test_overrides_from_config() -> None:
    s = load_settings({"hall": {"timezone": "Asia/Urumqi", "area_code": "650102"},
                       "uplink": {"fields": {"grade": "myd", "record_id": "evalId"}, "pf": 4,
                                  "grade_codes": "gbt39046", "time_format": "%Y/%m/%d %H:%M",
                                  "envelope": "base64", "unrated": "skip"}})
    a = make_adapter(s)
    out = a.map(rec("s"))
    assert out["myd"] == 2 and out["pf"] == 4 and out["areaCode"] == "650102"
    assert out["assessTime"] == "2025/03/03 12:05"      # Urumqi is UTC+6, Shanghai UTC+8
    assert out["evalId"] == "hcp-dev1:3:17"
    assert validate_record(a.schema(), out) is None
    assert s.uploadable_kinds() == ("rated",)


def test_unrated_and_unmappable() -> None:
    a = make_adapter(UplinkSettings(area_code="540102", default_grade="vs"))
    out = a.map(rec(None, kind="unrated"))
    assert out["defaultFlag"] == 1 and out["satisfaction"] == 5
    with pytest.raises(MappingError) as e:
        a.map(rec("vs", kind="extra"))
    assert e.value.code == "not_a_rating"
    with pytest.raises(MappingError) as e:
        a.map(rec("vs", case_no=None))
    assert e.value.code == "no_case"


@pytest.mark.parametrize("bad, key", [
    ({"adapter": "zj"}, "adapter"), ({"pf": 9}, "pf"), ({"daily_at": "25:00"}, "daily_at"),
    ({"walkup": "upload"}, "walkup"), ({"batch_size": "10"}, "batch_size"), ({"nonsense": 1}, "nonsense"),
    ({"timezone": "Mars/Base"}, "Mars/Base"), ({"envelope": "xml"}, "envelope"),
])
def test_bad_settings_are_named(bad: dict[str, object], key: str) -> None:
    with pytest.raises(UplinkConfigError) as e:
        load_settings({"uplink": bad})
    assert key in str(e.value)


def test_walkups_uploadable_when_province_accepts_no_case() -> None:
    s = load_settings({"uplink": {"walkup": "upload", "require_project_no": False, "area_code": "540102"}})
    a = make_adapter(s)
    out = a.map(rec("d", kind="walkup", invitation_id=None, case_no=None))
    assert "projectNo" not in out and out["satisfaction"] == 2
    assert validate_record(a.schema(), out) is None
    strict = make_adapter(UplinkSettings(area_code="540102")).schema()
    assert validate_record(strict, out) == ("missing_field", "required field projectNo is missing")


def test_envelope_roundtrip_and_checks() -> None:
    records = [{"recordId": "a:1:1", "n": 1}, {"recordId": "a:1:2", "t": "满意"}]
    body, digest = encode_batch("b1", records, "base64")
    parsed = json.loads(body)
    assert parsed["checksum"] == digest and "records" not in parsed
    assert json.loads(base64.b64decode(parsed["data"])) == records
    assert decode_batch(body, "base64") == ("b1", records)
    parsed["count"] = 3
    with pytest.raises(WireError) as e:
        decode_batch(json.dumps(parsed).encode(), "base64")
    assert e.value.code == "bad_count"
    plain = json.loads(encode_batch("b2", records, "json")[0])
    plain["records"][0]["n"] = 2
    with pytest.raises(WireError) as e:
        decode_batch(json.dumps(plain).encode(), "json")
    assert e.value.code == "bad_checksum"
    # The canonical form is protocol.cjson's for strings and integers (one definition).
    from gateway.uplink.wire import canonical
    from protocol import cjson
    tricky = [{"b": "引号\"\\\n\u0001", "a": -5, "c": True, "d": None}]
    assert canonical(tricky) == cjson.encode(tricky)


@pytest.mark.parametrize("adapter, envelope", [("default", "json"), ("gbt39046", "json"),
                                               ("default", "base64")])
async def test_end_to_end_each_adapter(adapter: str, envelope: str, gwdb: Database, seeder: Seeder,
                                       tmp_path: Path) -> None:
    settings = fast_settings("http://x", adapter=adapter, envelope=envelope)
    schema = make_adapter(settings).schema()
    async with PlatformStandIn(schema, tmp_path / ("p-%s-%s.sqlite" % (adapter, envelope))) as p:
        ids = await seeder.records("hcp-dev1", "2025-03-03", 20)
        ids += await seeder.records("hcp-dev1", "2025-03-03", 5, kind="unrated")
        report = await push_once(gwdb, fast_settings(p.url, adapter=adapter, envelope=envelope))
        assert report.ok and report.accepted == 25 and report.rejected == 0
        assert p.accepted_ids() == sorted(ids)
        held = p.accepted_records()
        assert all(validate_record(schema, r) is None for r in held)
        grade_field = "satisfaction" if adapter == "default" else "evaluateLevel"
        assert {r[grade_field] for r in held} <= {1, 2, 3, 4, 5}
