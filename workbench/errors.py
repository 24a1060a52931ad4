"""One error hierarchy for everything a user can get wrong.

The CLI turns a user error (`USER_ERRORS`: a `WorkbenchError`, or an `EngineError` from the
engine below) into a one-line message and a non-zero exit; the app turns it into `gr.Error`.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import EngineError


class WorkbenchError(Exception):
    """A problem the user can fix; the message says how."""


class InputError(WorkbenchError):
    """A bad input record, located by file, line and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, unit: str = "line"):
        self.file, self.line, self.field, self.reason, self.unit = file, line, field, message, unit
        super().__init__(self.describe())

    def located(self, file: str, line: int, unit: str = "line") -> "InputError":
        """The same error, placed at `file` and `line` (parsers raise it without a location)."""
        return InputError(self.reason, file=file, line=line, field=self.field, unit=unit)

    def describe(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}" if self.unit == "line" else f" {self.unit} {self.line}"
        suffix = f" (field '{self.field}')" if self.field else ""
        return f"{where + ': ' if where else ''}{self.reason}{suffix}"

    def as_dict(self) -> dict:
        return {"file": self.file, self.unit: self.line, "field": self.field, "reason": self.reason}


class StoreError(WorkbenchError):
    """The store refused an operation (wraps `duckdb.Error`)."""


class StoreBusy(StoreError):
    """Another process kept the store locked for longer than the retry window."""


class NotFound(WorkbenchError):
    """A named thing (reward model, run, prompt) is not in the store."""


def check_name_is_text(name: str | Path, what: str = "export path") -> None:
    """Refuse a name that is not UTF-8 text: a lone surrogate (sent by a browser, or standing for a
    byte a shell passed that is not UTF-8), which the store, ids, manifests and the terminal cannot hold."""
    text = str(name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise WorkbenchError(f"the {what} {ascii(text)} is not valid text: character {error.start + 1} "
                             f"({ascii(text[error.start])}) is a lone surrogate or a byte that is not UTF-8; "
                             "use a plain UTF-8 name") from None


# Everything a person can fix, from the workbench or the engine: what the CLI and the app catch.
USER_ERRORS = (WorkbenchError, EngineError)
