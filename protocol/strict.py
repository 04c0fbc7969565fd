"""Strict input checks that make MicroPython reject exactly what CPython rejects.

MicroPython's bytes.decode accepts overlong forms, UTF-16 surrogates and code points above
U+10FFFF, and its json.loads accepts leading zeros, trailing commas, raw control characters
and unknown escapes. The same bytes must give the same error code on the device and on the
gateway, so the device runs these checks before decoding; the gateway (CPython) runs only
json_text() and only when a \\u escape is present or the payload could nest deeper than the
limit (CPython's parser is otherwise strict, but recursive: RecursionError at ~1000 levels).
Both are iterative with no recursion, so deep nesting cannot exhaust a small stack.
"""

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


def utf8(b: bytes) -> bool:
    """True if b is well-formed UTF-8 (RFC 3629, Unicode table 3-7)."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need = 1
            lo, hi = 0x80, 0xBF
        elif 0xE0 <= c <= 0xEF:
            need = 2
            lo, hi = 0x80, 0xBF
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            need = 3
            lo, hi = 0x80, 0xBF
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return False
        if i + need >= n:
            return False
        x = b[i + 1]
        if x < lo or x > hi:
            return False
        for j in range(i + 2, i + 1 + need):
            if b[j] < 0x80 or b[j] > 0xBF:
                return False
        i += 1 + need
    return True


# The JSON scan runs on the payload's bytes, never on a str: on MicroPython, indexing or iterating
# a str interns every distinct character it meets as a qstr, which is never freed, so each new
# Chinese character in an invitation would cost the device heap for good. JSON's structure is
# ASCII, and the bytes of a multi-byte UTF-8 character (checked by utf8() first) are all >= 0x80.
_WS = const(b" \t\n\r")
_HEX = const(b"0123456789abcdefABCDEF")
# Deepest nesting of arrays and objects a v1 payload may have (v1 needs 3: an ack's pairs).
# RFC 8259 section 9 lets a parser limit depth; protocol/cpython.py's MAX_DEPTH is this number.
_MAX_DEPTH = const(16)


def _ws(b: bytes, i: int, n: int) -> int:
    while i < n and b[i] in _WS:
        i += 1
    return i


def _string(b: bytes, i: int, n: int) -> int:
    # b[i] is the opening quote
    i += 1
    while i < n:
        c = b[i]
        if c == 0x22:  # "
            return i + 1
        if c == 0x5C:  # backslash
            if i + 1 >= n:
                return -1
            e = b[i + 1]
            if e in b'"\\/bfnrt':
                i += 2
            elif e == 0x75:  # u
                if i + 6 > n:
                    return -1
                for j in range(i + 2, i + 6):
                    if b[j] not in _HEX:
                        return -1
                if b[i + 2] in b"dD" and b[i + 3] in b"89abcdefABCDEF":
                    return -1  # UTF-16 surrogate escape: v1 sends such characters as raw UTF-8
                i += 6
            else:
                return -1
        elif c < 0x20:
            return -1
        else:
            i += 1
    return -1


def _number(b: bytes, i: int, n: int) -> int:
    if b[i] == 0x2D:  # -
        i += 1
    if i >= n:
        return -1
    if b[i] == 0x30:  # a leading 0 stands alone
        i += 1
    elif 0x31 <= b[i] <= 0x39:
        while i < n and 0x30 <= b[i] <= 0x39:
            i += 1
    else:
        return -1
    if i < n and b[i] == 0x2E:  # .
        i += 1
        j = i
        while i < n and 0x30 <= b[i] <= 0x39:
            i += 1
        if i == j:
            return -1
    if i < n and b[i] in b"eE":
        i += 1
        if i < n and b[i] in b"+-":
            i += 1
        j = i
        while i < n and 0x30 <= b[i] <= 0x39:
            i += 1
        if i == j:
            return -1
    return i


_VALUE = const(0)
_KEY = const(1)
_AFTER = const(2)


def json_text(b: bytes) -> bool:
    """True if b (UTF-8) is exactly one JSON text by RFC 8259 (no NaN/Infinity, no surrogate
    escapes), nested at most _MAX_DEPTH deep."""
    n = len(b)
    i = 0
    stack: list[int] = []  # the closing bracket of each open container
    state = _VALUE
    while True:
        i = _ws(b, i, n)
        if state == _AFTER:
            if not stack:
                return i == n
            if i >= n:
                return False
            c = b[i]
            if c == 0x2C:  # ,
                i += 1
                state = _KEY if stack[-1] == 0x7D else _VALUE
            elif c == stack[-1]:
                stack.pop()
                i += 1
            else:
                return False
            continue
        if i >= n:
            return False
        c = b[i]
        if state == _KEY:
            if c != 0x22:
                return False
            i = _string(b, i, n)
            if i < 0:
                return False
            i = _ws(b, i, n)
            if i >= n or b[i] != 0x3A:  # :
                return False
            i += 1
            state = _VALUE
            continue
        # a value
        if c == 0x7B or c == 0x5B:  # { [
            if len(stack) >= _MAX_DEPTH:
                return False  # this container would be one level too deep
            close = c + 2  # } ]
            i = _ws(b, i + 1, n)
            if i < n and b[i] == close:
                i += 1
                state = _AFTER
            else:
                stack.append(close)
                state = _KEY if close == 0x7D else _VALUE
            continue
        if c == 0x22:
            i = _string(b, i, n)
        elif c == 0x2D or 0x30 <= c <= 0x39:
            i = _number(b, i, n)
        elif b.startswith(b"true", i):
            i += 4
        elif b.startswith(b"false", i):
            i += 5
        elif b.startswith(b"null", i):
            i += 4
        else:
            return False
        if i < 0:
            return False
        state = _AFTER
