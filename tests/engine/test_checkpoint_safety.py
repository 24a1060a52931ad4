"""Resuming never unpickles unless asked, and tolerates a torn metrics line (issue 13, items 6, 7c)."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from engine.checkpoint import latest_checkpoint
from engine.errors import EngineError
from engine.training import _truncate_metrics, train_reward_model
from tests.engine.test_training import config, make_pairs


class _Payload:
    """Pickled, it runs `Path(marker).touch()` when loaded with weights_only=False."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture
def trained(tiny_dir, tmp_path):
    out = tmp_path / "rm"
    train_reward_model(config(tiny_dir, out, max_steps=2, checkpoint_every=2), make_pairs(24), progress=False)
    return out


def test_every_checkpoint_file_loads_without_unpickling(trained):
    checkpoint = latest_checkpoint(trained)
    files = sorted(p.name for p in checkpoint.glob("*.pt"))
    assert files == ["optimizer.pt", "rng-rank0.pt", "scheduler.pt", "trainable.pt"]
    for name in files:
        torch.load(checkpoint / name, map_location="cpu", weights_only=True)  # raises on any pickled object
    assert json.loads((checkpoint / "state.json").read_text())["format"] == 2


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng-rank0.pt"])
def test_resume_refuses_a_checkpoint_that_needs_unpickling(tiny_dir, trained, tmp_path, name):
    marker = tmp_path / "code-ran"
    torch.save({"state": _Payload(marker)}, latest_checkpoint(trained) / name)
    with pytest.raises(EngineError, match="--allow-pickle") as refused:
        train_reward_model(config(tiny_dir, trained, max_steps=2, checkpoint_every=2), make_pairs(24),
                           resume=True, progress=False)
    assert "\n" not in str(refused.value)
    assert not marker.exists()


def test_allow_pickle_still_resumes_a_good_checkpoint(tiny_dir, tmp_path):
    out = tmp_path / "rm"
    settings = dict(max_steps=4, checkpoint_every=2, keep_checkpoints=4)
    train_reward_model(config(tiny_dir, out, **settings), make_pairs(40), progress=False)
    import shutil

    shutil.rmtree(out / "checkpoints" / "step-000004")
    result = train_reward_model(config(tiny_dir, out, **settings), make_pairs(40), resume=True,
                                allow_pickle=True, progress=False)
    assert result.resumed_from == 2 and result.steps == 4


def test_resume_drops_a_torn_last_metrics_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 0.5}) for s in (1, 2, 3)]
    path.write_text("\n".join(lines) + "\n" + '{"step": 4, "lo')  # killed mid-write
    _truncate_metrics(path, 2)
    assert path.read_text() == lines[0] + "\n" + lines[1] + "\n"
    path.write_text("\n".join(lines) + "\n" + '{"step": 4, "lo')
    _truncate_metrics(path, 4)
    assert path.read_text() == "\n".join(lines) + "\n"


def test_a_corrupt_metrics_line_in_the_middle_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(EngineError, match=r"metrics.jsonl:2"):
        _truncate_metrics(path, 2)
