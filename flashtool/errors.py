"""The one error type the CLI shows: a single line, no traceback."""


class FlashError(Exception):
    """A failure the technician must see; str(e) is the whole message."""


class LinkError(FlashError):
    """The serial link failed: port missing, busy, silent device, or cut mid-exchange."""


class DeviceError(FlashError):
    """Code we ran on the device raised; the message is the device's exception line."""
