"""The five grade codes and the button order: the part of protocol.grades the device needs.

Kept apart so the device does not load the gateway's tables (Chinese names, the two integer
code directions) into its RAM; protocol.grades re-exports everything here.
"""

# Best to worst. These strings are the wire values of the "g" field.
VERY_SATISFIED = "vs"      # 非常满意
SATISFIED = "s"            # 满意
BASIC = "bs"               # 基本满意
DISSATISFIED = "d"         # 不满意
VERY_DISSATISFIED = "vd"   # 非常不满意

GRADES = (VERY_SATISFIED, SATISFIED, BASIC, DISSATISFIED, VERY_DISSATISFIED)

# Default physical button order, left to right as the citizen faces the device.
# The device config may reorder it (some halls mount the worst grade on the left).
DEFAULT_BUTTONS = GRADES


def is_grade(code: str) -> bool:
    return code in GRADES


def button_map(order: "list[str] | tuple[str, ...]") -> tuple[str, ...]:
    """Validate a button order (a permutation of GRADES) and return it as a tuple."""
    result = tuple(order)
    if len(result) != len(GRADES):
        raise ValueError("button order needs exactly 5 grades")
    for g in GRADES:
        if g not in result:
            raise ValueError("button order misses grade %s" % g)
    return result
