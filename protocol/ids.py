"""Record ids: "<device>:<boot>:<seq>", unique for the device's whole life.

The boot counter is persisted and incremented before a boot creates any record, and seq
restarts at 1 in every boot, so (device, boot, seq) never repeats. It is the idempotency
key of every layer: journal, gateway store, ack, and platform upload.
"""


def record_id(device: str, rb: int, rs: int) -> str:
    return "%s:%d:%d" % (device, rb, rs)


def parse_record_id(text: str) -> tuple[str, int, int]:
    """Inverse of record_id; raises ValueError on anything else."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise ValueError("bad record id")
    rb = int(parts[1])
    rs = int(parts[2])
    if rb < 1 or rs < 1 or record_id(parts[0], rb, rs) != text:
        raise ValueError("bad record id")  # the round trip also refuses " 3", "+3", "03", "3\n"
    return parts[0], rb, rs
