"""The five grade codes and the button order: the part of protocol.grades the device needs.

Kept apart so the device does not load the gateway's tables (Chinese names, the two integer
code directions, the named constants) into its RAM; protocol.grades re-exports GRADES,
DEFAULT_BUTTONS and button_map and names each code.
"""

# Best to worst: 非常满意 vs, 满意 s, 基本满意 bs, 不满意 d, 非常不满意 vd. These strings are the
# wire values of the "g" field; protocol.grades names them (VERY_SATISFIED = GRADES[0], ...).
GRADES = ("vs", "s", "bs", "d", "vd")

# Default physical button order, left to right as the citizen faces the device.
# The device config may reorder it (some halls mount the worst grade on the left).
DEFAULT_BUTTONS = GRADES


def button_map(order: "list[str] | tuple[str, ...]") -> tuple[str, ...]:
    """Validate a button order (a permutation of GRADES) and return it as a tuple."""
    result = tuple(order)
    if len(result) != len(GRADES):
        raise ValueError("button order needs exactly 5 grades")
    for g in GRADES:
        if g not in result:
            raise ValueError("button order misses grade %s" % g)
    return result
