"""What keeps the app from exhausting the machine: a per-store job cap enforced below the tabs,
bounded inputs, a bounded queue, and models only from the allowed places."""

import sys

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.ui.conftest import NO_FILTER, running_app
from tests.ui.data import make_store
from ui.app import DELETE_CACHE, QUEUE_MAX_SIZE, build_app
from workbench.runtime import commands
from workbench.runtime.job_slots import store_slots_dir
from workbench.runtime.jobs import JobManager

SLEEPER = "import time\nwhile True: time.sleep(0.1)"
SAMPLE = ["(any)", "(any)", "", "2"]                      # source, tag, search, limit
SAMPLING = [4, 0.8, 0.95, 128, 0, 32]                     # n, temperature, top-p, max new tokens, seed, batch size
ONLY_SAMPLE = "(none: sample only, no scores)"


def _train_settings(base="smollm2", lr="", pairs_per_step=8):
    # name, base, recipe, epochs, lr, max length, pairs per step, max steps, held-out fraction, seed
    return ["rm-limits", base, "head-only", 1.0, lr, 512, pairs_per_step, "", 0.1, 0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("limits"), prompts=4)


def test_bounds_are_the_inputs_maxima_and_the_queue_and_cache_are_bounded(store, tmp_path):
    demo = build_app(store, export_dir=tmp_path / "e", runs_dir=tmp_path / "r")
    maxima = {c.label: getattr(c, "maximum", None) for c in demo.blocks.values() if getattr(c, "label", None)}
    assert maxima["N (replies per prompt)"] == commands.MAX_N
    assert maxima["Max new tokens"] == commands.MAX_NEW_TOKENS
    assert maxima["Batch size"] == commands.MAX_BATCH_SIZE
    assert maxima["Pairs per step"] == commands.MAX_PAIRS_PER_STEP
    assert maxima["Max tokens per conversation"] == commands.MAX_TRAIN_LENGTH
    assert demo.delete_cache == DELETE_CACHE
    with running_app(store) as (served, _):
        assert served._queue.max_size == QUEUE_MAX_SIZE


def test_a_second_job_is_refused_whichever_tab_or_app_asks(store):
    with running_app(store) as (demo, url):
        client = Client(url, verbose=False)
        # another app (or CLI-started manager) on the same store is sampling
        other = JobManager(demo.workbench.runs_dir / "other-app", slots_dir=store_slots_dir(store.path))
        busy = other.start("sample", [[sys.executable, "-c", SLEEPER]])
        try:
            with pytest.raises(AppError, match="sampling, scoring or evaluation job is already running on this store"):
                client.predict(*SAMPLE, "smollm2", ONLY_SAMPLE, *SAMPLING, api_name="/sample_start")
            # a training job started by one tab blocks a direct API call (a new session, no tab state)
            demo.workbench.jobs.start("train", [[sys.executable, "-c", SLEEPER]])
            with pytest.raises(AppError, match="a training job is already running on this store"):
                client.predict(*_train_settings(), *NO_FILTER, api_name="/train_start")
            assert [j.kind for j in demo.workbench.jobs.running()] == ["train"]
        finally:
            other.shutdown(grace_s=2)
        assert busy.status().state == "cancelled"


def test_out_of_bounds_and_unknown_models_are_refused_over_the_api(store, tmp_path):
    with running_app(store) as (demo, url):
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="the app does not load model '/etc': use smollm2"):
            client.predict(*SAMPLE, "/etc", ONLY_SAMPLE, *SAMPLING, api_name="/sample_start")
        with pytest.raises(AppError, match="the app does not load model '/usr'"):
            client.predict(*_train_settings(base="/usr"), *NO_FILTER, api_name="/train_start")
        with pytest.raises(AppError, match="learning rate must be a positive number up to 0.01"):
            client.predict(*_train_settings(lr="5"), *NO_FILTER, api_name="/train_start")
        with pytest.raises(AppError):  # Gradio checks the slider and number maxima first
            client.predict(*SAMPLE, "smollm2", ONLY_SAMPLE, *SAMPLING[:5], 10**6, api_name="/sample_start")
        with pytest.raises(AppError):
            client.predict(*_train_settings(pairs_per_step=10**6), *NO_FILTER, api_name="/train_start")
        assert demo.workbench.jobs.running() == []
