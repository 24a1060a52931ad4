"""The Review tab's steps without a browser: scores stay hidden until asked for, a label moves on to
the next item, a key press with nothing on screen or a bad size is one clear error."""

import pytest

from tests.workbench.review_data import review_template, store  # noqa: F401
from ui import review_steps as steps
from ui.context import AppContext
from workbench.errors import WorkbenchError


def test_scores_hidden_by_default_and_labels_move_on(store, tmp_path):  # noqa: F811
    ctx = AppContext.create(store, tmp_path / "exports", tmp_path / "runs")
    assert steps.fill(ctx, "q", "lowest-margin", "2", "1", "0").startswith("Added 2 pairs")
    # rm-b made no pairs: restricted to it, the source has nothing to add
    assert steps.fill(ctx, "other", "lowest-margin", "2", "1", "0", ["rm-b@1"]).startswith("Added 0 pairs")
    with pytest.raises(WorkbenchError, match="must be a whole number"):
        steps.fill(ctx, "q", "lowest-margin", "2.5", "1", "0")
    shown, status, prompt, left, right, scores = steps.show_next(ctx, "q", "alice", False)
    assert "2 left" in status and scores == "" and "rm-a@1" not in left + right
    again, *_, scores = steps.show_next(ctx, "q", "alice", True)
    assert again == shown and "rm-a@1" in scores and "rm-b@1" in scores
    assert steps.label(ctx, shown, "alice", "tie", "close call").startswith("Saved: tie")
    following, status, *_ = steps.show_next(ctx, "q", "alice", False)
    assert following.item_id != shown.item_id and "1 labelled · 1 left" in status
    with pytest.raises(WorkbenchError, match="No item on screen"):
        steps.label(ctx, None, "alice", "left", "")
    summary, labelers, disputed = steps.agreement_view(ctx, "q")
    assert "1 votes by 1 annotators" in summary and disputed.empty
