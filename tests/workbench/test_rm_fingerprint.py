"""Scores are never stored under a registered reward model whose weights changed on disk (issue 13, item 9).

`score`, `bon` and `rm eval` check the directory against the fingerprint taken at registration and
refuse, naming `workbench rm register`; the store is unchanged. Registering the new weights (a new
version) makes scoring work again.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from tests.workbench.conftest import table_counts, write_jsonl
from workbench.cli import load_commands
from workbench.errors import WorkbenchError
from workbench.importer import import_files
from workbench.reward_models import register_reward_model
from workbench.scoring import score_responses


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
    reads = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith(".safetensors"):
            reads.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert model.verified_weights() == str(rm_dir)
    assert reads == []  # the cached fingerprint stands while sizes and mtimes do: no weights are hashed
