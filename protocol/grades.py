"""The one internal grade enum and every mapping to outside codes.

Internally (and on the wire) a grade is a short string code, never an integer: the two
integer conventions in the field run in opposite directions (see docs/protocol.md), so an
integer only ever appears at a boundary, through one of the explicit tables below.
"""

# Best to worst. These strings are the wire values of the "g" field.
VERY_SATISFIED = "vs"      # 非常满意
SATISFIED = "s"            # 满意
BASIC = "bs"               # 基本满意
DISSATISFIED = "d"         # 不满意
VERY_DISSATISFIED = "vd"   # 非常不满意

GRADES = (VERY_SATISFIED, SATISFIED, BASIC, DISSATISFIED, VERY_DISSATISFIED)

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

# Default physical button order, left to right as the citizen faces the device.
# The device config may reorder it (some halls mount the worst grade on the left).
DEFAULT_BUTTONS = (VERY_SATISFIED, SATISFIED, BASIC, DISSATISFIED, VERY_DISSATISFIED)


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


def button_map(order: "list[str] | tuple[str, ...]") -> tuple[str, ...]:
    """Validate a button order (a permutation of GRADES) and return it as a tuple."""
    result = tuple(order)
    if len(result) != len(GRADES):
        raise ValueError("button order needs exactly 5 grades")
    for g in GRADES:
        if g not in result:
            raise ValueError("button order misses grade %s" % g)
    return result
