"""One run directory (`engine.run_dir.RunDirectory`): both trainers write it, every reader finds it."""

from __future__ import annotations

import json

from engine import run_dir
from engine.export import export_reward_model
from engine.run_dir import RunDirectory
from engine.trainers import train
from tests.engine.test_training import config, make_pairs


def test_both_trainers_write_the_same_records_and_export_copies_none(tiny_dir, tmp_path):
    pairs = make_pairs(16)
    full = train(config(tiny_dir, tmp_path / "full", max_steps=1, freeze_layers=1), pairs[:12], pairs[12:],
                 progress=False)
    head = train(config(tiny_dir, tmp_path / "head", max_steps=1, head_only=True,
                        feature_cache=str(tmp_path / "features")), pairs[:12], pairs[12:], progress=False)
    assert (type(full).__name__, type(head).__name__) == ("TrainResult", "HeadOnlyResult")  # the choice, in engine
    runs = [RunDirectory(tmp_path / name) for name in ("full", "head")]
    for run in runs:
        assert run.is_complete and run.holds_run() and run.looks_like_a_run()
        assert [m["step"] for m in run.read_metrics()] == [1]
        assert run.read_json(run.train_config)["out_dir"] == str(run.path)
        assert run.read_json(run.eval)["n"] == 4
        assert run.read_json(run.complete_marker)["steps"] == 1
        assert run.promised_score_range() == (-5.0, 5.0)
    shared = {run_dir.TRAIN_CONFIG, run_dir.PRECISION, run_dir.METRICS, run_dir.EVAL, run_dir.COMPLETE}
    assert all((run.path / name).exists() for run in runs for name in shared)
    exported = export_reward_model(tmp_path / "head", tmp_path / "exported")
    assert not {p.name for p in exported.iterdir()} & run_dir.RECORDS
    assert (exported / "config.json").exists()


def test_metrics_skip_a_torn_line_and_the_range_is_promised_only_under_the_barrier(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.read_metrics() == [] and not run.holds_run() and run.promised_score_range() is None
    run.start_metrics()
    run.append_metrics({"step": 1, "loss": 0.5})
    with open(run.metrics, "a") as f:
        f.write('{"step": 2, "lo')  # a run being written
    assert run.read_metrics() == [{"step": 1, "loss": 0.5}]
    run.train_config.write_text(json.dumps({"penalty": "l2", "barrier_bound": 5.0}))
    assert run.promised_score_range() is None
    run.train_config.write_text(json.dumps({"penalty": "log_barrier", "barrier_bound": 3.0}))
    assert run.promised_score_range() == (-3.0, 3.0)
