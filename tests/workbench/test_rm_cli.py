"""`workbench rm train/eval/export/list` and `workbench score` through the CLI, then the store."""

import json

from click.testing import CliRunner

from tests.workbench.conftest import write_jsonl
from cli import load_commands
from workbench.store import Store, queries


def test_train_from_store_register_eval_score_export(tmp_path, tiny_model_dir):
    db = str(tmp_path / "t.duckdb")
    records = [{"prompt": f"What is {i} + {i}?", "chosen": f"It is {2 * i}.", "rejected": "No idea, sorry. " * 3}
               for i in range(40)]
    runner = CliRunner()
    cli = load_commands()
    assert runner.invoke(cli, ["--db", db, "-q", "import", str(write_jsonl(tmp_path / "p.jsonl", records))]).exit_code == 0
    out = tmp_path / "rm"
    result = runner.invoke(cli, ["--db", db, "-q", "rm", "train", "--from-store", "--label", "human",
                                 "--base", str(tiny_model_dir), "--out", str(out), "--name", "mini",
                                 "--recipe", "full", "--max-steps", "2", "--pairs-per-step", "8", "--lr", "1e-3",
                                 "--max-length", "64", "--eval-fraction", "0.25", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["reward_model"]["name"] == "mini" and summary["steps"] == 2
    assert summary["train_pairs"] + summary["heldout_pairs"] == 40 and summary["heldout_pairs"] > 0
    heldout = out / "heldout_pairs.jsonl"
    assert len(heldout.read_text().splitlines()) == summary["heldout_pairs"]

    store = Store(db)
    with store.connect() as con:
        run = queries.get_run(con, summary["run_id"])
        models = queries.list_reward_models(con)
    assert run["kind"] == "training" and run["status"] == "completed"
    assert [m.name for m in models] == ["mini"]

    result = runner.invoke(cli, ["--db", db, "-q", "rm", "eval", "--rm", "mini", "--data", str(heldout), "--json"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["n"] == summary["heldout_pairs"]
    for key in ("accuracy", "mean_margin", "length_baseline"):
        assert isinstance(evaluation[key], float)

    result = runner.invoke(cli, ["--db", db, "-q", "score", "--rm", "mini", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scored"] == 80
    again = json.loads(runner.invoke(cli, ["--db", db, "-q", "score", "--rm", "mini", "--json"]).stdout)
    assert (again["scored"], again["already_scored"]) == (0, 80)

    result = runner.invoke(cli, ["--db", db, "rm", "export", "--rm", str(out / "checkpoints" / "step-000002"),
                                 "--out", str(tmp_path / "exported")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exported" / "config.json").exists()


def test_train_needs_exactly_one_data_source(tmp_path, tiny_model_dir):
    result = CliRunner().invoke(load_commands(), ["--db", str(tmp_path / "t.duckdb"), "rm", "train",
                                                  "--base", str(tiny_model_dir), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--data FILE... or --from-store" in result.output
