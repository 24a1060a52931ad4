"""`workbench export OUT --schema sft --rm NAME`: rejection sampling into an SFT dataset.

For every prompt, the `--top` best replies (default 1) by the reward model's stored scores become
rows of TRL's conversational language-modelling type: `{"messages": [...prompt messages,
{"role": "assistant", "content": reply}]}`, which TRL's `SFTTrainer` reads as it is.

Which replies compete: those of the prompt the model has scored, identical texts counted once,
after the reply filters (`--min-score/--max-score` on the reply's score, `--min-chars/--max-chars`,
`--exclude-flagged`; `--source` and `--tag` select prompts). The best is picked with the pair
builder's tie rule: among equal scores the shorter reply, then the lower id. Rows are ordered by
prompt id, then rank, so the same store and arguments give a byte-identical file; the manifest,
formats and run record are those of the DPO export. Filters that only make sense for pairs
(`--label`, `--strategy`, `--min-margin`) are refused.
"""

from __future__ import annotations

from workbench.errors import WorkbenchError
from workbench.models.reward_models import resolve_reward_model
from workbench.store import Store

PAIR_ONLY = {"label": "--label", "strategy": "--strategy", "min_margin": "--min-margin"}


def check_sft_export(store: Store, schema: str, pair_filter, top: int | None) -> tuple[str, int]:
    """(labeler NAME@VERSION, top) for an SFT export (or a `bon` one: every scored reply, no top), or
    a WorkbenchError saying what to fix."""
    if schema != "sft" and top is not None:
        raise WorkbenchError("--top applies to --schema sft only")
    top = 1 if top is None else top
    if top < 1:
        raise WorkbenchError("--top must be at least 1")
    if not pair_filter.rm:
        raise WorkbenchError(f"--schema {schema} needs --rm NAME: the reward model whose scores are exported")
    given = [option for field, option in PAIR_ONLY.items() if getattr(pair_filter, field) is not None]
    if given:
        raise WorkbenchError(f"{', '.join(given)} select pairs and do not apply to --schema {schema}")
    model = resolve_reward_model(store, pair_filter.rm)
    if model.combination:
        raise WorkbenchError(f"{model.label} labels combined pairs and has no scores of its own; "
                             "export the best replies of one of its member models")
    return model.label, top
