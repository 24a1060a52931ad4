"""Jobs an app left running when it was killed, taken over by the next app on the same store.

A job's commands share the app's slot (`workbench.runtime.job_slots`), so when the app dies by SIGKILL
(or a crash) the running command keeps the slot taken, and the slot file still names the job:
its id, directory, process group and the app that started it. `find_orphans(slots_dir)` returns
every job holding a slot whose app is gone and whose process still runs, as an `AdoptedJob`:
`status()` reads its log and progress bar like a `Job`'s, `cancel()` stops its process group
(SIGINT, then SIGTERM, then SIGKILL), `wait()` waits for it to end.

What cannot be recovered: the exit status of a process the app did not start (an adopted job that
ended is "completed" when its last step printed a result and logged no error, else "failed"), and
the later steps of a multi-step job (the dead app ran them in sequence): the job ends after the
step that was running, and says so.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from pathlib import Path

from workbench.runtime.job_slots import is_running, read_record
from workbench.runtime.jobs import CANCEL_GRACE_S, JobStatus, collapse_log, last_progress

_POLL_S = 0.2


class AdoptedJob:
    """A job another (dead) app started; the same reading and cancelling interface as `Job`."""

    adopted = True  # the app's tabs follow such a job when they have none of their own

    def __init__(self, record: dict):
        self.id, self.kind = str(record["job"]), str(record.get("kind", "job"))
        self.directory = Path(record["directory"])
        self.log_path = self.directory / "log.txt"
        self.steps, self.step = int(record.get("steps", 1)), int(record.get("step", 1))
        self.pid, self.pid_start = int(record["pid"]), record.get("pid_start")
        self.argv = [str(a) for a in record.get("argv") or []]
        self.started, self.finished = time.monotonic(), None
        self._cancelled = threading.Event()
        self._ended_state: str | None = None

    @property
    def state(self) -> str:
        if self._ended_state is None and not is_running(self.pid, self.pid_start):
            self.finished = time.monotonic()
            self._ended_state = self._state_after_end()
        return self._ended_state or "running"

    def _state_after_end(self) -> str:
        if self._cancelled.is_set():
            return "cancelled"
        log = collapse_log(self._log_tail())
        if self.step == self.steps and self.output(self.step - 1).strip() and "\nError" not in "\n" + log:
            return "completed"
        return "failed"

    def option(self, name: str) -> str | None:
        """The value the running command was given for option `name` (e.g. --out), if any."""
        at = self.argv.index(name) if name in self.argv else -1
        return self.argv[at + 1] if 0 <= at < len(self.argv) - 1 else None

    def output(self, index: int) -> str:
        path = self.directory / f"stdout-{index + 1}.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def status(self) -> JobStatus:
        state, raw = self.state, self._log_tail()
        log = collapse_log(raw)
        error = None
        if state == "failed":
            errors = [line for line in log.splitlines() if line.startswith("Error")]
            error = errors[-1] if errors else (
                f"the app that started this job was stopped while step {self.step} of {self.steps} ran; that step "
                "ended without a result and later steps did not run: start the job again (it resumes)")
        end = self.finished or time.monotonic()
        return JobStatus(self.id, self.kind, state, self.step, self.steps, last_progress(raw), log, error,
                         round(end - self.started, 1))

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Stop the job's process group: SIGINT (the commands stop cleanly), then SIGTERM, SIGKILL."""
        self._cancelled.set()
        if self.state == "running":
            threading.Thread(target=self._stop, args=(grace_s,), daemon=True).start()

    def _stop(self, grace_s: float) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if not is_running(self.pid, self.pid_start):
                return
            try:
                os.killpg(self.pid, sig)  # the command leads its own group (start_new_session)
            except ProcessLookupError:
                return
            if self._wait_until_ended(grace_s):
                return

    def _wait_until_ended(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while is_running(self.pid, self.pid_start):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    def wait(self, timeout: float | None = None) -> JobStatus:
        self._wait_until_ended(timeout)
        return self.status()


def find_orphans(slots_dir: str | os.PathLike) -> list[AdoptedJob]:
    """Jobs holding a slot in `slots_dir` whose app is gone and whose process still runs."""
    directory = Path(slots_dir)
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.lock")):
        if _is_free(path):
            continue
        record = read_record(path)
        if not {"job", "directory", "pid"} <= record.keys() or not Path(str(record["directory"])).is_dir():
            continue  # a CLI command, or a job between two steps: nothing to adopt
        if is_running(record.get("owner_pid"), record.get("owner_start")):
            continue  # its app is alive (another app process on this store): not an orphan
        if is_running(record.get("pid"), record.get("pid_start")):
            found.append(AdoptedJob(record))
    return found


def _is_free(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True  # nobody holds it (closing the file below drops the lock at once)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
