"""The Retrain and Sample tabs' steps, driven without a browser: a stand-in job manager records
the argv a tab would run and plays back the job states a timer tick would see."""

import json
from dataclasses import dataclass, field

import pytest

from tests.ui.conftest import NO_FILTER
from ui import retrain_steps, sample_steps
from ui.context import AppContext
from workbench.errors import WorkbenchError
from workbench.exports.export import count_pairs
from workbench.runtime.jobs import JobStatus
from workbench.curate.pair_filter import PairFilter
from workbench.store import queries

SETTINGS = ["rm-next", "smollm2", "head-only", 1.0, "", 512, 8, "3", 0.1, 0]


@dataclass
class FakeJob:
    id: str
    kind: str
    argvs: list
    state: str = "running"
    outputs: list = field(default_factory=list)

    def status(self) -> JobStatus:
        return JobStatus(self.id, self.kind, self.state, 1, len(self.argvs), None, "log", None, 0.0)

    def output(self, index: int) -> str:
        return self.outputs[index]


class FakeJobs:
    def __init__(self):
        self.jobs = {}

    def start(self, kind, argvs, env=None):
        job = FakeJob(f"job{len(self.jobs)}", kind, argvs)
        self.jobs[job.id] = job
        return job

    def get(self, job_id):
        return self.jobs[job_id]


def after(argv: list[str], first: str) -> list[str]:
    """The workbench command's own arguments, from its name on (the global options come before)."""
    return argv[argv.index(first):]


@pytest.fixture
def ctx(app_store, tmp_path):
    (tmp_path / "models" / "rm").mkdir(parents=True)  # a reward model the app may load (--models-dir)
    context = AppContext.create(app_store, export_dir=tmp_path / "e", runs_dir=tmp_path / "r",
                                models_dir=tmp_path / "models")
    context.jobs = FakeJobs()
    return context


def test_describe_training_counts_the_curated_pairs_and_shows_the_command(ctx):
    text, shown = retrain_steps.describe_training(ctx, SETTINGS + NO_FILTER)
    assert f"**{count_pairs(ctx.store, PairFilter()):,} pairs**" in text
    assert shown.startswith("workbench --db ") and " rm train --from-store --base smollm2 " in shown
    assert "--name rm-next" in shown and "--max-steps 3" in shown and "--recipe head-only" in shown
    _, shown = retrain_steps.describe_training(ctx, [*SETTINGS[:2], "fast", *SETTINGS[3:]] + NO_FILTER)
    assert shown.startswith("# ") and "unknown recipe 'fast'" in shown
    _, shown = retrain_steps.describe_training(ctx, ["../x", *SETTINGS[1:]] + NO_FILTER)
    assert shown.startswith("# ") and "model name" in shown


def test_training_starts_once_then_the_timer_reads_its_curve_and_result(ctx):
    job = retrain_steps.start_training(ctx, None, SETTINGS + NO_FILTER)
    fake = ctx.jobs.get(job.id)
    assert (job.kind, job.names) == ("train", ["rm-next"]) and after(fake.argvs[0], "rm")[:3] == ["rm", "train", "--from-store"]
    with pytest.raises(WorkbenchError, match="A job is running"):
        retrain_steps.start_training(ctx, job, SETTINGS + NO_FILTER)

    (ctx.runs_dir / "reward-models" / "rm-next").mkdir(parents=True)
    (ctx.runs_dir / "reward-models" / "rm-next" / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "loss": 0.7, "accuracy": 0.5}) + "\n")
    running = retrain_steps.job_view(ctx, job)
    assert not running.status.done and running.text == "" and running.table is None
    assert running.curve.to_dict("records") == [{"step": 1, "value": 0.7, "metric": "loss"},
                                                {"step": 1, "value": 0.5, "metric": "accuracy"}]
    fake.state, job.names = "completed", ["ext"]  # a model the store knows stands in for the trained one
    done = retrain_steps.job_view(ctx, job)
    assert done.trained == "ext@1" and "Trained and registered **ext**" in done.text


