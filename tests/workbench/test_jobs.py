"""Background jobs: child processes with a log, progress from their bars, JSON output, cancel."""

import os
import subprocess
import sys
import time

import pytest

from workbench.errors import WorkbenchError
from workbench.runtime.job_slots import JobLimitReached, is_running
from workbench.runtime.jobs import JobManager, collapse_log, last_progress, workbench_command
from workbench.store import Store

# Writes tqdm-style bars to stderr (carriage returns, as tqdm does when not on a terminal) and a
# JSON result to stdout, like `workbench bon --json`.
FAKE_RUN = r"""
import json, sys, time
for i in range(1, 6):
    sys.stderr.write(f"\rsampling:  {i * 20}%|##        | {i}/5 [00:0{i}<00:01, 9.1 samples/s]")
    sys.stderr.flush()
    time.sleep(0.02)
sys.stderr.write("\nall done\n")
print(json.dumps({"total": 5, "args": sys.argv[1:]}))
"""
# Prints "ready" (spelled so that the echoed command line does not contain it), then waits forever.
SLEEPER = "import time, sys\nsys.stderr.write('rea' + 'dy\\n'); sys.stderr.flush()\nwhile True: time.sleep(0.1)"
# Takes the store's training slot, says so, and keeps it until killed.
HOLD_SLOT = ("import sys, time\nfrom workbench.runtime.job_slots import acquire_slot, DEFAULT_LIMITS\n"
             "slot = acquire_slot(sys.argv[1], 'train', DEFAULT_LIMITS)\nprint('held', flush=True)\ntime.sleep(300)")
FAILING = "import sys; sys.stderr.write('Error: no prompts match the selection\\n'); sys.exit(1)"


def test_collapse_log_keeps_the_last_state_of_each_line():
    raw = "$ cmd\nbar  10%|\rbar  50%|\rbar 100%|\nsecond line\n\n"
    assert collapse_log(raw) == "$ cmd\nbar 100%|\nsecond line"
    assert collapse_log("\n".join(str(i) for i in range(100)), lines=3) == "97\n98\n99"


def test_last_progress_reads_tqdm_bars():
    raw = ("scoring with rm@1:  40%|####      | 400/1000 [00:04<00:06, 99.0 responses/s]\r"
           "scoring with rm@1:  50%|#####     | 500/1000 [00:05<00:05, 99.0 responses/s]\nsomething else\n")
    assert last_progress(raw) == (500, 1000, "scoring with rm@1")
    assert last_progress("100%|██████████| 3/3 [00:10<00:00, acc=0.75]") == (3, 3, "")
    assert last_progress("no bar here\n") is None


def test_job_runs_its_commands_in_order_and_keeps_their_output(tmp_path):
    jobs = JobManager(tmp_path)
    job = jobs.start("sample", [[sys.executable, "-c", FAKE_RUN, "one"], [sys.executable, "-c", FAKE_RUN, "two"]])
    status = job.wait(timeout=60)
    assert status.state == "completed" and status.steps == 2 and status.step == 2
    assert status.progress == (5, 5, "sampling") and "all done" in status.log and status.error is None
    assert '"args": ["one"]' in job.output(0) and '"args": ["two"]' in job.output(1)
    assert jobs.get(job.id) is job and jobs.running() == []
    with pytest.raises(WorkbenchError, match="no such job"):
        jobs.get("nope")


def test_failing_command_stops_the_job_with_its_error_line(tmp_path):
    job = JobManager(tmp_path).start("sample", [[sys.executable, "-c", FAILING], [sys.executable, "-c", FAKE_RUN]])
    status = job.wait(timeout=60)
    assert status.state == "failed" and status.step == 1
    assert status.error == "Error: no prompts match the selection"
    assert job.output(1) == ""  # the second command never ran


def test_cancel_interrupts_the_process_group(tmp_path):
    job = JobManager(tmp_path).start("train", [[sys.executable, "-c", SLEEPER], [sys.executable, "-c", FAKE_RUN]])
    deadline = time.monotonic() + 30
    while "ready" not in job.status().log and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = job._process.pid
    job.cancel(grace_s=2)
    status = job.wait(timeout=30)
    assert status.state == "cancelled" and job.output(1) == ""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_shutdown_stops_running_jobs(tmp_path):
    jobs = JobManager(tmp_path)
    job = jobs.start("score", [[sys.executable, "-c", SLEEPER]])
    jobs.shutdown(grace_s=2)
    assert job.status().state == "cancelled" and jobs.running() == []


def test_missing_program_fails_cleanly(tmp_path):
    status = JobManager(tmp_path).start("x", [["/no/such/program"]]).wait(timeout=10)
    assert status.state == "failed" and "cannot start" in status.error


def test_workbench_command_targets_this_store(tmp_path):
    store = Store(tmp_path / "s.duckdb", timeout=7)
    argv = workbench_command(store, "stats", "--json")
    assert argv[:3] == [sys.executable, "-m", "workbench"]
    assert argv[3:] == ["--db", str(store.path), "--timeout", "7", "stats", "--json"]


