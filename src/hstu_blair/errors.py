"""Exceptions raised at the boundaries of the package (bad files, bad configs)."""

from __future__ import annotations

from pathlib import Path


class HstuBlairError(Exception):
    """Base class of every error this package raises on purpose."""


class DataFormatError(HstuBlairError, ValueError):
    """A data file does not match its documented format.

    The message always names the file, and where known the 1-based line and the field,
    and says what was expected.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = self.path + (f":{line}" if line is not None else "")
        if field is not None:
            where += f" (field {field!r})"
        super().__init__(f"{where}: {message}")


class EmptyDatasetError(HstuBlairError, ValueError):
    """Filtering (or the input itself) left nothing to train on."""


class ConfigError(HstuBlairError, ValueError):
    """A config file or an override is invalid (unknown key, wrong type, bad value)."""


class UnknownIdError(HstuBlairError, LookupError):
    """External ids that are not in the catalogue (``kind="item"``) or the user table (``kind="user"``).

    ``ids`` holds every unknown id; the message names the first :data:`MAX_NAMED_IDS`.
    """

    def __init__(self, kind: str, ids: list[str]) -> None:
        self.kind = kind
        self.ids = list(ids)
        shown = ", ".join(repr(_clip(i)) for i in self.ids[:MAX_NAMED_IDS])
        more = f" and {len(self.ids) - MAX_NAMED_IDS} more" if len(self.ids) > MAX_NAMED_IDS else ""
        super().__init__(f"unknown {kind} id{'s' if len(self.ids) > 1 else ''}: {shown}{more}")


MAX_NAMED_IDS = 20
"""Unknown ids named in an error message (the rest are counted)."""


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[:width] + "..."


class RunsNotFoundError(HstuBlairError, ValueError):
    """No finished run directory was found where runs were expected (reports)."""
