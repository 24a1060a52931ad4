"""Reward models of every format through the CLI: register (with refusals), list, score, eval, pairs, export."""

import json

import pytest
import torch
from click.testing import CliRunner

from tests.rm_builders import CONVERSATIONS, make_hf_rm, make_internlm2_rm, make_openrlhf_rm
from tests.workbench.conftest import table_counts, write_jsonl
from cli import load_commands
from workbench.store import Store, queries


def invoke(db, *args):
    return CliRunner().invoke(load_commands(), ["--db", db, "-q", *args])


def bon_file(tmp_path):
    records = [{"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
                "responses": ["It is 4.", "Probably five.", "4", "Four, of course."]},
               {"prompt": [{"role": "user", "content": "Name a colour."}],
                "responses": ["Blue.", "Red, I think.", "Green"]}]
    return write_jsonl(tmp_path / "bon.jsonl", records), records


@torch.no_grad()
def plain_transformers(path, records):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = {}
    for r in records:
        for reply in r["responses"]:
            ids = tokenizer.apply_chat_template(r["prompt"] + [{"role": "assistant", "content": reply}],
                                                return_tensors="pt", return_dict=True)["input_ids"]
            out[reply] = model(input_ids=ids).logits[0, 0].item()
    return out


def stored_scores(db, rm_id):
    with Store(db).connect() as con:
        return dict(queries.fetch_rows(con, "SELECT r.text, s.score FROM scores s JOIN responses r USING (response_id) "
                                            "WHERE s.rm_id = ?", [rm_id]))


def test_hf_register_list_score_eval_pairs_export(tmp_path):
    db = str(tmp_path / "t.duckdb")
    data, records = bon_file(tmp_path)
    assert invoke(db, "import", str(data), "--format", "bon").exit_code == 0
    path = make_hf_rm(tmp_path / "trl-style")
    result = invoke(db, "rm", "register", str(path), "--name", "trl")
    assert result.exit_code == 0, result.output
    assert "(hf, pooled at last-non-pad)" in result.output
    listed = json.loads(invoke(db, "rm", "list", "--json").stdout)
    assert [(m["name"], m["format"], m["pooling"], m["label_index"]) for m in listed] == \
        [("trl", "hf", "last-non-pad", None)]

    result = invoke(db, "score", "--rm", "trl", "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scored"] == 7
    reference = plain_transformers(path, records)
    ours = stored_scores(db, listed[0]["rm_id"])
    assert max(abs(ours[k] - reference[k]) for k in reference) < 1e-4

    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
                                                    "chosen": "It is 4.", "rejected": "Probably five."},
                                                   {"prompt": [{"role": "user", "content": "Name a colour."}],
                                                    "chosen": "Green", "rejected": "Blue."}])
    result = invoke(db, "rm", "eval", "--rm", "trl", "--data", str(pairs), "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    expected = [reference["It is 4."] - reference["Probably five."], reference["Green"] - reference["Blue."]]
    assert evaluation["precision"] == "fp32"
    assert abs(evaluation["mean_margin"] - sum(expected) / 2) < 1e-4
    assert evaluation["accuracy"] == sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in expected) / 2

    assert invoke(db, "pairs", "build", "--rm", "trl").exit_code == 0
    out = tmp_path / "dpo.jsonl"
    result = invoke(db, "export", str(out), "--rm", "trl@1", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "dpo.jsonl.manifest.json").read_text())
    [model] = manifest["reward_models"]
    assert (model["name"], model["format"], model["pooling"]) == ("trl", "hf", "last-non-pad")
    assert len(out.read_text().splitlines()) == 2
    best = {r["prompt"][0]["content"]: max(r["responses"], key=reference.get) for r in records}
    for line in out.read_text().splitlines():
        row = json.loads(line)
        assert row["chosen"][-1]["content"] == best[row["prompt"][0]["content"]]


