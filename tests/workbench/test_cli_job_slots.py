"""CLI commands that run long work take the store's job slot, as the app's jobs do (issue 20).

`rm train`, `sample`, `bon`, `score` and `rm eval` refuse, naming the running job, while the app
(or another command) runs one of the same class on the store; the commands the app itself runs
share its slot instead of refusing; the shards of one scoring run share the slot with each other.
"""

from __future__ import annotations

import sys
import time

import pytest
from click.testing import CliRunner

from tests.workbench.conftest import table_counts, write_jsonl
from tests.workbench.test_jobs import SLEEPER
from cli import load_commands
from workbench.runtime.job_slots import JobLimitReached, cli_slot, store_slots_dir
from workbench.runtime.jobs import JobManager, workbench_command


def invoke(db, *args):
    return CliRunner().invoke(load_commands(), ["--db", str(db), "-q", *args])


@pytest.fixture
def app_jobs(store, tmp_path):
    records = [{"prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}]
    assert invoke(store.path, "import", str(write_jsonl(tmp_path / "p.jsonl", records))).exit_code == 0
    jobs = JobManager(tmp_path / "jobs", slots_dir=store_slots_dir(store.path))
    yield jobs
    jobs.shutdown(grace_s=2)


def _running(jobs, kind):
    job = jobs.start(kind, [[sys.executable, "-c", SLEEPER]])
    while job._process is None:
        time.sleep(0.01)
    return job


@pytest.mark.parametrize("kind, command", [
    ("train", ["rm", "train", "--from-store", "--base", "smollm2", "--out", "OUT"]),
    ("sample", ["sample", "--policy", "smollm2", "--n", "2"]),
    ("sample", ["bon", "--policy", "smollm2", "--rm", "x", "--n", "2"]),
    ("score", ["score", "--rm", "x"]),
    ("eval", ["rm", "eval", "--rm", "x", "--from-store"]),
])
def test_cli_commands_refuse_while_the_app_runs_a_job_of_their_class(store, app_jobs, tmp_path, kind, command):
    job = _running(app_jobs, kind)
    before = table_counts(store)
    result = invoke(store.path, *[str(tmp_path / "out") if a == "OUT" else a for a in command])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "is already running on this store" in lines[0] and job.id in lines[0], lines[0]
    assert table_counts(store) == before and not (tmp_path / "out").exists()


def test_the_apps_own_commands_run_under_its_slot(store, app_jobs):
    job = app_jobs.start("score", [workbench_command(store, "score", "--rm", "no-such-rm")])
    status = job.wait(timeout=120)
    assert status.state == "failed" and "reward model 'no-such-rm' not found" in status.error, status.log


def test_a_cli_command_blocks_the_app_and_is_named(store, app_jobs):
    with cli_slot(store.path, "train", "workbench rm train (pid 1)"):
        with pytest.raises(JobLimitReached, match=r"a training job is already running on this store "
                                                  r"\(CLI command: workbench rm train \(pid 1\)"):
            app_jobs.start("train", [[sys.executable, "-c", SLEEPER]])
    _running(app_jobs, "train").cancel(grace_s=2)  # free again once the command ended


def test_the_shards_of_one_scoring_run_share_the_slot(store):
    with cli_slot(store.path, "score", "shard 0/2", shared=True), cli_slot(store.path, "score", "shard 1/2", shared=True):
        with pytest.raises(JobLimitReached, match="shard"):
            with cli_slot(store.path, "sample", "workbench sample"):
                pass
    with cli_slot(store.path, "train", "workbench rm train"):  # another class is not blocked by scoring
        pass
