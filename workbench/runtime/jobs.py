"""Long work for the app runs as `workbench` CLI processes: sampling, training, scoring, evaluation.

A `Job` runs one or more commands in sequence, each in its own process group, stderr appended
to one log file (progress bars included) and stdout kept per step (the commands print their
`--json` result there). The app polls `status()`, which reads the log's tail and the latest
progress bar. `cancel()` sends SIGINT (the commands stop cleanly and resume on a rerun), then
SIGTERM and SIGKILL if they do not exit.

Children are ordinary CLI processes: they write to the store in short transactions and retry
while the app holds it, so the app stays usable while they run, and a crash in a child cannot
take the app down.

A `JobManager` caps how many jobs run at once per store (default: one training and one
sampling/scoring/evaluation), whichever tab, API call, app process or CLI command asks: each
running job holds a slot, a lock file under the manager's `slots_dir` (`workbench.runtime.job_slots`). The
job's commands share the app's hold on it, so a job whose app was killed keeps its slot while it
runs, and the next app started on the store adopts it (`workbench.runtime.job_adoption`): it is listed,
its log and progress are shown, and it can be cancelled.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.store import Store
from workbench.runtime.job_slots import DEFAULT_LIMITS, SLOT_FD_ENV, JobSlot, acquire_slot, process_start

LOG_TAIL_BYTES = 64 * 1024
LOG_TAIL_LINES = 40
CANCEL_GRACE_S = 10.0
# tqdm's bar: "desc:  45%|####5     | 36/80 [00:05<00:06, 6.9 samples/s]"
_BAR = re.compile(r"(?:(?P<desc>[^\r\n|]*?):\s*)?(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")


def workbench_command(store: Store, *args: str) -> list[str]:
    """argv of a `workbench` CLI call on this store, run by this Python (same code, same venv)."""
    return [sys.executable, "-m", "workbench", "--db", str(store.path), "--timeout", f"{store.timeout:g}",
            *map(str, args)]


def command_text(argv: list[str]) -> str:
    """A command as a person would type it: `workbench rm train ...` without the interpreter and the
    store options the app adds."""
    args = list(map(str, argv))
    if "workbench" in args:
        args = ["workbench", *args[args.index("workbench") + 1:]]
        for option in ("--db", "--timeout"):
            if option in args[:4]:
                at = args.index(option)
                del args[at:at + 2]
    return " ".join(" ".join(args).split())[:300]  # one line, whatever the arguments hold


@dataclass
class JobStatus:
    id: str
    kind: str
    state: str                                # running | completed | failed | cancelled
    step: int                                 # 1-based index of the command running (or last run)
    steps: int
    progress: tuple[int, int, str] | None     # (done, total, description) of the latest progress bar
    log: str                                  # the log's last lines, progress bars collapsed
    error: str | None
    elapsed_s: float

    @property
    def done(self) -> bool:
        return self.state != "running"

    def progress_text(self) -> str:
        if self.progress is None:
            return ""
        done, total, desc = self.progress
        return f"{desc + ': ' if desc else ''}{done:,}/{total:,}"


def collapse_log(raw: str, lines: int = LOG_TAIL_LINES) -> str:
    """The log as a person reads it: each line's last carriage-return segment, last `lines` lines."""
    kept = [part.rsplit("\r", 1)[-1] for part in raw.replace("\r\n", "\n").split("\n")]
    kept = [line for line in kept if line.strip()]
    return "\n".join(kept[-lines:])


def last_progress(raw: str) -> tuple[int, int, str] | None:
    """The newest tqdm progress bar in a log: (done, total, description)."""
    for segment in reversed(re.split(r"[\r\n]", raw)):
        match = _BAR.search(segment)
        if match:
            return int(match["n"]), int(match["total"]), (match["desc"] or "").strip()
    return None


