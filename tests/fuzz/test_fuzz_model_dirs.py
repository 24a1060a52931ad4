"""Fuzzing `workbench rm register` with mutated model directories (issue 20).

Hypothesis mutates the config files of a tiny reward model (`tests.rm_builders.make_hf_rm`, or
its OpenRLHF layout): `config.json`, `tokenizer_config.json` (chat templates included) and
`generation_config.json`: keys set to odd JSON values, keys deleted, whole files replaced by
other JSON or by bytes, chat templates assembled from hostile Jinja pieces. Each directory is
registered through the CLI, in-process.

Invariant: the command either registers the model or refuses in one line (`Error: ...`), never
with a traceback or an unexpected exception; a refusal leaves the store unchanged; each case
ends within `CASE_LIMIT_S`, and the process may map at most `MEMORY_LIMIT_BYTES` more than when
the run began (enforced with RLIMIT_AS: an allocation past it fails the case with a MemoryError).

    pytest -m fuzz tests/fuzz/test_fuzz_model_dirs.py                                  # smoke: 20 cases
    WORKBENCH_FUZZ_EXAMPLES=10000 pytest -m fuzz tests/fuzz/test_fuzz_model_dirs.py    # the full run
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.rm_builders import make_hf_rm, make_openrlhf_rm
from cli import load_commands
from workbench.store import Store, queries

EXAMPLES = int(os.environ.get("WORKBENCH_FUZZ_EXAMPLES", "20"))
CASE_LIMIT_S = 60.0
MEMORY_LIMIT_BYTES = 4 << 30  # address space the process may map beyond what it had when the run began
TEMPLATE_TIMEOUT_S = 1.0  # a template that loops must cost little per case

KEYS = {
    "config.json": ["architectures", "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "intermediate_size", "vocab_size", "num_labels", "id2label", "label2id",
                    "pad_token_id", "reward_token_id", "value_head_prefix", "normalize_reward", "mean", "std",
                    "auto_map", "torch_dtype", "dtype", "max_position_embeddings", "rope_scaling", "rope_theta",
                    "head_dim", "tie_word_embeddings", "rms_norm_eps", "hidden_act", "problem_type"],
    "tokenizer_config.json": ["chat_template", "tokenizer_class", "auto_map", "model_max_length", "eos_token",
                              "pad_token", "bos_token", "unk_token", "added_tokens_decoder", "extra_special_tokens",
                              "clean_up_tokenization_spaces", "padding_side", "additional_special_tokens"],
    "generation_config.json": ["eos_token_id", "pad_token_id", "bos_token_id", "max_new_tokens", "temperature",
                               "do_sample", "transformers_version", "top_p"],
}
# Pieces of chat templates: ordinary, broken, sandbox-escaping, endless, memory-hungry.
TEMPLATE_PIECES = [
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}",
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}", "{{ bos_token }}", "{{ eos_token }}",
    "{{ messages[0]['role'] }}", "{{ messages[5]['content'] }}", "{{ raise_exception('no') }}",
    "{{ messages.__class__.__mro__ }}", "{{ ''.__class__.__subclasses__() }}", "{{ cycler.__init__.__globals__ }}",
    "{{ undefined_name.attr }}", "{{ messages | tojson }}", "{{ strftime_now('%Y') }}", "{% set x = 'a' * 100000 %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "{{ ", "{% endfor %}", "{% for %}", "\x00", "{{ 1/0 }}",
    "{{ messages | map(attribute='content') | join('') }}", "{{ (messages | length) * 'x' }}",
    "{{ range(10**9) | list }}", "{% for m in messages %}{{ m.content.upper() }}{% endfor %}",
]
INTERESTING_INTS = [0, -1, 1, 2, 3, 4, 7, 31, 32, 33, 64, 65, 10**6, 2**31, 2**53 + 1, 2**63, -(2**63), 10**30]

json_scalars = (st.none() | st.booleans() | st.sampled_from(INTERESTING_INTS) | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
templates = st.lists(st.sampled_from(TEMPLATE_PIECES), min_size=1, max_size=4).map("".join) | st.text(max_size=60)


@st.composite
def mutations(draw):
    """One edit of one config file: (file, kind, key, value)."""
    name = draw(st.sampled_from(sorted(KEYS)))
    kind = draw(st.sampled_from(["set", "set", "set", "delete", "replace-json", "replace-bytes", "template"]))
    key = draw(st.sampled_from(KEYS[name]) | st.text(min_size=1, max_size=12))
    if kind == "template":
        return "tokenizer_config.json", "set", "chat_template", draw(templates)
    if kind == "replace-json":
        return name, kind, None, draw(json_values)
    if kind == "replace-bytes":
        return name, kind, None, draw(st.binary(max_size=200))
    return name, kind, key, draw(json_values) if kind == "set" else None


def apply(path: Path, mutation) -> None:
    name, kind, key, value = mutation
    file = path / name
    if kind == "replace-bytes":
        file.write_bytes(value)
    elif kind == "replace-json":
        file.write_text(json.dumps(value))
    else:
        try:  # an earlier edit may have replaced the file by bytes or by other JSON
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        if kind == "delete":
            data.pop(key, None)
        else:
            data[key] = value
        file.write_text(json.dumps(data))  # NaN and Infinity as the Python json module writes them


@pytest.fixture(scope="module", autouse=True)
def bounded_memory():
    """The memory bound enforced, not only observed: past it an allocation fails in this process
    (a MemoryError the invariant reports) instead of the kernel's OOM killer taking the machine's
    processes. (A config with num_labels 2**31 once took 13.7 GB before this bound existed.)"""
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    before = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped + MEMORY_LIMIT_BYTES, before[1]))
    yield
    resource.setrlimit(resource.RLIMIT_AS, before)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-bases")
    hf = make_hf_rm(root / "hf")
    (hf / "generation_config.json").write_text(json.dumps({"eos_token_id": 2, "pad_token_id": 2}))
    return {"hf": hf, "openrlhf": make_openrlhf_rm(root / "openrlhf")}


def copy_model(base: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for file in base.iterdir():
        if file.suffix == ".safetensors":
            os.link(file, target / file.name)  # the weights are never mutated: share them
        else:
            shutil.copy(file, target / file.name)
    return target


def registered(store: Store) -> int:
    with store.connect() as con:
        return len(queries.list_reward_models(con))


@pytest.mark.fuzz
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: a case costs ~1 s, shrinking one took >5 min
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(base=st.sampled_from(["hf", "openrlhf"]), edits=st.lists(mutations(), min_size=1, max_size=3),
       trust=st.booleans())
def test_register_a_mutated_model_directory(bases, tmp_path_factory, monkeypatch, base, edits, trust):
    monkeypatch.setattr("engine.model_files.TEMPLATE_TIMEOUT_S", TEMPLATE_TIMEOUT_S)
    root = tmp_path_factory.mktemp("case")
    store = Store(root / "fuzz.duckdb", timeout=30)
    path = copy_model(bases[base], root / "model")
    for edit in edits:
        apply(path, edit)
    check_registration(store, path, trust)
    shutil.rmtree(root, ignore_errors=True)


def check_registration(store: Store, path: Path, trust: bool) -> None:
    """The invariant, for one directory (also used by the regression tests of what the fuzzer found)."""
    before = registered(store)
    started = time.monotonic()
    args = ["--db", str(store.path), "-q", "rm", "register", str(path), "--name", "fz"]
    result = CliRunner().invoke(load_commands(), args + (["--trust-remote-code"] if trust else []))
    elapsed = time.monotonic() - started
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 0:
        assert registered(store) in (before, before + 1)
    else:
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert registered(store) == before
    assert elapsed < CASE_LIMIT_S, f"took {elapsed:.1f} s"
