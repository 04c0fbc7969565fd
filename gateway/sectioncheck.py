"""Whole-section validation for the typed settings of self-contained modules.

Each module's settings dataclass has ``from_mapping(dict) -> Settings``; they use a
:class:`Section` to read one TOML table, collect *every* problem (not just the first), refuse
unknown keys with a "did you mean" suggestion, and raise one :class:`SettingsError` whose
message is a single line. The lead can plug these into the config schema as they are.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """One or more bad values in a settings section; ``str()`` is one line naming them all."""

    def __init__(self, section: str, problems: Sequence[str]) -> None:
        self.section = section
        self.problems = tuple(problems)
        super().__init__(f"[{section}]: " + "; ".join(self.problems))


class Secret:
    """A secret read from a file: never shown by repr/str, so it cannot leak into a log line."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: Path) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_secret_file(path: Path) -> Secret:
    """Read a secret (first line, stripped); refuse a file that group or others can read.

    Raises ValueError with a one-line reason (the caller adds the key name).
    """
    try:
        st = path.stat()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if st.st_mode & 0o077:
        raise ValueError(
            f"{path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    value = text.strip("\r\n").splitlines()[0].strip() if text.strip() else ""
    if not value:
        raise ValueError(f"{path} is empty")
    return Secret(value, path)


class Section:
    """Reads typed values from one table; problems accumulate in a list shared with sub-tables.

    Every getter returns a usable default when the value is bad, so reading continues and
    :meth:`finish` can report everything at once.
    """

    def __init__(self, name: str, data: object, *, base_dir: Path | None = None,
                 problems: list[str] | None = None, prefix: str = "") -> None:
        self.name = name          # the section, as in the error's "[name]:"
        self.prefix = prefix      # how keys of a sub-table are named in messages, e.g. "webhook[0]."
        self.base_dir = base_dir
        self.problems: list[str] = [] if problems is None else problems
        self._seen: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            self.problems.append(f"{prefix.rstrip('.') or name} must be a table, not {_kind(data)}")
            data = {}
        self.data: Mapping[str, Any] = data

    # --- bookkeeping --------------------------------------------------------------------
    def _where(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self._where(key)} {message}")

    def has(self, key: str) -> bool:
        self._seen.add(key)
        return key in self.data

    def raw(self, key: str) -> Any:
        self._seen.add(key)
        return self.data.get(key)

    def check_unknown(self) -> None:
        known = sorted(self._seen)
        for key in self.data:
            if key in self._seen:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else (
                f" (known: {', '.join(known)})" if known else "")
            self.problems.append(f"unknown key '{self._where(str(key))}'{hint}")

    def finish(self) -> None:
        """Check unknown keys here, then raise SettingsError if anything was wrong anywhere.

        Sub-tables must have had their own :meth:`check_unknown` called first.
        """
        self.check_unknown()
        if self.problems:
            raise SettingsError(self.name, self.problems)

    def sub(self, key: str) -> Section:
        """The sub-table at ``key`` (missing = empty); its problems join this section's."""
        self._seen.add(key)
        return self.item(self._where(key), self.data.get(key))

    def item(self, label: str, data: object) -> Section:
        """A table found inside this section (e.g. one entry of a list), named ``label`` in messages."""
        return Section(self.name, data, base_dir=self.base_dir, problems=self.problems,
                       prefix=f"{label}.")

    # --- typed getters ------------------------------------------------------------------
    def get_str(self, key: str, default: str, *, choices: Iterable[str] | None = None,
            nonempty: bool = False) -> str:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, str):
            self.problem(key, f"must be a string, not {_kind(v)}")
            return default
        if nonempty and not v.strip():
            self.problem(key, "must not be empty")
            return default
        if choices is not None:
            opts = list(choices)
            if v not in opts:
                self.problem(key, f"must be one of {', '.join(opts)}, not '{v}'")
                return default
        return v

    def get_int(self, key: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        v = self.raw(key)
        if v is None:
            return default
        if type(v) is not int:
            self.problem(key, f"must be an integer, not {_kind(v)}")
            return default
        return self._range(key, v, lo, hi, default)

    def get_float(self, key: str, default: float, lo: float | None = None,
              hi: float | None = None) -> float:
        v = self.raw(key)
        if v is None:
            return default
        if type(v) not in (int, float):
            self.problem(key, f"must be a number, not {_kind(v)}")
            return default
        return self._range(key, float(v), lo, hi, default)

    def get_bool(self, key: str, default: bool) -> bool:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.problem(key, f"must be true or false, not {_kind(v)}")
            return default
        return v

    def get_str_list(self, key: str, default: Sequence[str] = (), *,
                     nonempty: bool = False) -> tuple[str, ...]:
        v = self.raw(key)
        if v is None:
            if nonempty:
                self.problem(key, "is required (a list of strings)")
            return tuple(default)
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.problem(key, "must be a list of strings")
            return tuple(default)
        if nonempty and not v:
            self.problem(key, "must not be empty")
        return tuple(v)

    def get_path(self, key: str, default: Path | None = None, *, required: bool = False) -> Path | None:
        v = self.raw(key)
        if v is None:
            if required:
                self.problem(key, "is required (a file path)")
            return default
        if not isinstance(v, str) or not v:
            self.problem(key, f"must be a file path string, not {_kind(v)}")
            return default
        p = Path(os.path.expanduser(v))
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        return p

    def get_date(self, key: str) -> dt.date | None:
        return self.to_date(key, self.raw(key))

    def to_date(self, key: str, v: object) -> dt.date | None:
        """A TOML local date (2026-10-01) or a 'YYYY-MM-DD' string; None (with a problem) if bad."""
        if isinstance(v, dt.datetime):
            self.problem(key, f"must be a date without a time, not {v.isoformat()}")
            return None
        if isinstance(v, dt.date):
            return v
        if isinstance(v, str):
            try:
                return dt.date.fromisoformat(v)
            except ValueError:
                pass
        self.problem(key, f"must be a date like 2026-10-01, not {v!r}")
        return None

    def _range(self, key: str, v: T, lo: Any, hi: Any, default: T) -> T:
        if (lo is not None and v < lo) or (hi is not None and v > hi):  # type: ignore[operator]
            lo_s = "" if lo is None else f"{lo}"
            hi_s = "" if hi is None else f"{hi}"
            self.problem(key, f"must be in {lo_s}..{hi_s}, not {v}")
            return default
        return v


def _kind(v: object) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(v), type(v).__name__)
