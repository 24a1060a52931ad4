"""The one rule for a score entering the store: a finite number (or no score at all).

NaN and infinities make contradictory pairs: in DuckDB `NaN > x` is true for every x, so a NaN
reply wins every comparison and its NaN margin passes every `--min-margin`. Every entry point
(imported `bon` scores, a reward model's scoring output, and any future one such as a server)
checks values with these functions; `workbench.store.finite` keeps old stores' non-finite scores
out of pair building and export.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from workbench.errors import InputError


def _is_finite_number(value: Any) -> bool:
    if type(value) is float:  # the common case first
        return math.isfinite(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))  # an int past a double's range overflows
    except OverflowError:
        return False


def finite_score(value: Any, field: str) -> float | None:
    """`value` as a float, None for no score; raises InputError naming `field` for anything else."""
    if value is None:
        return None
    if not _is_finite_number(value):
        raise InputError(f"expected a finite number, got {_shown(value)}", field=field)
    return float(value)


def first_non_finite(values: Sequence[Any]) -> int | None:
    """The index of the first value that is not a finite number, or None when all are."""
    for i, value in enumerate(values):
        if not _is_finite_number(value):
            return i
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def require_finite(values: Sequence[float], names: Sequence[str], what: str) -> list[float]:
    """`values` as floats, or InputError naming the first bad one (`names[i]`) and its producer `what`."""
    bad = first_non_finite(values)
    if bad is not None:
        raise InputError(f"{what} gave a non-finite score ({_shown(values[bad])}) to {names[bad]}: "
                         "scores must be finite numbers; nothing from this batch was stored")
    return [float(v) for v in values]
