"""After the app is SIGKILLed mid-job, the next app on the store shows the job in its tab and can cancel it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.ui.data import make_store
from tests.workbench.test_jobs import SLEEPER
from ui import retrain_steps, sample_steps
from ui.context import AppContext
from workbench.runtime.job_slots import is_running

# An app's job manager (as AppContext makes it) running one job of kind argv[3], then waiting to be killed.
APP = r"""
import sys, time
from ui.context import AppContext
from workbench.store import Store
ctx = AppContext.create(Store(sys.argv[1], timeout=30), runs_dir=sys.argv[2])
argv = [sys.executable, "-c", sys.argv[4], "--out", "runs/rm-x", "--name", "rm-x"]
job = ctx.jobs.start(sys.argv[3], [argv])
while job._process is None:
    time.sleep(0.01)
print(job.id, job._process.pid, flush=True)
time.sleep(300)
"""


def _kill_group(pid: int) -> None:
    # os.killpg, never the kill(1) program: procps reads "kill -9 -PID" as kill(-1), every process.
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _killed_app_with_a_job(store, runs, kind):
    app = subprocess.Popen([sys.executable, "-c", APP, str(store.path), str(runs), kind, SLEEPER],
                           stdout=subprocess.PIPE, text=True)
    job_id, pid = app.stdout.readline().split()
    app.kill()
    app.wait(timeout=10)
    return job_id, int(pid)


def test_the_sample_tab_follows_and_cancels_a_run_its_killed_app_left(tmp_path):
    store = make_store(tmp_path, prompts=3)
    job_id, pid = _killed_app_with_a_job(store, tmp_path / "runs", "sample")
    try:
        ctx = AppContext.create(store, runs_dir=tmp_path / "runs")
        current = sample_steps.adopted_run(ctx, None)
        assert current == sample_steps.SampleJob(job_id)
        assert sample_steps.adopted_run(ctx, current) is None  # a tab with its own run keeps it
        assert retrain_steps.adopted_job(ctx, None) is None  # another class of job: not this tab's
        status, text = sample_steps.run_view(ctx, current)
        assert status.state == "running" and text is None
        ctx.jobs.get(current.id).cancel(grace_s=2)
        deadline = time.monotonic() + 30
        while sample_steps.run_view(ctx, current)[0].state == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sample_steps.run_view(ctx, current)[0].state == "cancelled" and not is_running(pid, None)
    finally:
        _kill_group(pid)


def test_the_retrain_tab_follows_a_training_its_killed_app_left(tmp_path):
    store = make_store(tmp_path, prompts=3)
    job_id, pid = _killed_app_with_a_job(store, tmp_path / "runs", "train")
    try:
        ctx = AppContext.create(store, runs_dir=tmp_path / "runs")
        current = retrain_steps.adopted_job(ctx, None)
        assert current == retrain_steps.RetrainJob(job_id, "train", "runs/rm-x", ["rm-x"])
        view = retrain_steps.job_view(ctx, current)
        assert view.status.state == "running"
        ctx.jobs.get(job_id).cancel(grace_s=2)
        assert ctx.jobs.get(job_id).wait(timeout=30).state == "cancelled"
    finally:
        _kill_group(pid)
