"""A TRL-style reward model on the real SmolLM2 (a sequence-classification head, as RewardTrainer saves it):
register, Best-of-N with it, pairs, export; the scores equal a plain transformers loop at fp32."""

import json

import pytest
import torch

from tests.workbench.conftest import write_jsonl
from tests.workbench.test_rm_formats_cli import invoke, stored_scores


@pytest.fixture
def smollm2_trl_rm(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from engine.backbone import resolve_model_path

    base = resolve_model_path("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    with torch.no_grad():
        model.score.weight.normal_(0.0, 0.05)  # scores spread enough to rank the replies
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id  # what TRL's RewardTrainer sets before saving
    path = tmp_path / "smollm2-trl-rm"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_smollm2_trl_rm_bon_pairs_export(tmp_path, smollm2_trl_rm, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    db = str(tmp_path / "t.duckdb")
    prompts = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "No."},
        {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Rome."}])
    assert invoke(db, "import", str(prompts)).exit_code == 0
    result = invoke(db, "rm", "register", str(smollm2_trl_rm), "--name", "smol-trl")
    assert result.exit_code == 0 and "(hf, pooled at last-non-pad)" in result.output, result.output
    result = invoke(db, "bon", "--policy", "smollm2", "--rm", "smol-trl", "--n", "4", "--max-new-tokens", "12",
                    "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    bon = json.loads(result.stdout)
    assert bon["scoring"]["scored"] == 8 and bon["picks"] == 2

    [model] = json.loads(invoke(db, "rm", "list", "--json").stdout)
    ours = stored_scores(db, model["rm_id"])
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workbench.store import Store, queries

    tokenizer = AutoTokenizer.from_pretrained(smollm2_trl_rm)
    reference_model = AutoModelForSequenceClassification.from_pretrained(smollm2_trl_rm).eval()
    with Store(db).connect() as con:
        rows = queries.fetch_rows(con, "SELECT p.messages, r.text FROM scores s JOIN responses r USING (response_id) "
                                       "JOIN prompts p USING (prompt_id)")
    assert len(rows) == 8
    with torch.no_grad():
        for messages, text in rows:
            ids = tokenizer.apply_chat_template(json.loads(messages) + [{"role": "assistant", "content": text}],
                                                return_tensors="pt", return_dict=True)["input_ids"]
            assert abs(reference_model(input_ids=ids).logits[0, 0].item() - ours[text]) < 1e-4

    assert invoke(db, "pairs", "build", "--rm", "smol-trl").exit_code == 0
    out = tmp_path / "dpo.jsonl"
    assert invoke(db, "export", str(out), "--rm", "smol-trl").exit_code == 0
    assert len(out.read_text().splitlines()) == 2
    manifest = json.loads((tmp_path / "dpo.jsonl.manifest.json").read_text())
    assert [(m["name"], m["format"], m["pooling"]) for m in manifest["reward_models"]] == \
        [("smol-trl", "hf", "last-non-pad")]
