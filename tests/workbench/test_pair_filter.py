"""One PairFilter drives the CLI options, the app's argv for `rm train --from-store` and the SQL."""

from dataclasses import fields

import pytest
from click.testing import CliRunner

from cli import load_commands
from workbench.errors import WorkbenchError
from workbench.curate.pair_filter import PairFilter
from workbench.store.queries import PAIR_CONDITIONS

EVERY_FIELD = PairFilter(source="s", min_margin=0.5, label="rm", rm="my-rm", strategy="top-k", tag="t",
                         min_score=-1.0, max_score=2.0, min_chars=3, max_chars=300, exclude_flagged=True, limit=7)


class Captured(Exception):
    """Raised by the stand-in library function, carrying the filter the command built."""


@pytest.mark.parametrize("args,rm_flag,target", [
    (["export", "{tmp}/out.jsonl"], "--rm", "workbench.exports.export.export_pairs"),
    (["rm", "train", "--from-store", "--out", "{tmp}/rm"], "--pairs-rm", "workbench.models.training.train_rm"),
    (["rm", "eval", "--rm", "x", "--from-store"], "--pairs-rm", "workbench.models.evaluation.evaluate_reward_model"),
])
def test_every_field_is_an_option_and_argv_parses_back_to_the_same_filter(tmp_path, monkeypatch, args, rm_flag,
                                                                           target):
    def capture(*_, pair_filter, **__):
        raise Captured(pair_filter)

    monkeypatch.setattr(target, capture)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args] + [str(a) for a in EVERY_FIELD.argv(rm_flag)]
    result = CliRunner().invoke(load_commands(), ["--db", str(tmp_path / "t.duckdb"), "-q", *argv])
    assert isinstance(result.exception, Captured), result.output
    assert result.exception.args[0] == EVERY_FIELD


def test_every_field_but_limit_has_one_sql_condition():
    assert [f.name for f in fields(PairFilter) if f.name != "limit"] == list(PAIR_CONDITIONS)


def test_validation_names_the_option():
    with pytest.raises(WorkbenchError, match="--min-chars"):
        PairFilter(min_chars=10, max_chars=5).validate()
    with pytest.raises(WorkbenchError, match="--limit must be >= 0"):
        PairFilter(limit=-1).validate()
    assert PairFilter().argv() == []
