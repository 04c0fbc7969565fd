"""The gateway's side of the protocol: CPython only, never shipped to or loaded on the device.

Everything here would cost the device heap for code it never runs (a loaded module's bytecode
stays in RAM whether a branch runs or not), so protocol.messages imports this module only on
CPython, and flash.py leaves it out of the device's files.
"""

import json
from collections.abc import Callable
from typing import Any

# The codes a MalformedMessage may carry (docs/protocol.md; tests check the set is closed).
MALFORMED_CODES = (
    "too_large",      # payload over MAX_PAYLOAD bytes
    "not_utf8",       # payload bytes are not UTF-8
    "not_json",       # not parseable JSON, or nested deeper than MAX_DEPTH
    "not_object",     # JSON, but not an object
    "unknown_type",   # "t" missing, not a string, or not a v1 message type
    "missing_field",  # a required field is absent
    "unknown_field",  # a field the message type does not define
    "bad_field",      # wrong JSON type, out of range, too long, or bad characters
)


def _no_constants(name: str) -> None:
    raise ValueError("JSON has no " + name)


# One decoder that refuses NaN/Infinity, built once (json.loads with a keyword argument builds a
# new JSONDecoder per call, a measurable share of the gateway's ingest).
loads: Callable[[str], Any] = json.JSONDecoder(parse_constant=_no_constants).decode

_FIELDS: dict[str, list[list[str]]] = {}


def fields(envelope: str, spec: str) -> list[list[str]]:
    """A type's field list (protocol.messages' compact text, envelope first) split at the colons,
    once per type: the gateway validates thousands of messages a second."""
    f = _FIELDS.get(spec)
    if f is None:
        f = _FIELDS[spec] = [x.split(":") for x in (envelope + " " + spec).split()]
    return f


# protocol/strict.py's depth limit (a private const there, free on the device): a payload with
# more opening brackets than this might nest deeper, so the gateway runs the strict (iterative)
# scan on it before CPython's recursive parser, which would raise RecursionError, not ValueError.
MAX_DEPTH = 16


def may_nest_too_deep(raw: bytes) -> bool:
    return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


# Record ids per ack message: the bound of the ack schema's "a" field.
MAX_ACKS = 32


def topic_for(m: dict[str, Any]) -> str:
    """The topic a valid message travels on."""
    from protocol import messages, topics
    if m["t"] in messages.UP_TYPES:
        return topics.up(m["d"], m["t"])
    return topics.down(m["d"], m["t"])
