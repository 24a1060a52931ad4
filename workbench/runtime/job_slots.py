"""How many jobs may run at once on one store: a slot is an exclusive `flock` on a small file.

`flock` locks belong to an open file, so two tabs of one app, two app processes on the same store,
direct API calls and CLI commands (`rm train`, `bon`, `sample`, `score`: `cli_slot`) all compete
for the same slots, and the kernel frees a slot the moment its last holder exits, even by
SIGKILL: no stale lock to clean up by hand.

The app hands its slot's open file to each command it runs (`SLOT_FD_ENV`): the command then runs
under the app's slot instead of taking one, and the slot stays taken while the command runs even
if the app is killed. The slot file holds a JSON record of its holder (job id, command, pids), so
a refusal can name the running job and a restarted app can adopt it (`workbench.runtime.job_adoption`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from workbench.errors import WorkbenchError

# A job's kind decides which limit it counts against; every kind not listed is sampling-like work.
JOB_CLASSES = {"train": "training"}
DEFAULT_LIMITS = {"training": 1, "sampling": 1}
_WHAT = {"training": "a training job", "sampling": "a sampling, scoring or evaluation job"}
SLOT_FD_ENV = "WORKBENCH_JOB_SLOT_FD"  # set by the app for the commands it runs under its slot
_RECORD_BYTES = 64 * 1024


class JobLimitReached(WorkbenchError):
    """Every slot of a job class is taken."""


def job_class(kind: str) -> str:
    return JOB_CLASSES.get(kind, "sampling")


def store_slots_dir(store_path: str | os.PathLike) -> Path:
    """The slots of one store: in the workbench's cache, keyed by the store file's resolved path."""
    from engine.backbone import cache_home

    key = hashlib.sha256(str(Path(store_path).resolve()).encode()).hexdigest()[:24]
    return cache_home() / "job-slots" / key


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), to tell it from a later process that
    reuses its pid; None when it does not exist (or there is no /proc to ask)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def is_running(pid: int | None, start: str | None) -> bool:
    """Whether the process that had `pid` at `start` still runs (not a zombie, not a pid reused)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0] != "Z" and (start is None or fields[19] == start)
    except (OSError, IndexError):
        return False


class JobSlot:
    """A held slot; `release()` (idempotent) frees it."""

    def __init__(self, fd: int, path: Path):
        self._fd, self.path = fd, path

    @property
    def fd(self) -> int | None:
        return self._fd

    def record(self, **fields) -> None:
        """Say who holds the slot (read by refusals and by a restarted app)."""
        if self._fd is None:
            return
        data = json.dumps(fields, default=str).encode()[:_RECORD_BYTES]
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the file drops the lock (once no child shares it)


def read_record(path: Path) -> dict:
    """The holder's record in a slot file ({} when none or unreadable)."""
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read(_RECORD_BYTES) or b"{}")
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_holder(record: dict) -> str:
    """' (job ID: COMMAND, pid N)' for a refusal, or '' when the record says nothing."""
    if not record:
        return ""
    what = record.get("job") or "a command"
    command = record.get("command")
    pid = record.get("pid")
    return f" ({what}{': ' + command if command else ''}{f', pid {pid}' if pid else ''})"


def acquire_slot(slots_dir: str | os.PathLike, kind: str, limits: dict[str, int]) -> JobSlot:
    """Take a free slot for a job of `kind`, or raise JobLimitReached naming the running job."""
    cls = job_class(kind)
    limit = limits.get(cls, 0)
    directory = Path(slots_dir)
    directory.mkdir(parents=True, exist_ok=True)
    holders = []
    for index in range(limit):
        path = directory / f"{cls}-{index}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holders.append(describe_holder(read_record(path)))
            continue
        os.ftruncate(fd, 0)  # a record left by an earlier holder is not this one's
        return JobSlot(fd, path)
    raise JobLimitReached(f"{_WHAT[cls]} is already running on this store{''.join(holders[:1])} (at most {limit} "
                          "at a time, in any tab, app or CLI command): wait for it to finish or cancel it, then "
                          "start again")


def inherited_slot(slots_dir: str | os.PathLike) -> bool:
    """Whether this process runs under a slot of `slots_dir` its parent (the app) handed down."""
    try:
        fd = int(os.environ.get(SLOT_FD_ENV, ""))
        held = os.fstat(fd)
    except (ValueError, OSError):
        return False
    directory = Path(slots_dir)
    for path in directory.glob("*.lock") if directory.is_dir() else ():
        try:
            info = path.stat()
        except OSError:
            continue
        if (info.st_ino, info.st_dev) == (held.st_ino, held.st_dev):
            return True
    return False


@contextmanager
def cli_slot(store_path: str | os.PathLike, kind: str, command: str, shared: bool = False):
    """Run a CLI command under a slot of its store (or under the app's, when the app started it).

    `shared`: the shards of one scoring run (`score --shard i/n`, torchrun ranks) run side by side:
    they share the class's first slot (a shared lock), which still excludes any other job."""
    slots_dir = store_slots_dir(store_path)
    if inherited_slot(slots_dir):
        yield None
        return
    slot = _shared_slot(slots_dir, kind) if shared else acquire_slot(slots_dir, kind, DEFAULT_LIMITS)
    try:
        slot.record(job="CLI command", kind=kind, command=command, pid=os.getpid(),
                    pid_start=process_start(os.getpid()))
        yield slot
    finally:
        slot.release()


def _shared_slot(slots_dir: Path, kind: str) -> JobSlot:
    cls = job_class(kind)
    slots_dir.mkdir(parents=True, exist_ok=True)
    path = slots_dir / f"{cls}-0.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JobLimitReached(f"{_WHAT[cls]} is already running on this store{describe_holder(read_record(path))}: "
                              "wait for it to finish or cancel it, then start again") from None
    return JobSlot(fd, path)
