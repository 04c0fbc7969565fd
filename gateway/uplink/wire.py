"""The batch upload body and the platform's per-record answer (shared with the stand-in).

Request:  {"batchId", "count", "checksum", "records": [...]}  (envelope "json")
          {"batchId", "count", "checksum", "data": base64(records JSON)}  (envelope "base64")
          checksum = sha256 hex of the canonical JSON bytes of the records list (keys sorted,
          no white space, raw UTF-8: the same bytes as protocol.cjson for strings and
          integers, but C-speed, so a 500-record batch costs milliseconds on the event
          loop), computed from the records themselves, independent of the envelope.
Response: {"batchId", "results": [{"id", "status": accepted|duplicate|rejected, "code", "reason"}]}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

ACKED = ("accepted", "duplicate")   # both mean: the platform holds this record id


class WireError(ValueError):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def canonical(records: list[Any]) -> bytes:
    return json.dumps(records, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def checksum(records: list[dict[str, Any]]) -> str:
    return hashlib.sha256(canonical(records)).hexdigest()


def encode_batch(batch_id: str, records: list[dict[str, Any]], envelope: str) -> tuple[bytes, str]:
    """The request body and the batch checksum."""
    canon = canonical(records)
    digest = hashlib.sha256(canon).hexdigest()
    body: dict[str, Any] = {"batchId": batch_id, "count": len(records), "checksum": digest}
    if envelope == "base64":
        body["data"] = base64.b64encode(canon).decode("ascii")
    else:
        body["records"] = records
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), digest


def decode_batch(raw: bytes, envelope: str) -> tuple[str, list[Any]]:
    """Batch id and records, after checking structure, count and checksum (WireError otherwise)."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError("bad_json", "body is not JSON: %s" % e) from e
    if not isinstance(body, dict):
        raise WireError("bad_batch", "body is not a JSON object")
    batch_id, count, digest = body.get("batchId"), body.get("count"), body.get("checksum")
    if not isinstance(batch_id, str) or not batch_id or type(count) is not int or not isinstance(digest, str):
        raise WireError("bad_batch", "batchId (string), count (int) and checksum (string) are required")
    if envelope == "base64":
        data = body.get("data")
        if not isinstance(data, str):
            raise WireError("bad_envelope", "base64 envelope needs a string field data")
        try:
            records = json.loads(base64.b64decode(data, validate=True))
        except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise WireError("bad_envelope", "data is not base64 JSON: %s" % e) from e
    else:
        records = body.get("records")
    if not isinstance(records, list):
        raise WireError("bad_batch", "records must be a list")
    if len(records) != count:
        raise WireError("bad_count", "count %d but %d records" % (count, len(records)))
    try:
        actual = hashlib.sha256(canonical(records)).hexdigest()
    except ValueError as e:  # NaN / infinity have no canonical form
        raise WireError("bad_checksum", "records cannot be canonicalised: %s" % e) from e
    if actual != digest:
        raise WireError("bad_checksum", "checksum does not match the records")
    return batch_id, records


@dataclass(frozen=True)
class RecordResult:
    record_id: str
    status: str                # accepted | duplicate | rejected
    code: str = ""
    reason: str = ""

    @property
    def acked(self) -> bool:
        return self.status in ACKED


def parse_results(body: Any, batch_id: str) -> list[RecordResult]:
    if not isinstance(body, dict) or body.get("batchId") != batch_id:
        raise WireError("bad_answer", "answer is not for batch %s" % batch_id)
    results = body.get("results")
    if not isinstance(results, list):
        raise WireError("bad_answer", "answer has no results list")
    out = []
    for item in results:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) \
                or item.get("status") not in ("accepted", "duplicate", "rejected"):
            raise WireError("bad_answer", "malformed result entry %r" % (item,))
        out.append(RecordResult(item["id"], item["status"], str(item.get("code", "")),
                                str(item.get("reason", ""))))
    return out
