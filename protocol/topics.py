"""The MQTT topic tree.

    hcp/1/up/<device>/<type>     device -> gateway   (devices may publish only here, own id)
    hcp/1/down/<device>/<type>   gateway -> device   (devices may read only here, own id)

The broker's pattern ACL enforces the ownership (username == device id); the gateway checks
again that the topic's device id equals the signed payload's "d".
"""

ROOT = "hcp/1"
UP = ROOT + "/up/"
DOWN = ROOT + "/down/"

# Subscriptions.
GATEWAY_SUB = UP + "+/+"


def up(device: str, kind: str) -> str:
    return UP + device + "/" + kind


def down(device: str, kind: str) -> str:
    return DOWN + device + "/" + kind


def device_sub(device: str) -> str:
    return DOWN + device + "/+"


def parse(topic: str) -> tuple[str, str, str] | None:
    """Split a topic into (direction, device, kind); None when it is not ours."""
    if topic.startswith(UP):
        direction = "up"
        rest = topic[len(UP):]
    elif topic.startswith(DOWN):
        direction = "down"
        rest = topic[len(DOWN):]
    else:
        return None
    parts = rest.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return direction, parts[0], parts[1]
