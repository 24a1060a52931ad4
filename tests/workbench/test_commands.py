"""The CLI calls the app starts: argv built from settings must parse with the real commands."""

import json

import click
import pytest

from tests.ui.data import make_store
from workbench.runtime import commands
from cli import load_commands
from workbench.curate.pair_filter import PairFilter
from workbench.errors import WorkbenchError
from workbench.generate.selection import PromptSelection


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("commands"), prompts=5)


def parse(argv: list[str]) -> click.Context:
    """Parse argv (after `python -m workbench`) with the real click commands; raises on a bad option."""
    group = load_commands()
    ctx = group.make_context("workbench", list(argv[3:]), resilient_parsing=False)
    names = [*ctx.protected_args, *ctx.args]
    command = group
    while isinstance(command, click.Group):
        name, names = names[0], names[1:]
        command = command.commands[name]
    return command.make_context(name, names)


def test_sample_command_for_bon_and_for_sampling_only(store):
    request = commands.SampleRequest(policy="smollm2", rm="my-rm", n=8, temperature=0.7, top_p=0.9,
                                     max_new_tokens=64, seed=3, batch_size=16,
                                     selection=PromptSelection(source="bon-demo", search="topic", limit=5))
    ctx = parse(commands.sample_command(store, request))
    assert ctx.command.name == "bon"
    assert (ctx.params["rm"], ctx.params["n"], ctx.params["temperature"]) == ("my-rm", 8, 0.7)
    assert ctx.params["as_json"]
    assert (ctx.params["source"], ctx.params["search"], ctx.params["limit"], ctx.params["tag"]) == \
        ("bon-demo", "topic", 5, None)
    request.rm = None
    assert parse(commands.sample_command(store, request)).command.name == "sample"


@pytest.mark.parametrize("changes,message", [
    ({"n": 0}, "n must be a positive"), ({"policy": " "}, "give a policy"), ({"top_p": 0}, "top-p"),
    ({"selection": PromptSelection(limit=0)}, "prompt limit"),
    ({"n": commands.MAX_N + 1}, "n must be at most 64"), ({"batch_size": 10**6}, "batch size must be at most"),
    ({"max_new_tokens": commands.MAX_NEW_TOKENS + 1}, "max new tokens must be at most"),
])
def test_sample_request_validation(store, changes, message):
    with pytest.raises(WorkbenchError, match=message):
        commands.sample_command(store, commands.SampleRequest(**changes))


def test_count_selected_prompts(store):
    assert commands.count_selected_prompts(store, PromptSelection()) == 13
    assert commands.count_selected_prompts(store, PromptSelection(source="garden")) == 6
    assert commands.count_selected_prompts(store, PromptSelection(source="garden", limit=2)) == 2
    assert commands.count_selected_prompts(store, PromptSelection(search="no such words")) == 0


def test_train_command_maps_the_curation_filter(store, tmp_path):
    flt = PairFilter(source="bon-demo", tag="synthetic", label="rm", rm="ext", min_margin=0.5,
                         exclude_flagged=True, max_chars=300, strategy="top-k")
    request = commands.TrainRequest(name="rm-v2", base="/models/base", recipe="lora", epochs=2, lr=1e-4,
                                    max_steps=5)
    argv = commands.train_command(store, flt, request, tmp_path / "rm-v2")
    ctx = parse(argv)
    assert ctx.command.name == "train" and ctx.params["from_store"] and ctx.params["as_json"]
    assert {k: ctx.params[k] for k in ("source", "tag", "label", "rm", "min_margin", "exclude_flagged",
                                       "max_chars", "strategy")} == {
        "source": "bon-demo", "tag": "synthetic", "label": "rm", "rm": "ext", "min_margin": 0.5,
        "exclude_flagged": True, "max_chars": 300, "strategy": "top-k"}
    assert (ctx.params["base"], ctx.params["out_dir"], ctx.params["name"]) == ("/models/base", str(tmp_path / "rm-v2"),
                                                                             "rm-v2")
    assert (ctx.params["recipe"], ctx.params["epochs"], ctx.params["lr"], ctx.params["max_steps"]) == (
        "lora", 2.0, 1e-4, 5)
    argv = commands.train_command(store, PairFilter(), commands.TrainRequest(), tmp_path / "x")
    ctx = parse(argv)
    assert ctx.params["lr"] is None and ctx.params["recipe"] == "head-only" and ctx.params["source"] is None
    with pytest.raises(WorkbenchError, match="unknown recipe"):
        commands.train_command(store, PairFilter(), commands.TrainRequest(recipe="fast"), tmp_path / "x")


