"""Claim a training output directory before anything is written into it.

A fresh `rm train` takes a directory that is new or empty and creates `training_claim.json` in it
with O_EXCL, so of two trainings started under one name only one gets it, and a rerun is refused
before it could replace the held-out pairs of a trained model. Every run (fresh or `--resume`) then
holds an exclusive `flock` on that file until it ends; the kernel drops the lock when the process
dies, so a killed run can be resumed while a running one cannot be joined.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from engine.run_dir import RunDirectory
from workbench.errors import WorkbenchError


class TrainingClaim:
    """A held claim on `out`; `release(failed=...)` drops it (and a failed fresh run's files)."""

    def __init__(self, out: Path, fd: int, created: bool, resume: bool):
        self.out, self.fd, self.created, self.resume = out, fd, created, resume

    def release(self, *, failed: bool = False) -> None:
        """Unlock; a fresh run that failed before leaving anything to resume removes what it wrote."""
        os.close(self.fd)
        if failed and not self.resume and _nothing_to_resume(self.out):
            if self.created:
                shutil.rmtree(self.out, ignore_errors=True)
            else:  # the directory was empty when claimed: everything in it is this run's
                for item in self.out.iterdir():
                    shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()


def claim_output_dir(out: str | Path, resume: bool) -> TrainingClaim:
    """Claim `out` for one training, or raise a WorkbenchError that says what to do."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WorkbenchError(f"{out} is a file: --out needs a directory")
    created = False
    if resume:
        if out.is_dir() and any(out.iterdir()) and not RunDirectory(out).looks_like_a_run():
            raise WorkbenchError(f"{out} holds no training run to resume: choose a new --out (without --resume)")
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(RunDirectory(out).claim, os.O_RDWR | os.O_CREAT, 0o644)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            out.mkdir()
            created = True
        except FileExistsError:
            if any(out.iterdir()):
                raise WorkbenchError(_taken(out)) from None
        try:
            fd = os.open(RunDirectory(out).claim, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise WorkbenchError(_taken(out)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise WorkbenchError(f"a training into {out} is running now{holder}: wait for it to end, "
                             "or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": time.time(), "resume": resume}).encode() + b"\n", 0)
    return TrainingClaim(out, fd, created, resume)


def _nothing_to_resume(out: Path) -> bool:
    return not RunDirectory(out).holds_run()


def _taken(out: Path) -> str:
    return (f"{out} already holds a training run or other files: pass --resume to continue a run there, "
            "or choose a new --out")


def _holder(fd: int) -> str:
    try:
        return f" (pid {json.loads(os.pread(fd, 4096, 0))['pid']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
