"""Refusals that keep a training run's output trustworthy: a step whose loss or gradient is not
finite, a torn metrics file on resume. Shared by the full trainer (`engine.training`) and the
head-only one (`engine.head_training`); a directory that already holds a run is refused by
`engine.run_dir.RunDirectory.check_fresh`."""

from __future__ import annotations

import json
import math
from pathlib import Path

from engine.errors import EngineError


def stop_if_not_finite(what: str, value: float, step: int, lr: float) -> None:
    """Refuse to apply a step whose loss or gradient is NaN/inf: the weights would be NaN from then on."""
    if not math.isfinite(value):
        raise EngineError(f"training stopped at step {step + 1}: the {what} is {value} (not a finite number), "
                          f"so the step was not applied. The learning rate is probably too high: lower --lr "
                          f"(now {lr:g}) and train again (the last checkpoint is from before this step)")


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past the checkpoint we resume from (they will be logged again).

    A run killed mid-write leaves a torn last line: it is dropped; a bad line elsewhere is an error.
    """
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line) if line else None
        except ValueError:
            if number == len(lines):
                break
            raise EngineError(f"{path}:{number}: not a JSON line; fix or remove it, then resume") from None
        if record is not None and record["step"] <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))
