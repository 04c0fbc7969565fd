"""Strict input checks that make MicroPython reject exactly what CPython rejects.

MicroPython's bytes.decode accepts overlong forms, UTF-16 surrogates and code points above
U+10FFFF, and its json.loads accepts leading zeros, trailing commas, raw control characters
and unknown escapes. The same bytes must give the same error code on the device and on the
gateway, so the device runs these checks before decoding; the gateway (CPython) runs only
json_text() and only when a \\u escape is present (CPython's parser is otherwise strict).
Both are iterative with no recursion, so deep nesting cannot exhaust a small stack.
"""


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


_WS = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"


def _ws(s: str, i: int, n: int) -> int:
    while i < n and s[i] in _WS:
        i += 1
    return i


def _string(s: str, i: int, n: int) -> int:
    # s[i] == '"'
    i += 1
    while i < n:
        c = s[i]
        if c == '"':
            return i + 1
        if c == "\\":
            if i + 1 >= n:
                return -1
            e = s[i + 1]
            if e in '"\\/bfnrt':
                i += 2
            elif e == "u":
                h = s[i + 2:i + 6]
                if len(h) != 4:
                    return -1
                for ch in h:
                    if ch not in _HEX:
                        return -1
                if h[0] in "dD" and h[1] in "89abcdefABCDEF":
                    return -1  # UTF-16 surrogate escape: v1 sends such characters as raw UTF-8
                i += 6
            else:
                return -1
        elif ord(c) < 0x20:
            return -1
        else:
            i += 1
    return -1


def _number(s: str, i: int, n: int) -> int:
    if s[i] == "-":
        i += 1
    if i >= n:
        return -1
    if s[i] == "0":
        i += 1
    elif s[i] in "123456789":
        while i < n and s[i] in _DIGITS:
            i += 1
    else:
        return -1
    if i < n and s[i] == ".":
        i += 1
        j = i
        while i < n and s[i] in _DIGITS:
            i += 1
        if i == j:
            return -1
    if i < n and s[i] in "eE":
        i += 1
        if i < n and s[i] in "+-":
            i += 1
        j = i
        while i < n and s[i] in _DIGITS:
            i += 1
        if i == j:
            return -1
    return i


_VALUE = 0
_KEY = 1
_AFTER = 2


def json_text(s: str) -> bool:
    """True if s is exactly one JSON text by RFC 8259 (no NaN/Infinity, no surrogate escapes)."""
    n = len(s)
    i = 0
    stack: list[str] = []
    state = _VALUE
    while True:
        i = _ws(s, i, n)
        if state == _AFTER:
            if not stack:
                return i == n
            if i >= n:
                return False
            c = s[i]
            if c == ",":
                i += 1
                state = _KEY if stack[-1] == "}" else _VALUE
            elif c == stack[-1]:
                stack.pop()
                i += 1
            else:
                return False
            continue
        if i >= n:
            return False
        c = s[i]
        if state == _KEY:
            if c != '"':
                return False
            i = _string(s, i, n)
            if i < 0:
                return False
            i = _ws(s, i, n)
            if i >= n or s[i] != ":":
                return False
            i += 1
            state = _VALUE
            continue
        # a value
        if c == "{" or c == "[":
            close = "}" if c == "{" else "]"
            i = _ws(s, i + 1, n)
            if i < n and s[i] == close:
                i += 1
                state = _AFTER
            else:
                stack.append(close)
                state = _KEY if close == "}" else _VALUE
            continue
        if c == '"':
            i = _string(s, i, n)
        elif c == "-" or c in _DIGITS:
            i = _number(s, i, n)
        elif s.startswith("true", i):
            i += 4
        elif s.startswith("false", i):
            i += 5
        elif s.startswith("null", i):
            i += 4
        else:
            return False
        if i < 0:
            return False
        state = _AFTER
