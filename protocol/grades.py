"""The one internal grade enum and every mapping to outside codes.

Internally (and on the wire) a grade is a short string code, never an integer: the two
integer conventions in the field run in opposite directions (see docs/protocol.md), so an
integer only ever appears at a boundary, through one of the explicit tables below.
"""

# GRADES, DEFAULT_BUTTONS and button_map live in protocol.grade_set (the device imports only
# that); they are re-exported here for the gateway, simulator and tests, with a name per code.
from protocol.grade_set import DEFAULT_BUTTONS, GRADES, button_map

# Best to worst; these strings are the wire values of the "g" field.
VERY_SATISFIED, SATISFIED, BASIC, DISSATISFIED, VERY_DISSATISFIED = GRADES   # 非常满意 .. 非常不满意

__all__ = [
    "BAD", "BASIC", "DEFAULT_BUTTONS", "DISSATISFIED", "GBT39046_CODE", "GRADES", "NAMES_ZH",
    "PROVINCIAL_CODE", "SATISFIED", "VERY_DISSATISFIED", "VERY_SATISFIED", "button_map",
    "from_code", "is_bad", "is_grade",
]

NAMES_ZH = {
    VERY_SATISFIED: "非常满意",
    SATISFIED: "满意",
    BASIC: "基本满意",
    DISSATISFIED: "不满意",
    VERY_DISSATISFIED: "非常不满意",
}

# 差评: the two worst grades.
BAD = (DISSATISFIED, VERY_DISSATISFIED)

# Provincial upload interfaces (field practice): 5 = 非常满意 ... 1 = 非常不满意.
PROVINCIAL_CODE = {VERY_SATISFIED: 5, SATISFIED: 4, BASIC: 3, DISSATISFIED: 2, VERY_DISSATISFIED: 1}

# GB/T 39046-2020 table A.8: 1 = 非常满意 ... 5 = 非常不满意.
GBT39046_CODE = {VERY_SATISFIED: 1, SATISFIED: 2, BASIC: 3, DISSATISFIED: 4, VERY_DISSATISFIED: 5}


def is_grade(code: str) -> bool:
    return code in GRADES


def is_bad(code: str) -> bool:
    return code in BAD


def from_code(table: dict[str, int], value: int) -> str | None:
    """Inverse lookup in one of the integer tables; None when the value is not in it."""
    for g in GRADES:
        if table[g] == value:
            return g
    return None
