"""One progress bar for every phase of long work (tokenizing, features, probe, epochs, evaluation, saving).

On a terminal it is tqdm's usual bar. When stderr is a pipe or a file (the app's job log, CI),
tqdm still writes count, rate and ETA, redrawn at most once a second, one carriage-return segment
per redraw: `workbench.runtime.jobs` shows the last segment of each line, so the job log reads like the
terminal. Callers update after each unit of work (a forward pass, a step), so that unit sets the
longest wait between updates.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

MAX_INTERVAL_S = 3.0


def progress_bar(total: int | None, desc: str, unit: str = " it", enabled: bool = True, initial: int = 0):
    """A tqdm bar on stderr (disabled bars cost nothing)."""
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not enabled, file=sys.stderr,
                mininterval=0.1 if interactive else 1.0, maxinterval=MAX_INTERVAL_S,
                dynamic_ncols=interactive)


@contextmanager
def phase(desc: str, enabled: bool = True):
    """A one-step bar for work that cannot report its own progress (e.g. writing the model)."""
    bar = progress_bar(1, desc, unit=" step", enabled=enabled)
    try:
        yield bar
        bar.update(1)
    finally:
        bar.close()


def epoch_label(step: int, steps: int, per_epoch: int) -> str:
    """'epoch E/TOTAL' of a 0-based optimizer step."""
    return f"epoch {step // per_epoch + 1}/{-(-steps // per_epoch)}"
