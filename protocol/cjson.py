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

# Escapes by byte value: the byte at position j of _ESC_FROM is written as a backslash and the
# letter at j of _ESC_TO, other control bytes as \u00XX (private consts: bytes folded into the
# code, no names and no table in the device's heap). Strings are scanned as UTF-8 bytes, never
# character by character: on MicroPython, iterating a str interns each distinct character as a
# qstr that is never freed, so every new Chinese character the device signs or verifies would
# cost it heap for good.
_ESC_FROM = const(b'"\\\n\r\t\x08\x0c')
_ESC_TO = const(b'"\\nrtbf')


def _string(s: str, buf: list[str]) -> None:
    buf.append('"')
    b = s.encode()
    start = 0
    for i in range(len(b)):
        c = b[i]
        if c == 0x22 or c == 0x5C or c < 0x20:
            # an ASCII byte, so the runs either side of it are whole characters
            if i > start:
                buf.append(b[start:i].decode())
            j = _ESC_FROM.find(bytes((c,)))
            buf.append("\\" + chr(_ESC_TO[j]) if j >= 0 else "\\u%04x" % c)
            start = i + 1
    buf.append(s if start == 0 else b[start:].decode())
    buf.append('"')


def _value(v: "Any", buf: list[str]) -> None:
    t = type(v)
    if v is None:
        buf.append("null")
    elif v is True:
        buf.append("true")
    elif v is False:
        buf.append("false")
    elif t is int:
        buf.append(str(v))
    elif t is str:
        _string(v, buf)
    elif t is list or t is tuple:
        buf.append("[")
        first = True
        for item in v:
            if not first:
                buf.append(",")
            first = False
            _value(item, buf)
        buf.append("]")
    elif t is dict:
        buf.append("{")
        first = True
        for k in sorted(v):
            if type(k) is not str:
                raise MalformedMessage("bad_field", "object key is not a string")
            if not first:
                buf.append(",")
            first = False
            _string(k, buf)
            buf.append(":")
            _value(v[k], buf)
        buf.append("}")
    else:
        raise MalformedMessage("bad_field", "value of type %s cannot be encoded" % t.__name__)


def encode(obj: "Any") -> bytes:
    """Canonical UTF-8 bytes of obj."""
    buf: list[str] = []
    _value(obj, buf)
    return "".join(buf).encode("utf-8")
