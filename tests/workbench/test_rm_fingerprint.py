"""Scores are never stored under a registered reward model whose weights changed on disk (issue 13, item 9).

`score`, `bon` and `rm eval` check the directory against the fingerprint taken at registration and
refuse, naming `workbench rm register`; the store is unchanged. Registering the new weights (a new
version) makes scoring work again.
"""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from tests.workbench.conftest import table_counts, write_jsonl
from cli import load_commands
from workbench.errors import WorkbenchError
from workbench.ingest.importer import import_files
from workbench.models.reward_models import register_reward_model
from workbench.generate.scoring import score_responses


@pytest.fixture
def registered(store, tmp_path, tiny_model_dir):
    from engine.reward_model import RewardModel

    records = [{"prompt": f"question {i}", "responses": [f"answer {i}", f"other {i}"]} for i in range(3)]
    import_files(store, [write_jsonl(tmp_path / "r.jsonl", records)], source="s", progress=False)
    rm_dir = RewardModel.from_base(tiny_model_dir).save(tmp_path / "rm")
    return register_reward_model(store, rm_dir, name="tiny"), rm_dir


def _retrain_in_place(rm_dir):
    """What a second `rm train` into the same directory (or a copy over it) does to the weights."""
    [weights] = rm_dir.glob("*.safetensors")
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, weights, metadata={"format": "pt"})


def test_scoring_refuses_changed_weights_and_names_rm_register(store, registered):
    model, rm_dir = registered
    _retrain_in_place(rm_dir)
    before = table_counts(store)
    with pytest.raises(WorkbenchError, match=r"changed since tiny@1 was registered.*`workbench rm register .* --name tiny`"):
        score_responses(store, "tiny", progress=False)
    assert table_counts(store) == before
    with pytest.raises(WorkbenchError, match="workbench rm register"):
        model.verified_weights()


@pytest.mark.parametrize("command", [["score", "--rm", "tiny"], ["rm", "eval", "--rm", "tiny", "--from-store"],
                                     ["bon", "--policy", "POLICY", "--rm", "tiny", "--n", "2"]])
def test_every_command_that_loads_a_registered_model_refuses(store, registered, tiny_model_dir, command):
    _, rm_dir = registered
    _retrain_in_place(rm_dir)
    before = table_counts(store)
    args = [str(tiny_model_dir) if a == "POLICY" else a for a in command]
    result = CliRunner().invoke(load_commands(), ["--db", str(store.path), "-q", *args])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ") and "rm register" in result.output, \
        result.output
    assert table_counts(store) == before


def test_registering_the_new_weights_makes_scoring_work_again(store, registered):
    _, rm_dir = registered
    _retrain_in_place(rm_dir)
    result = CliRunner().invoke(load_commands(), ["--db", str(store.path), "-q", "rm", "register", str(rm_dir),
                                                  "--name", "tiny"])
    assert result.exit_code == 0, result.output
    assert score_responses(store, "tiny", progress=False).scored == 6  # tiny@2, the new weights


def test_the_check_is_cheap_when_nothing_changed(registered, monkeypatch):
    model, rm_dir = registered
    monkeypatch.setattr("engine.backbone._RACY_NS", 0)  # the weights were just written: see the racy test below
    model.verified_weights()  # hashes once and caches
    reads = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith(".safetensors"):
            reads.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert model.verified_weights() == str(rm_dir)
    assert reads == []  # the cached fingerprint stands while sizes and mtimes do: no weights are hashed


def _edit_keeping_size_and_mtime(weights):
    """An edit that `stat` size and mtime cannot see: same bytes count, mtime set back with utime."""
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor: same size, other weights
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    return after


@pytest.mark.parametrize("replace", [False, True], ids=["in-place", "replaced-by-a-copy"])
def test_an_edit_that_keeps_size_and_mtime_is_detected(registered, monkeypatch, tmp_path, replace):
    """The cache is keyed on inode and ctime as well: neither can be set back by a user."""
    model, rm_dir = registered
    monkeypatch.setattr("engine.backbone._RACY_NS", 0, raising=False)  # cache even just-written files
    assert model.verified_weights() == str(rm_dir)  # the fingerprint is cached now
    [weights] = rm_dir.glob("*.safetensors")
    if replace:  # another file (another inode) with the same size and mtime moved over the weights
        copy = tmp_path / "copy.safetensors"
        copy.write_bytes(weights.read_bytes())
        _edit_keeping_size_and_mtime(copy)
        os.replace(copy, weights)
    else:
        time.sleep(0.02)  # past the kernel's timestamp tick: the write moves ctime
        _edit_keeping_size_and_mtime(weights)
    with pytest.raises(WorkbenchError, match="changed since tiny@1 was registered"):
        model.verified_weights()


def test_a_hash_of_files_changed_just_before_is_not_cached(tmp_path):
    """Racy timestamps: a file changed within the filesystem's timestamp tick of the hash could
    change again unseen, so that hash is recomputed next time rather than trusted."""
    from engine.backbone import fingerprint_cache_path, model_fingerprint

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    model_fingerprint(model)
    assert not fingerprint_cache_path(model).exists()
