"""`workbench dpo train`: TRL's DPOTrainer on the store's pairs into a registered policy that plain
transformers loads; refusals; resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tests.rounds.builders import TINY_DPO, make_round_store, scored_pairs
from cli import load_commands


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    store, policy, rm = make_round_store(root)
    scored_pairs(store, policy, rm)
    out = root / "dpo-1"
    argv = ["--db", str(store.path), "-q", "dpo", "train", "--policy", str(policy), "--out", str(out),
            "--rm", rm, *TINY_DPO, "--lr", "1e-2", "--json"]
    result = CliRunner().invoke(load_commands(), argv)
    assert result.exit_code == 0, result.output
    return store, policy, rm, out, argv, json.loads(result.stdout)  # stdout holds the report alone


def test_the_policy_is_registered_and_plain_transformers_loads_it_with_our_greedy_output(trained):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data import SamplingParams
    from engine.generation import Policy, encode_prompt
    from workbench.models.allowed_models import AllowedModels
    from workbench.dpo.policies import lookup_policy, policy_path

    store, policy, _, out, _, summary = trained
    assert summary["name"] == "dpo-1" and summary["steps"] == 2 and summary["pairs"] == 4
    registered = lookup_policy(store, "dpo-1")
    assert registered["path"] == str((out / "policy").resolve()) and registered["base"] == str(policy)
    assert registered["export_hash"] == summary["export_hash"] and registered["hyper_parameters"]["beta"] == 0.1
    assert policy_path(store, "dpo-1") == registered["path"]
    assert AllowedModels().check_model(store, "dpo-1") == "dpo-1"  # the app's Sample tab may load it

    model = AutoModelForCausalLM.from_pretrained(registered["path"])  # plain transformers, merged weights
    base = AutoModelForCausalLM.from_pretrained(policy)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))
    assert "lora" not in " ".join(model.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(registered["path"])
    messages = [{"role": "user", "content": "Question 1: what now?"}]
    ids = torch.tensor([encode_prompt(tokenizer, messages)])
    theirs = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8,
                            pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:]
    ours = next(Policy.load(registered["path"]).generate([messages], 1, SamplingParams(temperature=0,
                                                                                       max_new_tokens=8)))[0]
    expected = tokenizer.decode(theirs, skip_special_tokens=True)
    assert ours.text == expected


def test_a_rerun_reports_the_trained_policy_without_training_again(trained):
    store, *_, argv, _ = trained
    result = CliRunner().invoke(load_commands(), argv[:-1])
    assert result.exit_code == 0 and "trained already" in result.output
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM policies").fetchall()[0][0] == 1


def test_refusals_leave_the_store_unchanged(trained, tmp_path):
    from tests.rm_builders import make_hf_rm

    store, policy, rm, out, _, _ = trained

    def counts():
        with store.connect() as con:
            return [con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("runs", "exports", "policies")]

    before = counts()
    run = lambda *extra: CliRunner().invoke(load_commands(), ["--db", str(store.path), "-q", "dpo", "train", *extra])
    empty = run("--policy", str(policy), "--out", str(tmp_path / "empty"), "--rm", rm, "--min-margin", "1e9")
    assert empty.exit_code == 1 and "no stored pairs match" in empty.output and not (tmp_path / "empty").exists()
    classifier = make_hf_rm(tmp_path / "classifier")
    not_lm = run("--policy", str(classifier), "--out", str(tmp_path / "x"), "--rm", rm)
    assert not_lm.exit_code == 1 and "not a causal language model" in not_lm.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    taken = run("--policy", str(policy), "--out", str(tmp_path / "taken"), "--rm", rm)
    assert taken.exit_code == 1 and "exists" in taken.output
    other = run("--policy", str(policy), "--out", str(out), "--rm", rm, "--beta", "0.3")
    assert other.exit_code == 1 and "holds another DPO run" in other.output
    assert counts() == before


def test_sigkill_mid_training_then_the_rerun_resumes_from_the_last_checkpoint(tmp_path):
    store, policy, rm = make_round_store(tmp_path / "s", prompts=8)
    scored_pairs(store, policy, rm)
    out = tmp_path / "dpo"
    argv = ["--db", str(store.path), "-q", "dpo", "train", "--policy", str(policy), "--out", str(out), "--rm", rm,
            *TINY_DPO[2:], "--max-steps", "6", "--json"]
    child = subprocess.Popen([sys.executable, "-m", "workbench", *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        deadline = time.monotonic() + 900
        while not list(out.glob("checkpoints/checkpoint-*/checkpoint_complete")):
            assert child.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within the deadline"
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL and not (out / "policy").exists()
    result = CliRunner().invoke(load_commands(), argv)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds the report alone
    assert summary["steps"] == 6 and summary["resumed_from_step"] >= 1
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM policies").fetchall()[0][0] == 1
        assert con.execute("SELECT count(*) FROM runs WHERE kind = 'dpo'").fetchall()[0][0] == 1
