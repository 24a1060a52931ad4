"""Hostile and unusual reward-model directories at `rm register` / `score` (issue 20, items 6, 7, 10, 13, 14).

Each is either registered and scores, or refused in one line naming the problem, with the store
unchanged; none gives a traceback, a prompt on stdin or a hang.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from click.testing import CliRunner

from tests.rm_builders import make_hf_rm, make_openrlhf_rm
from tests.workbench.conftest import table_counts, write_jsonl
from cli import load_commands
from workbench.store import Store


def invoke(db, *args):
    return CliRunner().invoke(load_commands(), ["--db", str(db), "-q", *args])


@pytest.fixture
def db(tmp_path):
    db = tmp_path / "t.duckdb"
    records = [{"prompt": [{"role": "user", "content": "What is 2 + 2?"}], "responses": ["It is 4.", "Five."]}]
    assert invoke(db, "import", str(write_jsonl(tmp_path / "bon.jsonl", records)), "--format", "bon").exit_code == 0
    return db


def assert_refused(db, path, *fragments, args=()):
    before = table_counts(Store(db))
    result = invoke(db, "rm", "register", str(path), "--name", "x", *args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output and all(f in result.output for f in fragments), result.output
    assert table_counts(Store(db)) == before
    return result.output


def set_config(path, **values):
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | values))


# -- item 6: OpenRLHF normalisation values that would make every score NaN or infinite --------------

@pytest.mark.parametrize("key, value", [("std", float("nan")), ("std", float("inf")), ("std", 5e-324),
                                        ("std", 0.0), ("mean", float("-inf")), ("mean", float("nan")),
                                        ("std", "wide"), ("mean", [1])])
def test_non_finite_or_denormal_normalisation_is_refused(db, tmp_path, key, value):
    path = make_openrlhf_rm(tmp_path / "orl")
    set_config(path, **{key: value})  # json writes NaN / Infinity literals, as Python's json reads them
    assert_refused(db, path, f"normalize_reward with {key}=", "config.json")


# -- item 7: a legacy (non-zip) pytorch_model.bin ------------------------------------------------------

def _as_bin(path, legacy: bool):
    from safetensors.torch import load_file

    state = load_file(path / "model.safetensors")
    (path / "model.safetensors").unlink()
    torch.save(state, path / "pytorch_model.bin", _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_a_pytorch_model_bin_registers_and_scores(db, tmp_path, legacy):
    path = _as_bin(make_hf_rm(tmp_path / "hf"), legacy)
    result = invoke(db, "rm", "register", str(path), "--name", "bin")
    assert result.exit_code == 0, result.output
    result = invoke(db, "score", "--rm", "bin", "--json")
    assert result.exit_code == 0 and table_counts(Store(db))["scores"] == 2, result.output


def test_an_openrlhf_legacy_bin_scores(db, tmp_path):
    path = _as_bin(make_openrlhf_rm(tmp_path / "orl"), legacy=True)
    assert invoke(db, "rm", "register", str(path), "--name", "orl").exit_code == 0
    result = invoke(db, "score", "--rm", "orl", "--json")
    assert result.exit_code == 0 and table_counts(Store(db))["scores"] == 2, result.output


def test_a_bin_holding_pickled_objects_is_refused(db, tmp_path):
    path = _as_bin(make_hf_rm(tmp_path / "hf"), legacy=False)
    state = torch.load(path / "pytorch_model.bin", weights_only=True)
    torch.save({**state, "extra": pytest.approx(1)}, path / "pytorch_model.bin")  # an arbitrary object
    assert_refused(db, path, "pytorch_model.bin holds pickled Python objects")


# -- item 10 and 13: remote code ---------------------------------------------------------------------

CUSTOM_MODELING = '''
import torch
from transformers import LlamaConfig, LlamaModel, LlamaPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


class TinyCustomConfig(LlamaConfig):
    model_type = "tiny_custom"


class TinyCustomForSequenceClassification(LlamaPreTrainedModel):
    config_class = TinyCustomConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.score = torch.nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        logits = self.score(self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)
        return SequenceClassifierOutputWithPast(logits=logits[:, -1])
'''


def make_custom_code_rm(path):
    """A stock-shaped classifier whose config and model classes are the directory's own code."""
    path = make_hf_rm(path)
    (path / "modeling_tiny_custom.py").write_text(CUSTOM_MODELING)
    set_config(path, model_type="tiny_custom", architectures=["TinyCustomForSequenceClassification"],
               auto_map={"AutoConfig": "modeling_tiny_custom.TinyCustomConfig",
                         "AutoModelForSequenceClassification": "modeling_tiny_custom.TinyCustomForSequenceClassification"})
    return path


def test_a_custom_code_classifier_registers_and_scores_with_the_flag(db, tmp_path):
    path = make_custom_code_rm(tmp_path / "custom")
    assert_refused(db, path, "--trust-remote-code")  # without the flag: one line, no prompt
    result = invoke(db, "rm", "register", str(path), "--name", "custom", "--trust-remote-code")
    assert result.exit_code == 0, result.output
    result = invoke(db, "score", "--rm", "custom", "--trust-remote-code", "--json")
    assert result.exit_code == 0 and table_counts(Store(db))["scores"] == 2, result.output


def test_tokenizer_remote_code_without_the_flag_is_one_line(db, tmp_path):
    path = make_hf_rm(tmp_path / "hf")
    (path / "tokenization_tiny.py").write_text("from transformers import PreTrainedTokenizerFast\n\n\n"
                                               "class TinyTokenizer(PreTrainedTokenizerFast):\n    pass\n")
    config = json.loads((path / "tokenizer_config.json").read_text())
    config |= {"auto_map": {"AutoTokenizer": [None, "tokenization_tiny.TinyTokenizer"]},
               "tokenizer_class": "TinyTokenizer"}
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    assert_refused(db, path, "tokenizer is the directory's own Python code", "--trust-remote-code")