def test_one_training_and_one_sampling_job_per_store_across_managers(tmp_path):
    first, second = JobManager(tmp_path / "a", slots_dir=tmp_path / "slots"), \
        JobManager(tmp_path / "b", slots_dir=tmp_path / "slots")  # two tabs' or two apps' managers on one store
    train = first.start("train", [[sys.executable, "-c", SLEEPER]])
    with pytest.raises(JobLimitReached, match="a training job is already running on this store.*cancel it"):
        second.start("train", [[sys.executable, "-c", FAKE_RUN]])
    sample = second.start("sample", [[sys.executable, "-c", SLEEPER]])  # the other class has its own slot
    for manager, kind in ((first, "score"), (second, "eval"), (first, "sample")):
        with pytest.raises(JobLimitReached, match="sampling, scoring or evaluation job is already running"):
            manager.start(kind, [[sys.executable, "-c", FAKE_RUN]])
    assert [j.id for j in first.running()] == [train.id] and [j.id for j in second.running()] == [sample.id]
    train.cancel(grace_s=2)
    assert train.wait(timeout=30).state == "cancelled"
    assert second.start("train", [[sys.executable, "-c", FAKE_RUN]]).wait(timeout=60).state == "completed"
    first.shutdown(grace_s=2)
    second.shutdown(grace_s=2)


def test_limits_are_configurable_and_a_refused_job_leaves_no_trace(tmp_path):
    jobs = JobManager(tmp_path, limits={"sampling": 2})
    running = [jobs.start("sample", [[sys.executable, "-c", SLEEPER]]) for _ in range(2)]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(JobLimitReached, match="at most 2 at a time"):
        jobs.start("sample", [[sys.executable, "-c", FAKE_RUN]])
    assert sorted(p.name for p in tmp_path.iterdir()) == before and len(jobs.running()) == 2
    jobs.shutdown(grace_s=2)
    assert all(j.status().state == "cancelled" for j in running)


def test_a_slot_held_by_another_process_is_freed_when_it_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SLOT, str(tmp_path / "slots")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        jobs = JobManager(tmp_path / "jobs", slots_dir=tmp_path / "slots")
        with pytest.raises(JobLimitReached):
            jobs.start("train", [[sys.executable, "-c", FAKE_RUN]])
        holder.kill()  # no clean-up code runs: the kernel drops the lock
        holder.wait(timeout=10)
        assert jobs.start("train", [[sys.executable, "-c", FAKE_RUN]]).wait(timeout=60).state == "completed"
    finally:
        if holder.poll() is None:
            holder.kill()


# An "app": starts a job under the store's slots, says its id and its command's pid, then waits to be killed.
APP = r"""
import sys, time
from workbench.runtime.jobs import JobManager
jobs = JobManager(sys.argv[1], slots_dir=sys.argv[2])
job = jobs.start("train", [[sys.executable, "-c", sys.argv[3]], [sys.executable, "-c", "print('second step')"]])
while job._process is None:
    time.sleep(0.01)
print(job.id, job._process.pid, flush=True)
time.sleep(300)
"""


def test_a_sigkilled_apps_job_keeps_its_slot_and_is_adopted_by_the_next_app(tmp_path):
    app = subprocess.Popen([sys.executable, "-c", APP, str(tmp_path / "jobs"), str(tmp_path / "slots"), SLEEPER],
                           stdout=subprocess.PIPE, text=True)
    job_id, pid = app.stdout.readline().split()
    pid = int(pid)
    try:
        deadline = time.monotonic() + 30
        while "ready" not in (tmp_path / "jobs" / job_id / "log.txt").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        app.kill()  # SIGKILL: no clean-up code of the app runs
        app.wait(timeout=10)
        os.kill(pid, 0)  # the job's command runs on
        restarted = JobManager(tmp_path / "jobs", slots_dir=tmp_path / "slots")
        [adopted] = restarted.running()
        assert adopted.id == job_id and restarted.get(job_id) is adopted and adopted.kind == "train"
        status = adopted.status()
        assert status.state == "running" and "ready" in status.log and (status.step, status.steps) == (1, 2)
        with pytest.raises(JobLimitReached, match=f"a training job is already running on this store \\({job_id}"):
            restarted.start("train", [[sys.executable, "-c", FAKE_RUN]])  # the orphan still holds the slot
        adopted.cancel(grace_s=2)
        assert adopted.wait(timeout=30).state == "cancelled" and restarted.running() == []
        assert not is_running(pid, None)  # gone, or a zombie waiting for a PID 1 that may not reap it
        assert restarted.start("train", [[sys.executable, "-c", FAKE_RUN]]).wait(timeout=60).state == "completed"
    finally:
        app.kill()
        try:
            os.killpg(pid, 9)
        except ProcessLookupError:
            pass


def test_an_orphan_that_ends_on_its_own_says_what_did_not_run(tmp_path):
    app = subprocess.Popen([sys.executable, "-c", APP, str(tmp_path / "jobs"), str(tmp_path / "slots"),
                            SLEEPER.replace("while True: time.sleep(0.1)", "time.sleep(1.5)")],
                           stdout=subprocess.PIPE, text=True)
    job_id, pid = app.stdout.readline().split()
    app.kill()
    app.wait(timeout=10)
    [adopted] = JobManager(tmp_path / "jobs", slots_dir=tmp_path / "slots").running()
    status = adopted.wait(timeout=30)
    assert status.state == "failed" and "step 1 of 2" in status.error and "later steps did not run" in status.error


def test_a_live_apps_jobs_are_not_adopted_by_another_app(tmp_path):
    first = JobManager(tmp_path / "jobs", slots_dir=tmp_path / "slots")
    job = first.start("train", [[sys.executable, "-c", SLEEPER]])
    while job._process is None:
        time.sleep(0.01)
    assert JobManager(tmp_path / "jobs", slots_dir=tmp_path / "slots").running() == []
    first.shutdown(grace_s=2)
