"""The Rounds tab's steps without a browser: the rounds table, the reward distribution, the
ablation table and the argv of the jobs it starts (parsed by the real CLI)."""

import pytest

from tests.rounds.builders import make_round_store, scored_pairs
from ui import rounds_steps as steps
from ui.context import AppContext
from cli import load_commands
from workbench.errors import WorkbenchError
from workbench.store import queries
from workbench.dpo.win_rates import head_to_head


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = tmp_path_factory.mktemp("rounds-tab")
    store, policy, rm = make_round_store(root)
    run = scored_pairs(store, policy, rm)
    rows = [{"prompt_id": f"p{i}", "score_a": float(i % 3), "score_b": 1.0, "tokens_a": 5 + i, "tokens_b": 5}
            for i in range(12)]
    evaluation = {"training_rm": head_to_head(rows, samples=50).as_dict(), "heldout": None, "reward_hacking": False}

    def write(con):
        queries.insert_round(con, 1, str(policy), str(policy), {"round": {"rm": rm}, "dpo": {}, "filter": {}})
        queries.insert_round_prompts(con, 1, "train", ["a", "b"])
        queries.update_round(con, 1, "sampled", generation_run=run)
        queries.update_round(con, 1, "evaluated", evaluation=evaluation)

    store.write(write)
    return AppContext.create(store)


def test_the_rounds_table_and_reward_distribution_read_the_store(ctx):
    table = steps.rounds_table(ctx)
    assert table.loc[0, "round"] == 1 and table.loc[0, "status"] == "completed" and table.loc[0, "prompts"] == 2
    assert table.loc[0, "win rate vs first"].startswith("0.") and "[" in table.loc[0, "LC win rate vs first"]
    assert table.loc[0, "mean reward"] is not None
    plot = steps.reward_distribution(ctx)
    assert set(plot["round"]) == {"round 1"} and plot["share"].sum() == pytest.approx(1.0)
    assert list(steps.ablation_table(ctx).columns)[:1] == ["comparison"]


def test_round_and_ablation_jobs_are_real_cli_calls(ctx):
    values = ["tiny-rm", "", "pool", 3, 3, 2, 8, "2", "1e-3", "0.5"]
    for argv in (steps.round_argv(ctx, values), steps.ablate_argv(ctx, values)):
        group = load_commands()
        names = argv[argv.index("-q") + 1:]
        command = group.commands[names[0]]
        command.make_context(names[0], names[1:])  # raises on an option the command does not have
    assert "--rm" in steps.round_argv(ctx, values)
    with pytest.raises(WorkbenchError, match="does not load reward model"):
        steps.round_argv(ctx, ["/etc/passwd", *values[1:]])
    with pytest.raises(WorkbenchError, match="minimum margin"):
        steps.ablate_argv(ctx, [*values[:-1], ""])


def test_the_app_has_a_rounds_tab_with_its_jobs(ctx, tmp_path):
    from ui.app import build_app

    demo = build_app(ctx.store, export_dir=tmp_path / "e", runs_dir=tmp_path / "r")
    names = {d.api_name for d in demo.fns.values() if d.api_visibility == "public"}
    assert {"round_start", "ablate_start", "rounds_cancel"} <= names
