"""`rm eval` never grades a model on pairs one of the compared models labelled (no circular "old vs new")."""

import json

import pytest
from click.testing import CliRunner

from tests.rm_builders import make_hf_rm
from tests.workbench.conftest import write_jsonl
from cli import load_commands


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory):
    """A store where `old` labelled pairs on 6 prompts, humans on 4 others, `mean-z(new,old)` on 3
    more; and files of those pairs as `rm train` would hold them out."""
    tmp = tmp_path_factory.mktemp("eval_sets")
    db = str(tmp / "t.duckdb")
    cli, runner = load_commands(), CliRunner()

    def run(*args):
        result = runner.invoke(cli, ["--db", db, "-q", *map(str, args)])
        assert result.exit_code == 0, result.output
        return result

    bon = [{"prompt": f"Question {i}?", "responses": [f"Answer {i}.", f"A longer answer to {i}, with detail.",
                                                        f"No {i}."]} for i in range(6)]
    run("import", write_jsonl(tmp / "bon.jsonl", bon), "--format", "bon", "--source", "bon")
    more = [{"prompt": f"Other {i}?", "responses": [f"Yes {i}.", f"Perhaps, {i} or so."]} for i in range(3)]
    run("import", write_jsonl(tmp / "more.jsonl", more), "--format", "bon", "--source", "more")
    human = [{"prompt": f"Human question {i}?", "chosen": f"Sure, {i}.", "rejected": f"Go away {i}."} for i in range(4)]
    run("import", write_jsonl(tmp / "human.jsonl", human))
    for name, seed in (("old", 0), ("new", 1)):
        run("rm", "register", make_hf_rm(tmp / name, seed=seed), "--name", name)
        for source in ("bon", "more"):
            run("score", "--rm", name, "--source", source)
    run("pairs", "build", "--rm", "old", "--strategy", "best-vs-worst", "--source", "bon")
    run("pairs", "build", "--rm", "old", "--rm", "new", "--combine", "mean-z", "--strategy", "best-vs-worst",
        "--source", "more")
    run("export", tmp / "by-old.jsonl", "--rm", "old")
    run("export", tmp / "by-human.jsonl", "--label", "human")
    run("export", tmp / "by-combination.jsonl", "--rm", "mean-z(new,old)")
    mixed = tmp / "mixed.jsonl"
    mixed.write_text((tmp / "by-old.jsonl").read_text() + (tmp / "by-human.jsonl").read_text())
    return db, tmp, lambda *args: runner.invoke(cli, ["--db", db, "-q", *map(str, args)])


def _eval(invoke, *args):
    result = invoke("rm", "eval", *args, "--json")
    return result, (json.loads(result.stdout) if result.exit_code == 0 else None)


def test_old_vs_new_on_pairs_the_old_model_labelled_is_refused(labelled_store):
    db, tmp, invoke = labelled_store
    for args in (("--rm", "new", "--compared-with", "old"), ("--rm", "old")):
        result, _ = _eval(invoke, *args, "--data", tmp / "by-old.jsonl")
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert "all 6 pairs" in result.output and "labelled by old@1" in result.output
        assert "1.0 on them by construction" in result.output and "--from-store --label human" in result.output
    # the same pairs with the store's selection: refused too
    result, _ = _eval(invoke, "--rm", "old", "--from-store", "--pairs-rm", "old")
    assert result.exit_code != 0 and "labelled by old@1" in result.output


def test_circular_pairs_are_left_out_and_counted(labelled_store):
    db, tmp, invoke = labelled_store
    result, both = _eval(invoke, "--rm", "new", "--compared-with", "old", "--data", tmp / "mixed.jsonl")
    assert result.exit_code == 0, result.output
    assert (both["n"], both["excluded_own_labels"], both["labelled_by_compared"]) == (4, 6, ["old@1"])
    result, alone = _eval(invoke, "--rm", "new", "--data", tmp / "by-old.jsonl")  # new labelled none of them
    assert (alone["n"], alone["excluded_own_labels"]) == (6, 0)
    text = invoke("rm", "eval", "--rm", "old", "--data", tmp / "mixed.jsonl").output
    assert "left out 6 pairs labelled by old@1" in text and "n=4 " in text


def test_a_combination_labels_for_its_members(labelled_store):
    db, tmp, invoke = labelled_store
    result, _ = _eval(invoke, "--rm", "new", "--data", tmp / "by-combination.jsonl")
    assert result.exit_code != 0 and "labelled by new@1" in result.output
    result, human = _eval(invoke, "--rm", "new", "--compared-with", "old", "--from-store", "--label", "human")
    assert (human["n"], human["excluded_own_labels"]) == (4, 0)
