"""How many app jobs may run at once on one store: a slot is an exclusive `flock` on a small file.

`flock` locks belong to an open file, so two tabs of one app, two app processes on the same store
and direct API calls all compete for the same slots, and the kernel frees a slot the moment its
holder exits, even by SIGKILL: no stale lock to clean up by hand.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from workbench.errors import WorkbenchError

# A job's kind decides which limit it counts against; every kind not listed is sampling-like work.
JOB_CLASSES = {"train": "training"}
DEFAULT_LIMITS = {"training": 1, "sampling": 1}
_WHAT = {"training": "a training job", "sampling": "a sampling, scoring or evaluation job"}


class JobLimitReached(WorkbenchError):
    """Every slot of a job class is taken."""


def job_class(kind: str) -> str:
    return JOB_CLASSES.get(kind, "sampling")


def store_slots_dir(store_path: str | os.PathLike) -> Path:
    """The slots of one store: in the workbench's cache, keyed by the store file's resolved path."""
    from engine.backbone import cache_home

    key = hashlib.sha256(str(Path(store_path).resolve()).encode()).hexdigest()[:24]
    return cache_home() / "job-slots" / key


class JobSlot:
    """A held slot; `release()` (idempotent) frees it."""

    def __init__(self, fd: int, path: Path):
        self._fd, self.path = fd, path

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the file drops the lock


def acquire_slot(slots_dir: str | os.PathLike, kind: str, limits: dict[str, int]) -> JobSlot:
    """Take a free slot for a job of `kind`, or raise JobLimitReached saying what to do."""
    cls = job_class(kind)
    limit = limits.get(cls, 0)
    directory = Path(slots_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(limit):
        path = directory / f"{cls}-{index}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return JobSlot(fd, path)
    raise JobLimitReached(f"{_WHAT[cls]} is already running on this store (at most {limit} at a time, in any tab "
                          "or app): wait for it to finish or cancel it, then start again")
