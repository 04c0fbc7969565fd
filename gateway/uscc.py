"""Unified social credit codes (统一社会信用代码, GB 32100-2015): the 18-character code that
names a department to the provincial platform (`deptCode`).

Layout: 1 registration authority, 1 organisation type, 6 administrative division,
9 organisation code (GB 11714), 1 check character. The alphabet is the digits and the
capital letters without I, O, Z, S, V (31 symbols, values 0..30); the check character is
31 - (sum of value x weight over the first 17) mod 31, weights 3^i mod 31.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def check_character(first17: str) -> str:
    """The check character for the first 17 characters (all from ALPHABET)."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def problem(code: str) -> str | None:
    """Why code is not a valid unified social credit code, or None when it is."""
    if len(code) != 18:
        return "must be 18 characters, got %d" % len(code)
    bad = sorted({c for c in code if c not in _VALUE})
    if bad:
        return "has characters outside GB 32100's set (digits and A-Y without I O S V Z): %s" % "".join(bad)
    want = check_character(code[:17])
    if code[17] != want:
        return "check character is %s, expected %s (GB 32100-2015)" % (code[17], want)
    return None


def is_valid(code: str) -> bool:
    return problem(code) is None


def complete(first17: str) -> str:
    """first17 with its check character appended (for generators and tests)."""
    return first17 + check_character(first17)
