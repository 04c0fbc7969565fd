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


