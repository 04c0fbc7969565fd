"""Canonical JSON: the one byte form that is signed and sent.

Neither runtime's json.dumps can be trusted for byte-identical output (MicroPython's dict
order is not insertion order, and escaping rules differ), so this small encoder is the
definition: keys sorted, no white space, strings as raw UTF-8 with only '"', '\\' and
control characters escaped, integers only (no floats on the wire), true/false/null.
"""

from protocol.errors import MalformedMessage

try:
    from micropython import const
except ImportError:  # CPython
    def const(x: "Any") -> "Any":  # type: ignore[no-redef]
        return x

# Typing-only import: mypy treats _TYPING as true (pyproject always_true); on MicroPython the
# private const folds the block away at compile time (no bytecode, no interned names).
_TYPING = const(0)
if _TYPING:
    from typing import Any

_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _needs_escape(s: str) -> bool:
    for ch in s:
        if ch == '"' or ch == "\\" or ord(ch) < 0x20:
            return True
    return False


def _string(s: str, out: list[str]) -> None:
    out.append('"')
    if not _needs_escape(s):
        out.append(s)
    else:
        for ch in s:
            e = _ESC.get(ch)
            if e is not None:
                out.append(e)
            elif ord(ch) < 0x20:
                out.append("\\u%04x" % ord(ch))
            else:
                out.append(ch)
    out.append('"')


def _value(v: "Any", out: list[str]) -> None:
    t = type(v)
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif t is int:
        out.append(str(v))
    elif t is str:
        _string(v, out)
    elif t is list or t is tuple:
        out.append("[")
        first = True
        for item in v:
            if not first:
                out.append(",")
            first = False
            _value(item, out)
        out.append("]")
    elif t is dict:
        out.append("{")
        first = True
        for k in sorted(v):
            if type(k) is not str:
                raise MalformedMessage("bad_field", "object key is not a string")
            if not first:
                out.append(",")
            first = False
            _string(k, out)
            out.append(":")
            _value(v[k], out)
        out.append("}")
    else:
        raise MalformedMessage("bad_field", "value of type %s cannot be encoded" % t.__name__)


def encode(obj: "Any") -> bytes:
    """Canonical UTF-8 bytes of obj."""
    out: list[str] = []
    _value(obj, out)
    return "".join(out).encode("utf-8")
