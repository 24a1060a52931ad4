"""`rm train` claims its output directory before writing anything (issue 13, items 4 and 6).

A rerun never replaces a model's held-out set, two trainings under one name cannot both proceed,
and a resume that would have to unpickle a checkpoint is refused with the flag to name.
"""

from __future__ import annotations

import pathlib
import threading

import pytest
import torch
from click.testing import CliRunner

import engine.training
from tests.engine.test_training import config
from tests.workbench.conftest import write_jsonl
from cli import load_commands
from workbench.errors import WorkbenchError
from workbench.models.training import train_rm


def _pairs_file(path, offset: int, n: int = 40):
    return write_jsonl(path, [{"prompt": f"Question {offset + i}: what is {i} plus {i}?", "chosen": f"It is {2 * i}.",
                               "rejected": "No idea. " * (1 + i % 3)} for i in range(n)])


def _tree(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _train(tiny_dir, out, data, **kwargs):
    return train_rm(None, config(tiny_dir, out, max_steps=2, checkpoint_every=2), data=[str(data)],
                    eval_fraction=0.25, progress=False, **kwargs)


def test_a_rerun_is_refused_before_it_touches_the_heldout_set(tiny_model_dir, tmp_path):
    out = tmp_path / "rm"
    _train(tiny_model_dir, out, _pairs_file(tmp_path / "a.jsonl", 0))
    before = _tree(out)
    assert before["heldout_pairs.jsonl"]
    other = _pairs_file(tmp_path / "b.jsonl", 1000)
    with pytest.raises(WorkbenchError, match="pass --resume to continue"):
        _train(tiny_model_dir, out, other)
    # a resume with other data would write another held-out set: refused as well
    with pytest.raises(WorkbenchError, match="held-out pairs"):
        _train(tiny_model_dir, out, other, resume=True)
    assert _tree(out) == before


def test_a_directory_with_user_files_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "model"}')
    with pytest.raises(WorkbenchError, match="choose a new --out"):
        _train(tiny_model_dir, out, _pairs_file(tmp_path / "a.jsonl", 0))
    with pytest.raises(WorkbenchError, match="holds no training run to resume"):
        _train(tiny_model_dir, out, _pairs_file(tmp_path / "a.jsonl", 0), resume=True)
    assert _tree(out) == {"config.json": b'{"my": "model"}'}


class _BlockingEngine:
    """Stands in for the engine: the first training waits inside until released; others return."""

    def __init__(self):
        self.inside, self.release, self.calls = threading.Event(), threading.Event(), 0

    def __call__(self, config, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            self.inside.set()
            assert self.release.wait(60)

        class Result:
            def as_dict(self):
                return {"out_dir": config.out_dir}

        return Result()


def test_two_trainings_under_one_name_cannot_both_proceed(tiny_model_dir, tmp_path, monkeypatch):
    engine_stub = _BlockingEngine()
    monkeypatch.setattr(engine.training, "train_reward_model", engine_stub)
    out, data = tmp_path / "rm", _pairs_file(tmp_path / "a.jsonl", 0)
    first = threading.Thread(target=_train, args=(tiny_model_dir, out, data))
    first.start()
    try:
        assert engine_stub.inside.wait(60)
        with pytest.raises(WorkbenchError, match="choose a new --out"):
            _train(tiny_model_dir, out, data)
        with pytest.raises(WorkbenchError, match="is running now"):
            _train(tiny_model_dir, out, data, resume=True)
    finally:
        engine_stub.release.set()
        first.join(60)
    assert engine_stub.calls == 1
    _train(tiny_model_dir, out, data, resume=True)  # once the first is done, resuming is allowed again
    assert engine_stub.calls == 2


def test_a_fresh_run_that_fails_before_its_first_checkpoint_leaves_nothing(tiny_model_dir, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engine.training, "train_reward_model", fail)
    out, data = tmp_path / "rm", _pairs_file(tmp_path / "a.jsonl", 0)
    with pytest.raises(RuntimeError):
        _train(tiny_model_dir, out, data)
    assert not out.exists()  # so the same command can simply be run again
    monkeypatch.undo()
    assert _train(tiny_model_dir, out, data)["steps"] == 2


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_cli_resume_refuses_a_pickled_checkpoint_in_one_line(tiny_model_dir, tmp_path):
    data, out, marker = _pairs_file(tmp_path / "a.jsonl", 0), tmp_path / "rm", tmp_path / "code-ran"
    args = ["--db", str(tmp_path / "t.duckdb"), "-q", "rm", "train", "--data", str(data), "--base",
            str(tiny_model_dir), "--out", str(out), "--recipe", "full", "--max-steps", "2", "--checkpoint-every", "1",
            "--keep-checkpoints", "4", "--pairs-per-step", "8", "--max-length", "64", "--json"]
    runner, cli = CliRunner(), load_commands()
    assert runner.invoke(cli, args).exit_code == 0
    torch.save({"state": _Payload(marker)}, out / "checkpoints" / "step-000002" / "optimizer.pt")
    refused = runner.invoke(cli, [*args, "--resume"])
    assert refused.exit_code != 0 and not marker.exists()
    assert "Traceback" not in refused.output, refused.output
    assert refused.output.strip().splitlines()[-1].startswith("Error: ") and "--allow-pickle" in refused.output
    trusted = runner.invoke(cli, [*args, "--resume", "--allow-pickle"])
    assert marker.exists()  # the flag really unpickles: only for checkpoints the user trusts
    assert trusted.exit_code != 0  # the payload is no optimizer state