def test_evaluation_job_compares_the_two_models(ctx):
    job = retrain_steps.RetrainJob("e", "eval", None, ["old@1", "new@1"])
    outputs = [json.dumps({"n": 10, "accuracy": 0.5, "mean_margin": 0.1, "length_baseline": 0.6}),
               "progress...\n" + json.dumps({"n": 10, "accuracy": 0.7, "mean_margin": 0.3, "length_baseline": 0.6})]
    ctx.jobs.jobs["e"] = FakeJob("e", "eval", [[], []], "completed", outputs)
    view = retrain_steps.job_view(ctx, job)
    assert view.curve is None and view.trained is None
    assert view.table.set_index("metric").loc["accuracy"].to_dict() == {"old@1": 0.5, "new@1": 0.7, "change": 0.2}
    ctx.jobs.jobs["e"].state = "failed"
    assert retrain_steps.job_view(ctx, job).table is None


def test_evaluation_and_rescoring_need_their_models(ctx):
    with pytest.raises(WorkbenchError, match="Pick the new model"):
        retrain_steps.start_evaluation(ctx, None, "", "ext")
    with pytest.raises(WorkbenchError, match="pick the reward model"):
        retrain_steps.start_rescore(ctx, None, "")
    with pytest.raises(WorkbenchError, match="does not load reward model 'ext@1'"):  # scores only, no weights
        retrain_steps.start_rescore(ctx, None, "ext@1")
    with pytest.raises(WorkbenchError, match="does not load reward model 'ext@1'"):
        retrain_steps.start_evaluation(ctx, None, "ext@1", "ext@1")
    rm = str(ctx.models.models_dir / "rm")
    job = retrain_steps.start_rescore(ctx, None, rm)
    assert after(ctx.jobs.get(job.id).argvs[0], "score")[:3] == ["score", "--rm", rm]


def test_model_selection_keeps_current_picks_only_while_they_exist(ctx):
    choices, new, old, hint = retrain_steps.model_selection(ctx, "gone@1", None)
    assert choices == [] and new is None and old is None and "No reward model with weights" in hint
    ctx.store.write(lambda con: queries.insert_reward_model(con, "rm-w", "weighted", "/models/w", {}, None))
    choices, new, old, _ = retrain_steps.model_selection(ctx, None, "weighted@1")
    assert [v for _, v in choices] == ["weighted@1"] and new == "weighted@1" and old is None  # never itself


def test_sampling_steps(ctx):
    chosen = sample_steps.selection("(any)", "(any)", " ", "2")
    assert (chosen.source, chosen.search, chosen.limit) == (None, None, 2)
    assert sample_steps.selected_text(ctx, chosen) == "**2 prompts** selected."
    assert "No prompt" in sample_steps.selected_text(ctx, sample_steps.selection("(any)", "(any)", "zzz-none", ""))
    assert sample_steps.default_reward_model(None, [sample_steps.SAMPLE_ONLY, "a@1"]) == "a@1"
    assert sample_steps.default_reward_model("b@2", [sample_steps.SAMPLE_ONLY, "a@1"]) == "a@1"
    assert sample_steps.default_reward_model(None, [sample_steps.SAMPLE_ONLY]) == sample_steps.SAMPLE_ONLY

    with pytest.raises(WorkbenchError, match="does not load model '/etc'"):
        sample_steps.start_sampling(ctx, None, chosen, "/etc", None, 4, 0.8, 0.95, 64, 0, 8)
    rm = str(ctx.models.models_dir / "rm")
    job = sample_steps.start_sampling(ctx, None, chosen, "smollm2", rm, 4, 0.8, 0.95, 64, 0, 8)
    argv = ctx.jobs.get(job.id).argvs[0]
    assert after(argv, "bon")[:3] == ["bon", "--rm", rm] and argv[argv.index("--limit") + 1] == "2"
    with pytest.raises(WorkbenchError, match="in progress"):
        sample_steps.start_sampling(ctx, job, chosen, "smollm2", None, 4, 0.8, 0.95, 64, 0, 8)
    assert sample_steps.run_view(ctx, job)[1] is None
    fake = ctx.jobs.get(job.id)
    fake.state, fake.outputs = "completed", [json.dumps({"total": 8, "prompts": 2, "n": 4, "generated": 8})]
    assert sample_steps.run_view(ctx, job)[1].startswith("Sampled **8** responses (2 prompts × 4; 8 new)")


