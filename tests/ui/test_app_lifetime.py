"""The app's jobs run in their own sessions (a Ctrl+C in the terminal does not reach them), so the
app must stop them itself when it exits, whichever way it is asked to."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.processes import free_port
from tests.ui.data import make_store

# Serves the app the way `workbench ui` does (`launch(block=True)`: the server and block_thread
# inside jobs_stop_with_the_app), with one job running that would never end on its own; prints the
# job's pid once the signal handlers are in place, then blocks.
APP = r"""
import sys, time
from ui.app import jobs_stop_with_the_app, launch
from workbench.store import Store

demo, _ = launch(Store(sys.argv[1]), port=int(sys.argv[2]), block=False, quiet=True)
with jobs_stop_with_the_app(demo):
    job = demo.workbench.jobs.start("train", [[sys.executable, "-c", "import time\nwhile True: time.sleep(0.1)"]])
    while job._process is None:
        time.sleep(0.01)
    print(job._process.pid, flush=True)
    demo.block_thread()
print("stopped", flush=True)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("lifetime"), prompts=2)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie (already exited, not yet reaped by its dead parent) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, "SIGINT, inherited ignored"],
                         ids=lambda s: getattr(s, "name", s))
def test_stopping_the_app_stops_its_jobs(store, sig):
    """Also when the app starts with SIGINT ignored (inherited across exec, as a script's background job
    gets it): that once made this test hang in the full suite, where pytest's process had it ignored."""
    inherited_ignore = isinstance(sig, str)
    sig = signal.SIGINT if inherited_ignore else sig
    app = subprocess.Popen([sys.executable, "-c", APP, str(store.path), str(free_port())], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                           preexec_fn=_ignore_sigint if inherited_ignore else None)
    job_pid = None
    try:
        job_pid = int(app.stdout.readline())
        assert os.getpgid(job_pid) == job_pid != os.getpgid(app.pid)  # its own group: the signal is not shared
        app.send_signal(sig)
        out, err = app.communicate(timeout=60)
        assert app.returncode == 0 and "stopped" in out and "Traceback" not in err, err
        deadline = time.monotonic() + 30
        while not _gone(job_pid):
            assert time.monotonic() < deadline, f"job {job_pid} outlived the app"
            time.sleep(0.05)
    finally:
        if app.poll() is None:
            app.kill()
        if job_pid is not None and not _gone(job_pid):
            os.killpg(job_pid, signal.SIGKILL)


def test_workbench_ui_exits_cleanly_on_sigterm(store, tmp_path):
    import urllib.error
    import urllib.request

    port = free_port()
    app = subprocess.Popen([sys.executable, "-m", "workbench", "--db", str(store.path), "ui", "--port", str(port),
                            "--models-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, page = time.monotonic() + 60, None
        while page is None and app.poll() is None:
            assert time.monotonic() < deadline, "the app never answered"
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert page is not None and "DPO Workbench" in page
        app.send_signal(signal.SIGTERM)
        _, err = app.communicate(timeout=60)
        assert app.returncode == 0 and "Traceback" not in err, err
    finally:
        if app.poll() is None:
            app.kill()
