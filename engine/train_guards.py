"""Refusals that keep a training run's output trustworthy: an output directory that already
holds another run, a step whose loss or gradient is not finite, a torn metrics file on resume.
Shared by the full trainer (`engine.training`) and the head-only one (`engine.head_training`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from engine.checkpoint import latest_checkpoint
from engine.errors import EngineError

COMPLETE_MARKER = "training_complete.json"


def stop_if_not_finite(what: str, value: float, step: int, lr: float) -> None:
    """Refuse to apply a step whose loss or gradient is NaN/inf: the weights would be NaN from then on."""
    if not math.isfinite(value):
        raise EngineError(f"training stopped at step {step + 1}: the {what} is {value} (not a finite number), "
                          f"so the step was not applied. The learning rate is probably too high: lower --lr "
                          f"(now {lr:g}) and train again (the last checkpoint is from before this step)")


def check_out_dir(out: Path, resume: bool) -> None:
    """Refuse to start a fresh run in a directory that holds a checkpoint or a finished run."""
    if resume:
        return
    if latest_checkpoint(out) is not None or (out / COMPLETE_MARKER).exists():
        raise EngineError(f"{out} already holds a training run: pass --resume to continue it, "
                          "or choose another --out")


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