def test_evaluate_both_refuses_pairs_one_of_the_models_labelled(tmp_path, tiny_model_dir):
    """The old model labelled every pair of the chosen set: refused before a job starts, with the
    reason; on pairs neither labelled (here the human ones) both are evaluated, each --compared-with
    the other."""
    from engine.reward_model import RewardModel
    from tests.ui.data import make_store
    from workbench.curate.pairs import build_pairs
    from workbench.models.reward_models import register_reward_model
    from workbench.generate.scoring import score_responses
    from workbench.generate.selection import PromptSelection

    store = make_store(tmp_path, prompts=2)
    models = tmp_path / "models"
    for name in ("old", "new"):
        register_reward_model(store, RewardModel.from_base(tiny_model_dir).save(models / name), name=name)
    score_responses(store, "old", selection=PromptSelection(source="bon-demo"), progress=False)
    build_pairs(store, "old", "best-vs-worst", source="bon-demo", progress=False)
    ctx = AppContext.create(store, export_dir=tmp_path / "e", runs_dir=tmp_path / "r", models_dir=models)
    ctx.jobs = FakeJobs()
    by_old = [*NO_FILTER]
    by_old[retrain_steps.FILTER_INPUTS.index("labeler")] = "old"
    with pytest.raises(WorkbenchError, match=r"labelled by old@1, a model being evaluated: it would score 1\.0"):
        retrain_steps.start_evaluation(ctx, None, "new", "old", "curated", by_old)
    assert ctx.jobs.jobs == {}
    job = retrain_steps.start_evaluation(ctx, None, "new", "old", "human", NO_FILTER)
    old_argv, new_argv = (after(a, "rm") for a in ctx.jobs.get(job.id).argvs)
    assert old_argv == ["rm", "eval", "--rm", "old", "--from-store", "--label", "human", "--compared-with", "new",
                        "--json"]
    assert new_argv[:4] == ["rm", "eval", "--rm", "new"] and new_argv[-3:] == ["--compared-with", "old", "--json"]


def test_sft_count_and_preview_are_what_the_export_writes(ctx):
    """Curate with the sft schema counts SFT rows (each prompt's best reply), not pairs, and its
    first preview row is the file's first row; pair-only filters are left out."""
    from ui import curate_tab
    from workbench.curate.curation import export_curated

    by_ext = [*NO_FILTER]
    by_ext[curate_tab.FILTER_INPUTS.index("labeler")] = "ext@1"
    by_ext[curate_tab.FILTER_INPUTS.index("min_margin")] = "0.5"  # disabled for sft: must not apply
    for min_score in ("", "1.0"):
        by_ext[curate_tab.FILTER_INPUTS.index("min_score")] = min_score
        preview = curate_tab.preview_for(ctx, "sft", by_ext)
        assert preview.summary() == f"### {preview.total:,} SFT rows would be exported"
        pairs = curate_tab.preview_for(ctx, "trl", by_ext).total
        done = export_curated(ctx.store, ctx.export_dir, f"sft-{min_score or 'all'}",
                              curate_tab.sft_filter(curate_tab.to_filter(*by_ext)), schema="sft")
        written = [json.loads(line) for line in open(done["path"])]
        assert len(written) == done["rows"] == preview.total != pairs
        assert written[0]["messages"][-1]["content"].startswith(preview.rows["reply"][0].rstrip("…")[:40])
    assert "Pick a reward model" in curate_tab.preview_for(ctx, "sft", NO_FILTER)
