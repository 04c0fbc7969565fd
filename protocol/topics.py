"""The MQTT topic tree.

    hcp/1/up/<device>/<type>     device -> gateway   (devices may publish only here, own id)
    hcp/1/down/<device>/<type>   gateway -> device   (devices may read only here, own id)

The broker's pattern ACL enforces the ownership (username == device id); the gateway checks
again that the topic's device id equals the signed payload's "d".
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

# Private consts: folded into the functions below, so the device holds no name for them.
_UP = const("hcp/1/up/")
_DOWN = const("hcp/1/down/")


def up(device: str, kind: str) -> str:
    return "".join((_UP, device, "/", kind))


def down(device: str, kind: str) -> str:
    return "".join((_DOWN, device, "/", kind))


def device_sub(device: str) -> str:
    """A device's subscription: every command to it."""
    return down(device, "+")


def parse(topic: str) -> tuple[str, str, str] | None:
    """Split a topic into (direction, device, kind); None when it is not ours."""
    if topic.startswith(_UP):
        direction = "up"
        rest = topic[len(_UP):]
    elif topic.startswith(_DOWN):
        direction = "down"
        rest = topic[len(_DOWN):]
    else:
        return None
    parts = rest.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return direction, parts[0], parts[1]
