"""Record schemas: what a platform demands of each uploaded record.

A schema is plain JSON-able data (so the platform stand-in can load it from the adapter
or a file): field name -> spec with type, required, allowed integer codes, a pattern or a
time format, a maximum length. validate_record returns the first violation as
(code, reason) or None; the stand-in uses it to reject records one by one.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypedDict


class FieldSpec(TypedDict, total=False):
    type: str            # "str" | "int"
    required: bool
    codes: list[int]     # allowed integer codes
    pattern: str         # regex the whole string must match
    time_format: str     # strftime format the string must parse with
    max_len: int
    correctable: bool    # a correction may replace it after the upload (the 差评's reasons)


Schema = dict[str, Any]   # {"adapter": name, "id_field": name, "envelope": ..., "fields": {name: FieldSpec}}


def validate_record(schema: Schema, rec: Any) -> tuple[str, str] | None:
    if not isinstance(rec, dict):
        return "not_object", "record is not a JSON object"
    fields: dict[str, FieldSpec] = schema["fields"]
    for name in rec:
        if name not in fields:
            return "unknown_field", "field %s is not in the %s schema" % (name, schema["adapter"])
    for name, spec in fields.items():
        if name not in rec:
            if spec.get("required", False):
                return "missing_field", "required field %s is missing" % name
            continue
        v = rec[name]
        if spec["type"] == "int":
            if type(v) is not int:
                return "bad_type", "%s must be an integer" % name
            codes = spec.get("codes")
            if codes is not None and v not in codes:
                return "bad_code", "%s = %d is not one of %s" % (name, v, codes)
            continue
        if type(v) is not str:
            return "bad_type", "%s must be a string" % name
        if spec.get("required", False) and v == "":
            return "empty_field", "required field %s is empty" % name
        max_len = spec.get("max_len")
        if max_len is not None and len(v) > max_len:
            return "too_long", "%s is longer than %d characters" % (name, max_len)
        pattern = spec.get("pattern")
        if pattern is not None and v != "" and not re.fullmatch(pattern, v):
            return "bad_format", "%s = %r does not match %s" % (name, v, pattern)
        fmt = spec.get("time_format")
        if fmt is not None:
            try:
                datetime.strptime(v, fmt)
            except ValueError:
                return "bad_time", "%s = %r is not a time in format %s" % (name, v, fmt)
    return None


def time_pattern(fmt: str) -> str:
    """A strict regex for a strftime format made of %Y %m %d %H %M %S and literals."""
    out = []
    i = 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            out.append({"Y": r"\d{4}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}",
                        "S": r"\d{2}"}.get(fmt[i + 1], ".+"))
            i += 2
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    return "".join(out)
