"""LLM judges as labelers (workbench.judges, `workbench judge`) with a tiny in-process judge model."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from cli import load_commands
from tests.workbench.conftest import table_counts, write_jsonl
from workbench.errors import WorkbenchError
from workbench.ingest.importer import import_files
from workbench.judges.backends import LocalJudge, PairItem
from workbench.judges.pairwise import bradley_terry_scores, combine_orders, judge_stored_pairs
from workbench.judges.templates import DEFAULTS_DIR, JudgeTemplate, JudgeTemplateError
from workbench.store import Store, queries

PAIRS = [{"prompt": f"Question {i}: what is {i} plus {i}?", "chosen": f"It is {2 * i}, since {i} + {i} = {2 * i}.",
          "rejected": f"No idea {i}."} for i in range(6)]
# the tiny tokenizer is byte-level: a short template keeps the inputs small
SHORT_PAIRWISE = "Q: {prompt}\n[A] {response_a}\n[B] {response_b}\nBetter? A or B."


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    from tests.tiny import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("judge"), seed=7)


@pytest.fixture
def judge(judge_dir) -> LocalJudge:
    return LocalJudge(str(judge_dir), judge_dir, max_length=1024, batch_size=4)


@pytest.fixture
def pair_store(tmp_path) -> Store:
    store = Store(tmp_path / "judges.duckdb", timeout=10)
    import_files(store, [write_jsonl(tmp_path / "pairs.jsonl", PAIRS)], source="qa", progress=False)
    return store


def _template(tmp_path, text: str = SHORT_PAIRWISE, name: str = "pairwise.txt") -> JudgeTemplate:
    path = tmp_path / name
    path.write_text(text)
    return JudgeTemplate.read("pairwise", path)


def _scores(store: Store, rm_id: str) -> dict[str, float]:
    with store.connect() as con:
        return dict(queries.fetch_rows(con, "SELECT response_id, score FROM scores WHERE rm_id = ?", [rm_id]))


def test_swapping_the_replies_gives_the_complementary_probability(judge):
    template = JudgeTemplate.read("pairwise")  # the shipped template: A and B are treated alike
    prompt, x, y = [{"role": "user", "content": "Is water wet?"}], "Yes, water is wet.", "No."
    filler = PairItem([{"role": "user", "content": "A longer unrelated question " * 5}], "one reply", "another")
    (xy_first, xy_second), = judge.judge_pairs(template, [PairItem(prompt, x, y)])
    _, (yx_first, yx_second) = judge.judge_pairs(template, [filler, PairItem(prompt, y, x)])  # padded among others
    assert xy_first.value + yx_second.value == pytest.approx(1.0, abs=1e-5)  # the same input, read for the other reply
    assert xy_second.value + yx_first.value == pytest.approx(1.0, abs=1e-5)
    p_xy, _ = combine_orders(xy_first.value, xy_second.value)
    p_yx, _ = combine_orders(yx_first.value, yx_second.value)
    assert p_xy + p_yx == pytest.approx(1.0, abs=1e-5)


def test_combine_orders_and_consistency():
    assert combine_orders(0.8, 0.6) == (pytest.approx(0.7), True)
    assert combine_orders(0.8, 0.3) == (pytest.approx(0.55), False)
    assert combine_orders(1.0, 0.0) == (0.5, False)
    assert combine_orders(None, 0.9) == (None, None)


def test_bradley_terry_scores_reproduce_verdicts_that_agree_with_a_ranking():
    truth = {"r1": 1.2, "r2": 0.1, "r3": -1.3}
    verdicts = [(a, b, 1 / (1 + math.exp(truth[b] - truth[a]))) for a, b in [("r1", "r2"), ("r1", "r3"), ("r2", "r3")]]
    fitted = bradley_terry_scores(verdicts)
    assert fitted == pytest.approx(truth, abs=1e-3)  # truth has mean 0, as the fit does
    one = bradley_terry_scores([("a", "b", 0.8)])
    assert one["a"] - one["b"] == pytest.approx(math.log(0.8 / 0.2), abs=1e-12)


def test_judged_pairs_become_scores_that_rebuild_the_judges_verdicts(pair_store, judge, tmp_path):
    result = judge_stored_pairs(pair_store, judge, _template(tmp_path), progress=False)
    assert (result.to_judge, result.judged, result.unparseable) == (6, 6, 0)
    scores = _scores(pair_store, result.rm_id)
    with pair_store.connect() as con:
        verdicts = queries.pair_verdicts(con, result.rm_id)
    assert len(verdicts) == 6 and len(scores) == 12
    for v in verdicts:
        assert v["p_a_better"] == pytest.approx((v["p_a_first"] + v["p_a_second"]) / 2)
        assert v["consistent"] == ((v["p_a_first"] > 0.5) == (v["p_a_second"] > 0.5))
        log_odds = math.log(v["p_a_better"] / (1 - v["p_a_better"]))
        assert scores[v["response_a"]] - scores[v["response_b"]] == pytest.approx(log_odds, abs=1e-9)
    runner = CliRunner()
    db = str(pair_store.path)
    built = runner.invoke(load_commands(), ["--db", db, "-q", "pairs", "build", "--rm", result.judge, "--json"])
    assert built.exit_code == 0, built.output
    with pair_store.connect() as con:
        judge_pairs = queries.fetch_rows(con, "SELECT chosen_id, rejected_id FROM pairs WHERE rm_id = ?",
                                         [result.rm_id])
    winners = {(v["response_a"], v["response_b"]) if v["p_a_better"] > 0.5 else (v["response_b"], v["response_a"])
               for v in verdicts}
    assert set(judge_pairs) == winners
    again = judge_stored_pairs(pair_store, judge, _template(tmp_path), progress=False)
    assert (again.run_id, again.to_judge, again.judged) == (result.run_id, 0, 0)  # resumable: nothing left


def test_an_edited_template_is_a_new_labeler_and_the_old_scores_stay(pair_store, judge, tmp_path):
    first = judge_stored_pairs(pair_store, judge, _template(tmp_path), progress=False)
    before = _scores(pair_store, first.rm_id)
    edited = _template(tmp_path, SHORT_PAIRWISE + " Answer now.", "edited.txt")
    second = judge_stored_pairs(pair_store, judge, edited, progress=False)
    assert second.rm_id != first.rm_id and second.judge.endswith("@2") and first.judge.endswith("@1")
    assert second.judged == 6
    assert _scores(pair_store, first.rm_id) == before
    assert _scores(pair_store, second.rm_id) != before


def test_a_template_without_its_placeholders_is_one_clear_error_and_the_store_is_unchanged(pair_store, tmp_path,
                                                                                           judge_dir):
    bad = tmp_path / "bad.txt"
    bad.write_text("Which is better, {response_a} or the other one? Answer A or B.")
    with pytest.raises(JudgeTemplateError, match=r"lacks \{prompt\}, \{response_b\}"):
        JudgeTemplate.read("pairwise", bad)
    before = table_counts(pair_store)
    with pair_store.connect() as con:
        models = queries.fetch_value(con, "SELECT count(*) FROM reward_models")
    result = CliRunner().invoke(load_commands(), ["--db", str(pair_store.path), "-q", "judge", "pairs", "--judge",
                                                  str(judge_dir), "--template", str(bad)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "bad.txt: the pairwise judge template lacks {prompt}" in result.output
    assert table_counts(pair_store) == before
    with pair_store.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM reward_models") == models


def test_a_filled_template_leaves_placeholder_text_inside_replies_alone():
    template = JudgeTemplate.read("pairwise", DEFAULTS_DIR / "pairwise.txt")
    filled = template.fill(prompt="say {response_b}", response_a="{prompt} {x}", response_b="b")
    assert "say {response_b}" in filled and "{prompt} {x}" in filled


_STALL_IN_SECOND_CHUNK = """
import sys, time
import workbench.store.queries as q
original, calls = q.insert_pair_verdicts, {"n": 0}
def stalling(con, table):
    stored = original(con, table)
    calls["n"] += 1
    if calls["n"] == 2:  # inside the second chunk's transaction
        print("STALLED", flush=True)
        time.sleep(300)
    return stored