class Job:
    """A sequence of commands run in the background; see the module docstring."""

    def __init__(self, kind: str, commands: list[list[str]], directory: Path, env: dict | None = None,
                 slot: JobSlot | None = None):
        if not commands:
            raise WorkbenchError("a job needs at least one command")
        self.slot = slot  # released when the last command has exited
        self.id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:6]}"
        self.kind, self.commands = kind, commands
        self.directory = Path(directory) / self.id
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path = self.directory / "log.txt"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.state, self.step, self.returncode = "running", 0, None
        self.started = time.monotonic()
        self.finished: float | None = None
        self._process: subprocess.Popen | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"job-{self.id}", daemon=True)
        self._record()

    def _record(self, **fields) -> None:
        """What a restarted app needs to adopt this job if this app dies (see workbench.runtime.job_adoption)."""
        if self.slot is not None:
            self.slot.record(job=self.id, kind=self.kind, directory=str(self.directory), steps=len(self.commands),
                             owner_pid=os.getpid(), owner_start=process_start(os.getpid()),
                             command=command_text(self.commands[max(self.step - 1, 0)]),
                             argv=self.commands[max(self.step - 1, 0)], **fields)

    def start(self) -> "Job":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._run_commands()
        finally:
            if self.slot is not None:
                self.slot.release()

    def _run_commands(self) -> None:
        state = "completed"
        for index, argv in enumerate(self.commands):
            with self._lock:
                if self._cancelled.is_set():
                    state = "cancelled"
                    break
                self.step = index + 1
                with open(self.log_path, "ab") as err, open(self.output_path(index), "wb") as out:
                    err.write(f"$ {' '.join(argv)}\n".encode())
                    err.flush()
                    try:
                        self._process = self._spawn(argv, out, err)
                    except OSError as error:
                        err.write(f"Error: cannot start {argv[0]}: {error}\n".encode())
                        state = "failed"
                        break
                    self._record(pid=self._process.pid, pid_start=process_start(self._process.pid), step=self.step)
            self.returncode = self._process.wait()
            if self.returncode != 0:
                state = "cancelled" if self._cancelled.is_set() else "failed"
                break
        self.finished = time.monotonic()
        self.state = state

    def _spawn(self, argv: list[str], out, err) -> subprocess.Popen:
        """The command in its own process group; it shares the app's slot (the open lock file), so
        it runs under that slot instead of taking one, and keeps it taken if the app dies."""
        env, fds = self.env, ()
        if self.slot is not None and self.slot.fd is not None:
            env, fds = {**self.env, SLOT_FD_ENV: str(self.slot.fd)}, (self.slot.fd,)
        return subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, pass_fds=fds)

    def output_path(self, index: int) -> Path:
        """Where command `index`'s stdout goes."""
        return self.directory / f"stdout-{index + 1}.txt"

    def output(self, index: int) -> str:
        """What command `index` (0-based) printed on stdout."""
        path = self.output_path(index)
        return path.read_text(errors="replace") if path.exists() else ""

    def _log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")

    def status(self) -> JobStatus:
        """The job's state, progress and log tail now."""
        raw = self._log_tail()
        log = collapse_log(raw)
        error = None
        if self.state == "failed":
            errors = [line for line in log.splitlines() if line.startswith("Error")]
            error = errors[-1] if errors else f"the command exited with status {self.returncode}; see the log"
        end = self.finished or time.monotonic()
        return JobStatus(self.id, self.kind, self.state, max(self.step, 1), len(self.commands), last_progress(raw),
                         log, error, round(end - self.started, 1))

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Interrupt the running command (SIGINT, then SIGTERM, then SIGKILL) and skip the rest."""
        with self._lock:
            self._cancelled.set()
            process = self._process
        if process is None or process.poll() is not None:
            return
        threading.Thread(target=_stop, args=(process, grace_s), daemon=True).start()

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Wait for the job to end (at most `timeout` seconds); its status."""
        self._thread.join(timeout)
        return self.status()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the child leads its own group (start_new_session)
    except ProcessLookupError:
        pass


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        _signal_group(process, sig)
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


class JobManager:
    """The app's jobs, by id; `shutdown()` stops those still running when the app closes.

    At most `limits[class]` jobs of each class run at once among all managers sharing `slots_dir`
    (default: `directory`/.slots; the app uses one per store, `job_slots.store_slots_dir`).
    """

    def __init__(self, directory: str | Path, slots_dir: str | Path | None = None,
                 limits: dict[str, int] | None = None):
        self.directory = Path(directory)
        self.slots_dir = Path(slots_dir) if slots_dir else self.directory / ".slots"
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.adopt_orphans()

    def adopt_orphans(self) -> list:
        """Take over jobs an app that died left running on these slots (see workbench.runtime.job_adoption)."""
        from workbench.runtime.job_adoption import find_orphans

        found = [job for job in find_orphans(self.slots_dir) if job.id not in self._jobs]
        with self._lock:
            self._jobs.update({job.id: job for job in found})
        return found

    def start(self, kind: str, commands: list[list[str]], env: dict | None = None) -> Job:
        """Start a job, or raise JobLimitReached when its class is at its limit."""
        slot = acquire_slot(self.slots_dir, kind, self.limits)
        try:
            job = Job(kind, commands, self.directory, env, slot)
        except BaseException:
            slot.release()
            raise
        with self._lock:
            self._jobs[job.id] = job
        return job.start()

    def get(self, job_id: str | None) -> Job:
        """The job with this id; refuses an unknown id."""
        job = self._jobs.get(job_id or "")
        if job is None:
            raise WorkbenchError("no such job: start one first")
        return job

    def running(self, kind: str | None = None) -> list[Job]:
        """Jobs still running, optionally of one kind."""
        return [j for j in self._jobs.values() if j.state == "running" and kind in (None, j.kind)]

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Cancel every running job (the app is closing)."""
        for job in self.running():
            job.cancel(grace_s)
        for job in list(self._jobs.values()):
            job.wait(timeout=3 * grace_s + 1)
