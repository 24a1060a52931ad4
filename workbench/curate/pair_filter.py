"""Which stored pairs a command works on: one `PairFilter` for `workbench export`,
`workbench rm train/eval --from-store` and the app's Curate & export and Retrain tabs.

Each field carries its help and its label in the app (`metadata`), and everything else is
generated from the fields, the way `engine.train_config.TrainConfig` drives `rm train`: the CLI
options (`cli.pair_filter_options`), the app's inputs (`ui.curate_tab`), the argv of
`rm train --from-store` (`argv`) and the export manifest's `filter` (`as_dict`). The SQL is
`workbench.store.queries.pair_filter`, one condition per field (`limit` is the export's LIMIT).
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields

from workbench.errors import WorkbenchError

LABELS = ("human", "rm")


def _option(help_text: str, label: str, default=None, **extra):
    return field(default=default, metadata={"help": help_text, "label": label, **extra})


@dataclass
class PairFilter:
    """A filter over stored pairs; every field is a bound SQL parameter, never SQL text."""

    source: str | None = _option("Only pairs whose prompt came from this source.", "Source")
    min_margin: float | None = _option("Only pairs with at least this reward margin.", "Minimum margin")
    label: str | None = _option("Only human-labelled or only RM-labelled pairs.", "Labelled by", choices=LABELS)
    rm: str | None = _option("Only pairs labelled by this reward model (NAME, NAME@VERSION, id).", "Labelled by")
    strategy: str | None = _option("Only pairs built with this strategy.", "Pair strategy")
    tag: str | None = _option("Only prompts with this tag.", "Tag")
    min_score: float | None = _option("Both replies scored at least this.", "Scores from")
    max_score: float | None = _option("Both replies scored at most this.", "Scores to")
    min_chars: int | None = _option("Both replies at least this many characters.", "Length from (chars)")
    max_chars: int | None = _option("Both replies at most this many characters.", "Length to (chars)")
    exclude_flagged: bool = _option("Drop pairs with a truncated or repetitive reply.",
                                    "Drop pairs with a truncated or repetitive reply", default=False)
    exclude_contaminated: bool = _option("Drop pairs whose prompt or a reply matches a benchmark "
                                         "(flagged by `workbench decontaminate`).",
                                         "Drop pairs that match a benchmark", default=False)
    generation_run: str | None = _option("Only pairs of replies both sampled by this generation run.",
                                         "Generation run")
    limit: int | None = _option("At most this many pairs (in pair-id order).", "At most")

    def validate(self) -> None:
        """Refuse a filter that cannot mean what was asked, with a message naming the option."""
        if self.label is not None and self.label not in LABELS:
            raise WorkbenchError(f"--label must be one of {', '.join(LABELS)}")
        for low, high, what, name in ((self.min_chars, self.max_chars, "length", "chars"),
                                      (self.min_score, self.max_score, "score", "score")):
            if low is not None and high is not None and low > high:
                raise WorkbenchError(f"the {what} range is empty: its minimum (--min-{name}) is above its "
                                     f"maximum (--max-{name})")
        for name in ("min_chars", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise WorkbenchError(f"--{name.replace('_', '-')} must be >= 0")

    def as_dict(self) -> dict:
        """Every field by name: what the export manifest and the training run record."""
        return asdict(self)

    def query_values(self, rm_id: str | None) -> dict:
        """The filter's values for `workbench.store.queries`, the reward model as its resolved id."""
        return self.as_dict() | {"rm": rm_id}

    def argv(self, rm_flag: str = "--rm") -> list:
        """The filter as CLI options (only those set); `rm_flag` names the reward-model option."""
        args = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value in (None, "", False):
                continue
            flag = rm_flag if f.name == "rm" else option_name(f.name)
            args += [flag] if value is True else [flag, value]
        return args

    def describe(self) -> str:
        """The fields that are set, as `name=value, ...` (or "all pairs")."""
        parts = [f"{k}={v}" for k, v in self.as_dict().items() if v not in (None, False, "")]
        return ", ".join(parts) or "all pairs"


def option_name(field_name: str) -> str:
    """The CLI option of a field: `min_margin` -> `--min-margin`."""
    return "--" + field_name.replace("_", "-")


def field_type(name: str) -> type:
    """The field's value type without Optional: str, float, int or bool."""
    hint = typing.get_type_hints(PairFilter)[name]
    return next((a for a in typing.get_args(hint) if a is not type(None)), hint)