def test_openrlhf_and_multi_objective_register_and_score(tmp_path):
    db = str(tmp_path / "t.duckdb")
    data, _ = bon_file(tmp_path)
    assert invoke(db, "import", str(data), "--format", "bon").exit_code == 0
    orl = make_openrlhf_rm(tmp_path / "orl")
    assert invoke(db, "rm", "register", str(orl), "--name", "orl").exit_code == 0
    multi = make_hf_rm(tmp_path / "multi", num_labels=2)
    result = invoke(db, "rm", "register", str(multi), "--name", "multi")
    assert result.exit_code == 1 and "--label-index" in result.output and "Traceback" not in result.output
    for k in (0, 1):
        result = invoke(db, "rm", "register", str(multi), "--name", f"multi{k}", "--label-index", str(k))
        assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads(invoke(db, "rm", "list", "--json").stdout)}
    assert (models["orl"]["format"], models["orl"]["pooling"]) == ("openrlhf", "last-token")
    assert models["multi1"]["label_index"] == 1 and models["multi0"]["rm_id"] != models["multi1"]["rm_id"]
    for name in ("orl", "multi0", "multi1"):
        result = invoke(db, "score", "--rm", name, "--precision", "fp32", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["scored"] == 7
    first, second = (stored_scores(db, models[n]["rm_id"]) for n in ("multi0", "multi1"))
    assert first.keys() == second.keys() and any(abs(first[k] - second[k]) > 1e-3 for k in first)


def test_register_refuses_bad_directories_and_leaves_the_store_unchanged(tmp_path, tiny_model_dir):
    db = str(tmp_path / "t.duckdb")
    data, _ = bon_file(tmp_path)
    assert invoke(db, "import", str(data), "--format", "bon").exit_code == 0
    before = table_counts(Store(db))
    (tmp_path / "empty").mkdir()
    bad = make_hf_rm(tmp_path / "bad")
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(config | {"hidden_size": 48}))
    cases = [(tmp_path / "empty", "no config.json"), (tiny_model_dir, "no scoring head"),
             (bad, "do not match its config")]
    for path, message in cases:
        result = invoke(db, "rm", "register", str(path), "--name", "x")
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert table_counts(Store(db)) == before


def test_internlm2_needs_trust_remote_code_on_each_command(tmp_path):
    db = str(tmp_path / "t.duckdb")
    data, _ = bon_file(tmp_path)
    assert invoke(db, "import", str(data), "--format", "bon").exit_code == 0
    path = make_internlm2_rm(tmp_path / "ilm")
    result = invoke(db, "rm", "register", str(path), "--name", "ilm")
    assert result.exit_code == 1 and "--trust-remote-code" in result.output
    assert json.loads(invoke(db, "rm", "list", "--json").stdout) == []
    result = invoke(db, "score", "--rm", str(path))
    assert result.exit_code == 1 and "--trust-remote-code" in result.output
    assert invoke(db, "rm", "register", str(path), "--name", "ilm", "--trust-remote-code").exit_code == 0
    result = invoke(db, "score", "--rm", "ilm")  # registered, but its code still runs only when asked
    assert result.exit_code == 1 and "--trust-remote-code" in result.output
    result = invoke(db, "score", "--rm", "ilm", "--trust-remote-code", "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scored"] == 7
    [model] = json.loads(invoke(db, "rm", "list", "--json").stdout)
    assert (model["format"], model["pooling"]) == ("internlm2", "reward-token")
    code = path / "modeling_tiny_internlm2.py"
    code.write_text(code.read_text() + "\n# edited\n")  # the code is part of the model: a changed model
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}])
    result = invoke(db, "rm", "eval", "--rm", "ilm", "--trust-remote-code", "--data", str(pairs))
    assert result.exit_code == 1 and "changed since ilm@1 was registered" in result.output


def test_changed_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    db = str(tmp_path / "t.duckdb")
    data, _ = bon_file(tmp_path)
    assert invoke(db, "import", str(data), "--format", "bon").exit_code == 0
    path = make_hf_rm(tmp_path / "hf")
    assert invoke(db, "rm", "register", str(path), "--name", "hf").exit_code == 0
    state = load_file(path / "model.safetensors")
    state["score.weight"] = state["score.weight"] * 2
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    result = invoke(db, "score", "--rm", "hf")
    assert result.exit_code == 1 and "changed since hf@1 was registered" in result.output
    assert table_counts(Store(db))["scores"] == 0
    assert invoke(db, "rm", "register", str(path), "--name", "hf").exit_code == 0  # a new version
    assert invoke(db, "score", "--rm", "hf", "--json").exit_code == 0
    assert [m["version"] for m in json.loads(invoke(db, "rm", "list", "--json").stdout)] == [1, 2]


