"""The app, the CLI and two browser sessions on one store: nothing fails on the file lock and
nothing is lost.

DuckDB lets one process open a store file at a time. The app opens it only per request, the CLI
runs as separate processes here (as a person would run it beside the app), and two API clients
stand for two browser tabs doing different things: one browsing and changing filters, one exporting.
"""

import json
import subprocess
import sys
import threading

from gradio_client import Client

from tests.ui.conftest import NO_FILTER, running_app
from tests.ui.data import make_store
from workbench.curate.curation import PairIndex, curation_preview
from workbench.exports.export import count_pairs
from workbench.curate.pair_filter import PairFilter
from workbench.curate.stats import store_stats

FILES, PAIRS_PER_FILE = 2, 40


def _pairs_file(path, index):
    path.write_text("".join(json.dumps({"prompt": f"cli import {index} question {i}", "chosen": f"good {i}",
                                        "rejected": f"bad {i}"}) + "\n" for i in range(PAIRS_PER_FILE)))
    return path


def test_cli_and_two_sessions_share_the_store(tmp_path):
    store = make_store(tmp_path, prompts=10)
    before = store_stats(store)
    files = [_pairs_file(tmp_path / f"cli-{i}.jsonl", i) for i in range(FILES)]
    errors, done = [], {"previews": 0, "exports": []}
    stop, progressed = threading.Event(), threading.Condition()

    with running_app(store) as (demo, url):
        def browsing_tab():
            client = Client(url, verbose=False)
            margin = 0
            while not stop.is_set():
                try:
                    client.predict("question", "(any)", "(any)", "newest", 1, api_name="/browse_page")
                    filters = NO_FILTER.copy()
                    filters[4] = str(margin % 3)
                    client.predict(*filters, api_name="/curate_preview")
                    with progressed:
                        done["previews"] += 1
                        progressed.notify_all()
                    margin += 1
                except Exception as error:  # noqa: BLE001 - any failure is what this test looks for
                    errors.append(error)

        def exporting_tab():
            client = Client(url, verbose=False)
            while not stop.is_set():
                try:
                    name = f"concurrent-{len(done['exports'])}"
                    _, _, manifest = client.predict(name, "jsonl", "trl", False, True, *NO_FILTER, api_name="/export")
                    with progressed:
                        done["exports"].append((demo.workbench.export_dir / f"{name}.jsonl",
                                                json.loads(manifest["value"])["rows"]))
                        progressed.notify_all()
                except Exception as error:  # noqa: BLE001
                    errors.append(error)

        tabs = [threading.Thread(target=browsing_tab), threading.Thread(target=exporting_tab)]
        for tab in tabs:
            tab.start()
        def both_sessions_passed(previews: int, exports: int) -> bool:
            """Wait (60 s at most) until each session has done more than this; False if one failed."""
            with progressed:
                return progressed.wait_for(lambda: errors or (done["previews"] > previews
                                                              and len(done["exports"]) > exports), timeout=60) \
                    and not errors

        try:
            assert both_sessions_passed(0, 0), errors[:3]  # both sessions are busy before the CLI starts
            at_start = done["previews"], len(done["exports"])
            for path in files:
                cli = subprocess.run([sys.executable, "-m", "workbench", "--db", str(store.path), "--timeout", "60",
                                      "-q", "import", str(path), "--source", "cli"],
                                     capture_output=True, text=True, timeout=180)
                assert cli.returncode == 0, cli.stderr
            cli = subprocess.run([sys.executable, "-m", "workbench", "--db", str(store.path), "stats", "--json"],
                                 capture_output=True, text=True, timeout=180)
            assert cli.returncode == 0, cli.stderr
            assert json.loads(cli.stdout)["pairs"] == before["pairs"] + FILES * PAIRS_PER_FILE
            assert both_sessions_passed(*at_start), errors[:3]  # the sessions kept working through the CLI's writes
        finally:
            stop.set()
            for tab in tabs:
                tab.join(timeout=60)

    assert not errors, errors[:3]
    for path, rows in done["exports"]:
        assert len(path.read_text().splitlines()) == rows
    after = store_stats(store)
    assert after["pairs"] == before["pairs"] + FILES * PAIRS_PER_FILE
    assert after["prompts"] == before["prompts"] + FILES * PAIRS_PER_FILE
    assert after["exports"] == before["exports"] + len(done["exports"])  # every export was recorded
    assert curation_preview(store, PairIndex(store), PairFilter()).total == count_pairs(store, PairFilter())
