"""Every phase of `rm train`, `rm eval` and `score` reports a bar with a count, as the app's job log reads it."""

import json
import re

from click.testing import CliRunner

from tests.workbench.conftest import write_jsonl
from cli import load_commands
from workbench.runtime.jobs import collapse_log, last_progress

RECORDS = [{"prompt": f"What is {i} + {i}?", "chosen": f"It is {2 * i}.", "rejected": "No idea, sorry. " * 3}
           for i in range(40)]


def _bars(stderr: str) -> dict[str, tuple[int, int]]:
    """Final (done, total) of each bar, by description, from a log as the app's job view reads it."""
    bars = {}
    for line in collapse_log(stderr, lines=10_000).splitlines():
        found = last_progress(line)
        if found:
            bars[found[2]] = found[:2]
    return bars


def _run(runner, args):
    result = runner.invoke(load_commands(), args)
    assert result.exit_code == 0, result.output
    return result


def test_each_phase_reports_its_count(tmp_path, tiny_model_dir):
    db = str(tmp_path / "t.duckdb")
    data = str(write_jsonl(tmp_path / "p.jsonl", RECORDS))
    runner = CliRunner()
    common = ["--base", str(tiny_model_dir), "--max-length", "160", "--pairs-per-step", "8", "--eval-fraction", "0.25",
              "--feature-cache", str(tmp_path / "cache"), "--json"]
    # the default recipe: frozen backbone, features cached, head probed then trained
    result = _run(runner, ["--db", db, "rm", "train", "--data", data, "--out", str(tmp_path / "a"), *common])
    summary = json.loads(result.stdout)
    n_train, n_held = summary["train_pairs"], summary["heldout_pairs"]
    bars = _bars(result.stderr)
    assert bars[f"tokenizing {n_train} pairs"] == (1, 1)
    assert bars["backbone features (train)"] == (2 * n_train, 2 * n_train)
    assert bars["head probe: fitting"] == (1, 1)
    assert bars["epoch 1/1"] == (n_train // 8, n_train // 8)
    assert bars["held-out features"] == (2 * n_held, 2 * n_held)
    assert bars[f"evaluating on {n_held} held-out pairs"] == (1, 1)
    assert any(name.startswith("saving the model") for name in bars)

    # the full trainer: tokenizing, the probe's backbone pass, each epoch, evaluation, saving
    # (a cache of its own: the first run's cache holds every feature its probe needs, and it would show no pass)
    result = _run(runner, ["--db", db, "rm", "train", "--data", data, "--out", str(tmp_path / "b"), "--recipe", "full",
                           "--epochs", "2", "--lr", "1e-3", *common, "--feature-cache", str(tmp_path / "cache-b")])
    bars = _bars(result.stderr)
    assert bars[f"tokenizing {n_train} pairs"] == (1, 1)
    assert bars["head probe: backbone features"] == (2 * n_train, 2 * n_train)
    steps = 2 * (n_train // 8)
    assert bars["epoch 2/2"] == (steps, steps) and "epoch 1/2" in result.stderr
    assert bars[f"evaluating on {n_held} held-out pairs"] == (2 * n_held, 2 * n_held)
    assert any(name.startswith("saving the model") for name in bars)

    result = _run(runner, ["--db", db, "rm", "eval", "--rm", str(tmp_path / "b"), "--data",
                           str(tmp_path / "b" / "heldout_pairs.jsonl"), "--json"])
    assert (2 * n_held, 2 * n_held) in [v for k, v in _bars(result.stderr).items() if k.startswith("evaluating")]
    _run(runner, ["--db", db, "import", data])
    result = _run(runner, ["--db", db, "score", "--rm", str(tmp_path / "a").rsplit("/", 1)[-1], "--json"])
    assert any(re.match(r"scoring with", k) and v == (80, 80) for k, v in _bars(result.stderr).items())