@pytest.mark.parametrize("changes,message", [
    ({"name": "../escape"}, "model name"), ({"name": ""}, "model name"), ({"eval_fraction": 1.5}, "held-out"),
    ({"lr": -1.0}, "learning rate"), ({"max_steps": 0}, "max steps"), ({"pairs_per_step": 0}, "pairs per step"),
    ({"lr": 1.0}, "learning rate must be a positive number up to 0.01"), ({"lr": float("nan")}, "learning rate"),
    ({"pairs_per_step": 10**5}, "pairs per step must be at most"), ({"max_length": 10**6}, "max length must be at most"),
])
def test_train_request_validation(store, tmp_path, changes, message):
    with pytest.raises(WorkbenchError, match=message):
        commands.train_command(store, PairFilter(), commands.TrainRequest(**changes), tmp_path)


def test_training_dir_stays_in_the_runs_dir(tmp_path):
    assert commands.training_dir(tmp_path, "rm-v2") == tmp_path / "reward-models" / "rm-v2"
    with pytest.raises(WorkbenchError):
        commands.training_dir(tmp_path, "../../etc")


def test_read_metrics_skips_a_half_written_line(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0 / s, "accuracy": 0.5 + s / 10, "lr": 1e-4, "extra": 1})
             for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 4, "lo')
    metrics = commands.read_metrics(tmp_path)
    assert metrics["step"].tolist() == [1, 2, 3] and list(metrics.columns) == commands.METRIC_COLUMNS
    curve = commands.loss_curve(metrics)
    assert len(curve) == 6 and set(curve["metric"]) == {"loss", "accuracy"}
    assert commands.read_metrics(tmp_path / "missing").empty
    assert commands.loss_curve(commands.read_metrics(tmp_path / "missing")).empty


def test_eval_commands_and_comparison(store, tmp_path):
    data = tmp_path / "heldout_pairs.jsonl"
    with pytest.raises(WorkbenchError, match="does not exist"):
        commands.eval_commands(store, ["a", "b"], data)
    data.write_text("")
    argvs = commands.eval_commands(store, ["old-rm", "new-rm"], data)
    contexts = [parse(a) for a in argvs]
    assert [c.params["rm_ref"] for c in contexts] == ["old-rm", "new-rm"]
    assert all(c.params["data"] == (str(data),) and c.params["as_json"] for c in contexts)
    old = json.dumps({"rm": "old", "n": 40, "accuracy": 0.55, "mean_margin": 0.1, "length_baseline": 0.6}, indent=2)
    new = "Loading...\n" + json.dumps({"rm": "new", "n": 40, "accuracy": 0.7, "mean_margin": 0.4,
                                       "length_baseline": 0.6}, indent=2)
    table = commands.compare_evaluations(["old@1", "new@1"], [old, new])
    assert table["metric"].tolist() == ["n", "accuracy", "mean_margin", "length_baseline"]
    assert table["change"].tolist() == pytest.approx([0, 0.15, 0.3, 0.0])
    with pytest.raises(WorkbenchError, match="printed no result"):
        commands.compare_evaluations(["a", "b"], [old, "Error: boom"])


def test_rescore_command(store):
    ctx = parse(commands.rescore_command(store, "rm-v2"))
    assert ctx.command.name == "score" and ctx.params["rm"] == "rm-v2" and ctx.params["as_json"]
    with pytest.raises(WorkbenchError):
        commands.rescore_command(store, "")


def test_parse_json_output():
    assert commands.parse_json_output('{"a": 1}') == {"a": 1}
    assert commands.parse_json_output('noise\n{\n  "a": 2\n}\n') == {"a": 2}
    assert commands.parse_json_output("nothing") is None


@pytest.mark.slow  # three CLI processes that each load torch and a model (~30 s)
def test_evaluation_and_rescoring_jobs_with_the_real_cli(tmp_path, tiny_model_dir):
    from engine.reward_model import RewardModel
    from workbench.exports.export import export_pairs
    from workbench.curate.pair_filter import PairFilter
    from workbench.runtime.jobs import JobManager
    from workbench.models.reward_models import register_reward_model

    store = make_store(tmp_path, prompts=3)
    model = register_reward_model(store, RewardModel.from_base(tiny_model_dir).save(tmp_path / "rm"), name="tiny")
    data = tmp_path / "heldout_pairs.jsonl"
    export_pairs(store, data, pair_filter=PairFilter(limit=4))
    argvs = commands.eval_commands(store, ["tiny", model.rm_id], data) + [commands.rescore_command(store, "tiny")]
    job = JobManager(tmp_path / "jobs").start("eval", argvs)
    status = job.wait(timeout=300)
    assert status.state == "completed", status.log
    table = commands.compare_evaluations(["a", "b"], [job.output(0), job.output(1)])
    assert table.set_index("metric").loc["n", "a"] == 4 and table["change"].tolist() == [0, 0, 0, 0]  # same model
    scored = commands.parse_json_output(job.output(2))
    with store.connect() as con:
        stored = con.execute("SELECT count(*) FROM scores WHERE rm_id = ?", [model.rm_id]).fetchall()[0][0]
        responses = con.execute("SELECT count(*) FROM responses").fetchall()[0][0]
    assert scored["scored"] == stored == responses
