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
    """Not a well-formed v1 message: size, JSON, structure, field types or ranges."""

    CODE = "malformed"

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail, code)


class UnsupportedVersion(ProtocolError):
    CODE = "bad_version"


class BadSignature(ProtocolError):
    CODE = "bad_mac"


class TopicMismatch(ProtocolError):
    CODE = "topic_mismatch"


class Replay(ProtocolError):
    CODE = "replay"


# Codes a MalformedMessage may carry (documented; tests check the set is closed).
MALFORMED_CODES = (
    "too_large",      # payload over MAX_PAYLOAD bytes
    "not_utf8",       # payload bytes are not UTF-8
    "not_json",       # not parseable JSON
    "not_object",     # JSON, but not an object
    "unknown_type",   # "t" missing, not a string, or not a v1 message type
    "missing_field",  # a required field is absent
    "unknown_field",  # a field the message type does not define
    "bad_field",      # wrong JSON type, out of range, too long, or bad characters
)