@pytest.mark.parametrize("conversation", CONVERSATIONS[:1])
def test_rm_eval_of_an_unregistered_directory_detects_the_format(tmp_path, conversation):
    db = str(tmp_path / "t.duckdb")
    path = make_openrlhf_rm(tmp_path / "orl")
    prompt, reply = conversation
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": prompt, "chosen": reply, "rejected": reply + " Maybe."}])
    result = invoke(db, "rm", "eval", "--rm", str(path), "--data", str(pairs), "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 1


def test_a_row_registered_before_formats_were_recorded_is_detected(tmp_path):
    """`rm register` used to accept any directory and record no format: such an hf model now scores as hf."""
    from engine.backbone import model_fingerprint

    db = str(tmp_path / "t.duckdb")
    data, records = bon_file(tmp_path)
    assert invoke(db, "import", str(data), "--format", "bon").exit_code == 0
    path = make_hf_rm(tmp_path / "old-hf")
    rm_id = model_fingerprint(path)[:32]
    Store(db).write(lambda con: queries.insert_reward_model(con, rm_id, "old", str(path),
                                                            {"architectures": ["LlamaForSequenceClassification"]}, None))
    [model] = json.loads(invoke(db, "rm", "list", "--json").stdout)
    assert (model["format"], model["pooling"]) == ("hf", "last-non-pad")
    result = invoke(db, "score", "--rm", "old", "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    reference = plain_transformers(path, records)
    assert max(abs(v - reference[k]) for k, v in stored_scores(db, rm_id).items()) < 1e-4


@torch.no_grad()
def test_rewardbench_eval_of_a_label_index_model_at_the_chosen_precision(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workbench.models.rewardbench import read_rewardbench, rewardbench_report

    db = str(tmp_path / "t.duckdb")
    path = make_hf_rm(tmp_path / "multi", num_labels=2)
    assert invoke(db, "rm", "register", str(path), "--name", "help", "--label-index", "1").exit_code == 0
    (prompt, chosen), (_, wrong), (_, short) = CONVERSATIONS[:3]
    rows = [{"prompt": prompt, "chosen": chosen, "rejected": [wrong, short], "subset": "math-prm"},
            {"prompt": prompt, "chosen": short, "rejected": wrong, "subset": "hep-go"}]
    data = write_jsonl(tmp_path / "rb.jsonl", rows)
    result = invoke(db, "rm", "eval", "--rm", "help", "--data", str(data), "--format", "rewardbench",
                    "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def score(reply):  # output 1, as registered
        ids = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": reply}],
                                            return_tensors="pt", return_dict=True)["input_ids"]
        return model(input_ids=ids).logits[0, 1].item()

    outcomes = [float(score(chosen) > max(score(wrong), score(short))), float(score(short) > score(wrong))]
    expected = rewardbench_report(read_rewardbench([data])[0], outcomes)
    assert report["precision"] == "fp32" and report["rm"] == "help@1"
    assert report["subsets"] == expected["subsets"] and report["score"] == expected["score"]
    text = invoke(db, "rm", "eval", "--rm", "help", "--data", str(data), "--format", "rewardbench",
                  "--precision", "fp32")
    assert text.exit_code == 0 and "evaluation of help@1 (fp32) on 2 rows" in text.output


def test_a_combination_of_reward_models_is_listed_as_combined(tmp_path):
    from workbench.curate.combine import combined_labeler
    from workbench.models.reward_models import register_reward_model

    db = str(tmp_path / "t.duckdb")
    store = Store(db)
    models = [register_reward_model(store, make_hf_rm(tmp_path / f"m{i}", seed=i), name=f"m{i}") for i in (0, 1)]
    combined_labeler(store, models, "mean-z")
    listed = {m["name"]: m for m in json.loads(invoke(db, "rm", "list", "--json").stdout)}
    assert listed["mean-z(m0,m1)"]["format"] == "combined" and listed["m0"]["format"] == "hf"
    assert "mean-z(m0,m1)@1" in invoke(db, "rm", "list").output
