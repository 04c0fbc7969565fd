"""Protocol errors: every bad input maps to one specific type with a stable string code.

The codes are part of the specification (docs/protocol.md) and of the shared test vectors:
CPython and MicroPython must raise the same code for the same bytes.
MicroPython exception instances take no new attributes (and Exception.__init__ cannot be
called by name there), so code and detail live in args, set through super().
"""


class ProtocolError(Exception):
    """Base class. `code` is the stable machine-readable reason, `detail` the human one."""

    CODE = "protocol"

    def __init__(self, detail: str = "", code: str | None = None, *extra: object) -> None:
        super().__init__(code or self.CODE, detail, *extra)

    @property
    def code(self) -> str:
        return str(self.args[0])

    @property
    def detail(self) -> str:
        return str(self.args[1])

    def __str__(self) -> str:
        if self.args[1]:
            return "%s: %s" % (self.args[0], self.args[1])
        return str(self.args[0])


class MalformedMessage(ProtocolError):
    """Not a well-formed v1 message: size, JSON, structure, field types or ranges. Its codes
    are listed in protocol/cpython.py (MALFORMED_CODES), which the device does not load."""

    CODE = "malformed"

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail, code)


class UnsupportedVersion(ProtocolError):
    CODE = "bad_version"


class BadSignature(ProtocolError):
    CODE = "bad_mac"


class TopicMismatch(ProtocolError):
    CODE = "topic_mismatch"
