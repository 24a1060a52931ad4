"""Reading what people type: "(any)" in a dropdown and an empty box both mean no filter; a
number box holds a number or nothing."""

from __future__ import annotations

from workbench.errors import WorkbenchError

ANY = "(any)"


def or_none(value):
    """A dropdown or text value, with "(any)" and blanks as None."""
    if isinstance(value, str):
        value = value.strip()
    return None if value in (None, "", ANY) else value


def number(text, label: str, integer: bool = False) -> float | int | None:
    """A bound typed in a text box: empty means none; anything else must be a number."""
    text = str(text if text is not None else "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise WorkbenchError(f"{label} must be a number (or empty for no bound), not '{text}'") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise WorkbenchError(f"{label} must be a finite number")
    if integer:
        if value != int(value):
            raise WorkbenchError(f"{label} must be a whole number")
        return int(value)
    return value