q.insert_pair_verdicts = stalling
from cli import load_commands
load_commands()(["--db", sys.argv[1], "-q", "judge", "pairs", "--judge", sys.argv[2], "--template", sys.argv[3],
                 "--batch-size", "4"], standalone_mode=False)
"""


def test_a_kill_mid_run_loses_at_most_one_batch_and_the_rerun_judges_the_rest(pair_store, judge_dir, tmp_path):
    from tests.processes import kill_when_printed, python

    template = _template(tmp_path)
    kill_when_printed(python(_STALL_IN_SECOND_CHUNK, str(pair_store.path), str(judge_dir), template.path))
    with pair_store.connect() as con:  # batch size 4: two pairs (both orders) per chunk
        assert queries.fetch_value(con, "SELECT count(*) FROM judge_pair_verdicts") == 2
        assert queries.fetch_value(con, "SELECT count(*) FROM scores") == 4
    rerun = judge_stored_pairs(pair_store, LocalJudge(str(judge_dir), judge_dir, 512, 4), template, progress=False)
    assert (rerun.to_judge, rerun.judged) == (4, 4)
    with pair_store.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM judge_pair_verdicts") == 6


def test_judge_scores_work_with_combine_rm_compare_export_and_report(pair_store, judge, tmp_path):
    pairwise = judge_stored_pairs(pair_store, judge, _template(tmp_path), progress=False)
    rubric_path = tmp_path / "rubric.txt"
    rubric_path.write_text("Q: {prompt}\nReply: {response}\nScore 1-{scale}:")
    from workbench.judges.rubric import rate_replies

    rubric = rate_replies(pair_store, judge, JudgeTemplate.read("rubric", rubric_path), progress=False)
    assert (rubric.judged, rubric.unparseable) == (12, 0)
    ratings = _scores(pair_store, rubric.rm_id)
    assert len(ratings) == 12 and all(1.0 <= r <= 5.0 for r in ratings.values())
    runner, db = CliRunner(), str(pair_store.path)

    def cli(*args):
        result = runner.invoke(load_commands(), ["--db", db, "-q", *args])
        assert result.exit_code == 0, result.output
        return result.output

    combined = json.loads(cli("pairs", "build", "--rm", pairwise.judge, "--rm", rubric.judge, "--combine", "mean-z",
                              "--json"))
    assert combined["candidates"] > 0
    compared = json.loads(cli("rm", "compare", pairwise.judge, rubric.judge, "--json"))
    assert compared["responses"] == 12 and compared["a"] == pairwise.judge
    cli("pairs", "build", "--rm", pairwise.judge)
    cli("export", str(tmp_path / "out.jsonl"), "--rm", pairwise.judge)
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    entry, = manifest["reward_models"]
    assert entry["format"] == "judge" and entry["rm_id"] == pairwise.rm_id
    assert entry["judge"]["template_sha256"] == _template(tmp_path).sha256
    report = json.loads(cli("judge", "report", pairwise.judge, "--json"))
    assert report["verdicts"]["pairs"] == 6 and report["human_agreement"]["pairs"] == 6
    counts = report["verdicts"]
    assert report["position_consistency"] == pytest.approx(counts["consistent"] / (counts["consistent"]
                                                                                     + counts["inconsistent"]), abs=1e-4)
    refused = runner.invoke(load_commands(), ["--db", db, "-q", "rm", "eval", "--rm", pairwise.judge, "--from-store"])
    assert refused.exit_code == 1 and "it is an LLM judge" in refused.output


@pytest.mark.slow
def test_smollm2_judges_hh_rlhf_pairs_with_the_shipped_template(tmp_path, hh_rlhf_path):
    from engine.backbone import resolve_model_path
    from workbench.curate.pair_filter import PairFilter

    store = Store(tmp_path / "hh.duckdb", timeout=10)
    import_files(store, [str(hh_rlhf_path)], skip_invalid=True, rejects_path=str(tmp_path / "rejects.jsonl"),
                 progress=False)
    smollm2 = LocalJudge("smollm2", resolve_model_path("smollm2"), max_length=512, batch_size=4)
    result = judge_stored_pairs(store, smollm2, JudgeTemplate.read("pairwise"), pair_filter=PairFilter(limit=1),
                                progress=False)
    assert (result.judged, result.unparseable, result.judge) == (1, 0, "judge-smollm2-pairwise@1")
    with store.connect() as con:
        verdicts = queries.pair_verdicts(con, result.rm_id)
        texts = dict(queries.fetch_rows(con, "SELECT response_id, text FROM responses"))
        messages = dict(queries.fetch_rows(con, "SELECT prompt_id, messages FROM prompts"))
    assert all(0 < v["p_a_first"] < 1 and 0 < v["p_a_second"] < 1 for v in verdicts)
    v = verdicts[0]
    swapped = PairItem(json.loads(messages[v["prompt_id"]]), texts[v["response_b"]], texts[v["response_a"]])
    (first, second), = smollm2.judge_pairs(JudgeTemplate.read("pairwise"), [swapped])
    assert combine_orders(first.value, second.value)[0] == pytest.approx(1 - v["p_a_better"], abs=1e-5)


def test_all_pairs_within_a_prompt_are_capped_and_scored_by_a_bradley_terry_fit(tmp_path, judge):
    from workbench.generate.selection import PromptSelection
    from workbench.judges.pairwise import judge_prompt_pairs

    store = Store(tmp_path / "bon.duckdb", timeout=10)
    records = [{"prompt": f"Name a colour ({i}).", "responses": ["Red.", "Blue, like the sky.", "Green", "Hmm."]}
               for i in range(2)]
    import_files(store, [write_jsonl(tmp_path / "bon.jsonl", records)], fmt="bon", source="bon", progress=False)
    template = _template(tmp_path)
    result = judge_prompt_pairs(store, judge, template, selection=PromptSelection(limit=1), max_pairs_per_prompt=4,
                                progress=False)
    assert (result.to_judge, result.judged) == (4, 4)  # 6 pairs of 4 replies, capped at 4, one prompt
    with store.connect() as con:
        verdicts = queries.pair_verdicts(con, result.rm_id)
    assert {v["prompt_id"] for v in verdicts} == {verdicts[0]["prompt_id"]}
    expected = bradley_terry_scores([(v["response_a"], v["response_b"], v["p_a_better"]) for v in verdicts])
    assert _scores(store, result.rm_id) == pytest.approx(expected, abs=1e-9)
    again = judge_prompt_pairs(store, judge, template, selection=PromptSelection(limit=1), max_pairs_per_prompt=4,
                               progress=False)
    assert again.to_judge == 0  # the same capped choice: all judged already


def test_a_registered_policy_name_is_a_local_judge(store, judge_dir):
    from workbench.dpo.policies import register_policy
    from workbench.judges.backends import make_judge

    register_policy(store, "my-policy", judge_dir, base="tiny", reference="tiny", export_hash="0" * 64,
                    hyper_parameters={}, run_id="r")
    judge = make_judge(store, "my-policy", None)
    assert judge.path == judge_dir.resolve() and judge.identity()[1]["model"] == "my-policy"
    with pytest.raises(WorkbenchError, match="--judge MODEL, or a server with --endpoint"):
        make_judge(store, None, None)


@pytest.mark.parametrize("args, message", [
    (["pairs", "--template", str(DEFAULTS_DIR / "pairwise.txt"), "--max-length", "300"],
     "--max-length 300: the template alone takes"),
    (["pairs", "--max-length", "100"], "--max-length 100: the template alone takes"),
    (["pairs", "--rm", "no-such-rm"], "reward model 'no-such-rm' not found"),
])
def test_a_judge_that_cannot_work_is_refused_before_anything_is_stored(pair_store, judge_dir, args, message):
    before = table_counts(pair_store)
    result = CliRunner().invoke(load_commands(), ["--db", str(pair_store.path), "-q", "judge", args[0], "--judge",
                                                  str(judge_dir), *args[1:]])
    last = result.output.strip().splitlines()[-1]  # above it, at most transformers' own "Loading weights" bar
    assert result.exit_code == 1 and last.startswith("Error: ") and message in last, result.output
    assert table_counts(pair_store) == before
    with pair_store.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM reward_models") == 0
        assert queries.fetch_value(con, "SELECT count(*) FROM runs WHERE kind = 'judging'") == 0


def test_a_ten_point_rubric_rates_within_its_scale(pair_store, judge, tmp_path):
    from workbench.judges.rubric import rate_replies

    path = tmp_path / "rubric10.txt"
    path.write_text("Q: {prompt}\nReply: {response}\nScore 1-{scale}:")
    result = rate_replies(pair_store, judge, JudgeTemplate.read("rubric", path), scale=10, progress=False)
    ratings = _scores(pair_store, result.rm_id)
    assert len(ratings) == 12 and all(1.0 <= r <= 10.0 for r in ratings.values())
    with pair_store.connect() as con:
        assert queries.get_reward_model(con, result.rm_id).config["settings"]["labels"][-1] == "10"