# -- item 13: a tokenizer file that never ends; weights-only refusals ----------------------------------

def test_a_tokenizer_json_linked_to_dev_zero_is_refused_at_once(db, tmp_path):
    path = make_hf_rm(tmp_path / "hf")
    (path / "tokenizer.json").unlink()
    (path / "tokenizer.json").symlink_to("/dev/zero")
    started = time.monotonic()
    assert_refused(db, path, "tokenizer.json is not a regular file")
    assert time.monotonic() - started < 30


def test_an_oversized_tokenizer_json_is_refused_without_reading_it(db, tmp_path):
    path = make_hf_rm(tmp_path / "hf")
    with open(path / "tokenizer.json", "r+b") as f:
        f.truncate(300 << 20)  # sparse: 300 MB that take no disk
    assert_refused(db, path, "tokenizer.json is 314,572,800 bytes")


# -- items 13 and 14: chat templates that escape the sandbox or never end ------------------------------

def _with_template(tmp_path, template):
    return make_hf_rm(tmp_path / "tpl", chat_template=template)


def test_a_template_that_breaks_the_sandbox_is_refused(db, tmp_path):
    path = _with_template(tmp_path, "{{ messages.__class__.__mro__[1].__subclasses__() }}")
    assert_refused(db, path, "chat template fails to render", "SecurityError")


def test_a_template_that_loops_10_to_the_10_is_refused_in_time(db, tmp_path, monkeypatch):
    monkeypatch.setattr("engine.model_files.TEMPLATE_TIMEOUT_S", 2.0)
    path = _with_template(tmp_path, "{% for i in range(100000) %}{% for j in range(100000) %}"
                                    "{{ '' }}{% endfor %}{% endfor %}{{ messages[0]['content'] }}")
    started = time.monotonic()
    assert_refused(db, path, "chat template did not finish rendering a short conversation within 2 s")
    assert time.monotonic() - started < 60


def test_a_template_that_eats_memory_is_refused(db, tmp_path):
    path = _with_template(tmp_path, "{% set s = 'x' * 100000 %}{% set t = s * 100000 %}{{ t | length }}")
    assert_refused(db, path, "chat template")


def test_a_template_refusing_a_system_turn_still_registers(db, tmp_path):
    template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
                "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}")
    result = invoke(db, "rm", "register", str(_with_template(tmp_path, template)), "--name", "nosys")
    assert result.exit_code == 0, result.output


def _children() -> set[str]:
    tasks = f"/proc/{os.getpid()}/task"
    return {pid for tid in os.listdir(tasks) for pid in open(f"{tasks}/{tid}/children").read().split()}


def test_the_template_child_is_killed_and_reaped(tmp_path):
    from engine.errors import EngineError
    from engine.model_files import check_chat_template, load_tokenizer

    path = _with_template(tmp_path, "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    before = _children()
    with pytest.raises(EngineError, match="within 0.5 s"):
        check_chat_template(load_tokenizer(path), path, timeout_s=0.5)
    assert _children() == before  # no child left running, none left as a zombie


# -- found by tests/fuzz/test_fuzz_model_dirs.py: configs of the wrong shape --------------------------

@pytest.mark.parametrize("text, reason", [
    ("null", "holds a JSON NoneType, not an object"),  # was: AttributeError traceback
    ("[1, 2]", "holds a JSON list, not an object"),
    ('{"architectures": 5}', "'architectures' must be a list of class names"),
    ('{"architectures": ["LlamaForSequenceClassification"], "auto_map": [1]}', "'auto_map' must be an object"),
    (b"\x80\x81", "not valid JSON"),
])
def test_a_config_of_the_wrong_shape_is_one_line(db, tmp_path, text, reason):
    path = make_hf_rm(tmp_path / "hf")
    (path / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    assert_refused(db, path, reason)


@pytest.mark.parametrize("token", ["x", 1.5, -1, 10**9, float("nan")])
def test_a_reward_token_id_that_is_not_a_token_id_is_refused(db, tmp_path, token):
    path = make_hf_rm(tmp_path / "hf")
    set_config(path, reward_token_id=token)  # makes it a workbench-format model
    assert_refused(db, path, "reward_token_id must be a token id")


def test_a_config_claiming_a_million_layers_is_refused_without_building_them(db, tmp_path):
    path = make_hf_rm(tmp_path / "hf")
    set_config(path, num_hidden_layers=10**6)
    started = time.monotonic()
    assert_refused(db, path, "num_hidden_layers=1000000 but the weights hold only")
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("values, reason", [
    ({"num_labels": 2**31}, "num_labels must be an integer from 1 to 1024"),  # found by the fuzzer: an OOM
    ({"num_labels": 0}, "num_labels must be an integer"),
    ({"id2label": {str(i): f"L{i}" for i in range(2000)}}, "'id2label' must be an object of at most 1024"),
])
def test_label_counts_that_would_exhaust_memory_are_refused_before_transformers_reads_them(db, tmp_path, values,
                                                                                           reason):
    path = make_hf_rm(tmp_path / "hf")
    set_config(path, **values)
    assert_refused(db, path, reason)


def test_an_oversized_config_json_is_refused_without_reading_it(db, tmp_path):
    path = make_hf_rm(tmp_path / "hf")
    with open(path / "config.json", "r+b") as f:
        f.truncate(8 << 20)  # sparse: 8 MB of NULs after the JSON
    assert_refused(db, path, "config.json is 8,388,608 bytes")
