"""The CLI calls the app runs as jobs (Best-of-N, reward-model training, evaluation, scoring),
built from plain settings, and the readers of what they leave behind (JSON results, metrics).

The app never composes a shell line: every command is an argv list of `workbench` options, and
every value a person typed is one argv element, validated here first.
"""

from __future__ import annotations

import json
import re
import typing
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path

import pandas as pd

from engine.recipes import RECIPES
from engine.run_dir import RunDirectory
from engine.train_config import TrainConfig
from workbench.models.allowed_models import AllowedModels
from workbench.errors import WorkbenchError
from workbench.runtime.jobs import workbench_command
from workbench.curate.pair_filter import PairFilter
from workbench.generate.selection import PromptSelection
from workbench.store import Store, queries

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
METRIC_COLUMNS = ["step", "loss", "accuracy", "chosen_score", "rejected_score", "lr", "tokens_per_s"]
EVAL_KEYS = ("n", "accuracy", "mean_margin", "length_baseline")


# Upper bounds on what the app may ask for, so one request cannot exhaust the machine's memory
# (batch x N x tokens) or train into NaN. The UI shows them as the inputs' maxima.
MAX_N = 64
MAX_BATCH_SIZE = 256
MAX_NEW_TOKENS = 2048
MAX_LR = 1e-2
MAX_TRAIN_LENGTH = 4096
MAX_PAIRS_PER_STEP = 256


def _check_positive(**values) -> None:
    for name, value in values.items():
        if value is None or value <= 0:
            raise WorkbenchError(f"{name.replace('_', ' ')} must be a positive number")


def _check_at_most(**values) -> None:
    """values: name=(value, maximum)."""
    for name, (value, maximum) in values.items():
        if value > maximum:
            raise WorkbenchError(f"{name.replace('_', ' ')} must be at most {maximum:g} in the app, not {value:g}")


# --- Best-of-N ------------------------------------------------------------------------------

@dataclass
class SampleRequest:
    """One Sample-tab run: which prompts, which policy and reward model, how to sample."""

    policy: str = "smollm2"
    rm: str | None = None            # None: sample only, no scoring and no pick
    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0
    batch_size: int = 32
    selection: PromptSelection = field(default_factory=PromptSelection)

    def validate(self) -> None:
        if not (self.policy or "").strip():
            raise WorkbenchError("give a policy: a model directory, a .gguf file, or smollm2")
        _check_positive(n=self.n, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        _check_at_most(n=(self.n, MAX_N), max_new_tokens=(self.max_new_tokens, MAX_NEW_TOKENS),
                       batch_size=(self.batch_size, MAX_BATCH_SIZE))
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise WorkbenchError("temperature must be >= 0 and top-p in (0, 1]")
        if self.selection.limit is not None and self.selection.limit < 1:
            raise WorkbenchError("the prompt limit must be at least 1 (or empty for all)")


def count_selected_prompts(store: Store, selection: PromptSelection) -> int:
    """How many prompts a selection picks (what `workbench sample` would work on)."""
    with store.connect() as con:
        total = queries.count_prompts(con, selection.as_dict())
    return total if selection.limit is None else min(total, selection.limit)


def sample_command(store: Store, request: SampleRequest, allowed: AllowedModels | None = None) -> list[str]:
    """`workbench bon` (with a reward model) or `workbench sample` (without) for the request; with
    `allowed` (the app), the policy and reward model must be ones it may load."""
    request.validate()
    if allowed is not None:
        allowed.check_model(store, request.policy)
        if request.rm:
            allowed.check_reward_model(store, request.rm)
    args = ["bon", "--rm", request.rm] if request.rm else ["sample"]
    args += ["--policy", request.policy.strip(), "--n", request.n, "--temperature", request.temperature,
             "--top-p", request.top_p, "--max-new-tokens", request.max_new_tokens, "--seed", request.seed,
             "--batch-size", request.batch_size]
    selection = request.selection
    for option, value in (("--source", selection.source), ("--tag", selection.tag), ("--search", selection.search),
                          ("--limit", selection.limit)):
        if value not in (None, ""):
            args += [option, value]
    return workbench_command(store, *args, "--json")


def parse_json_output(text: str) -> dict | None:
    """The JSON object a `--json` command printed (the last one, if several), or None."""
    text = text.strip()
    start = text.rfind("\n{")
    for candidate in (text, text[start + 1:] if start >= 0 else None):
        if candidate:
            try:
                return json.loads(candidate)
            except json.JSONDecodeError:
                continue
    return None


# --- reward-model training ------------------------------------------------------------------

TRAIN_RECIPES = list(RECIPES)


# The TrainConfig fields the app's Retrain tab sets, each with TrainConfig's type, default and help,
# except the app's own defaults: a shorter max length (the same truncation as `rm train` in the
# README, so retrains reuse the cached features) and smaller steps for small curated sets.
APP_TRAIN_FIELDS = ("base", "epochs", "lr", "max_length", "pairs_per_step", "max_steps", "seed")
APP_TRAIN_DEFAULTS = {"max_length": 1024, "pairs_per_step": 8}


@dataclass
class _TrainRunSettings:
    """What `rm train` takes besides its TrainConfig: the model's name, the recipe, the held-out share."""

    name: str = "rm-curated"
    recipe: str = "head-only"        # engine.recipes: head-only, lora, full, qlora
    eval_fraction: float = 0.1

    def validate(self) -> None:
        if not _NAME.match(self.name or ""):
            raise WorkbenchError("the model name takes letters, digits, '.', '-' and '_' (up to 64), e.g. rm-v2")
        if not (self.base or "").strip():
            raise WorkbenchError("give a base model: a directory or smollm2")
        if self.recipe not in TRAIN_RECIPES:
            raise WorkbenchError(f"unknown recipe {self.recipe!r}: pick one of {', '.join(TRAIN_RECIPES)}")
        _check_positive(epochs=self.epochs, max_length=self.max_length, pairs_per_step=self.pairs_per_step)
        if self.lr is not None and not 0 < self.lr <= MAX_LR:
            raise WorkbenchError(f"learning rate must be a positive number up to {MAX_LR:g} "
                                 "(or empty for the default)")
        _check_at_most(max_length=(self.max_length, MAX_TRAIN_LENGTH),
                       pairs_per_step=(self.pairs_per_step, MAX_PAIRS_PER_STEP))
        if self.max_steps is not None and self.max_steps < 1:
            raise WorkbenchError("max steps must be at least 1 (or empty for no limit)")
        if not 0 < self.eval_fraction < 1:
            raise WorkbenchError("the held-out fraction must be between 0 and 1, e.g. 0.1")


def _train_config_fields(names: tuple[str, ...], defaults: dict) -> list[tuple]:
    """(name, type, field) of these TrainConfig fields, for `make_dataclass`."""
    hints, config_fields = typing.get_type_hints(TrainConfig), {f.name: f for f in fields(TrainConfig)}
    return [(name, hints[name], field(default=defaults.get(name, config_fields[name].default),
                                      metadata=config_fields[name].metadata)) for name in names]


# Settings of `workbench rm train --from-store` (see its --help): the run settings above plus the
# APP_TRAIN_FIELDS of TrainConfig, derived from it (a new TrainConfig help or type shows here too).
TrainRequest = make_dataclass("TrainRequest", _train_config_fields(APP_TRAIN_FIELDS, APP_TRAIN_DEFAULTS),
                              bases=(_TrainRunSettings,), namespace={"__module__": __name__})


def train_command(store: Store, flt: PairFilter, request: TrainRequest, out_dir: Path,
                  allowed: AllowedModels | None = None) -> list[str]:
    """argv of `workbench rm train` on the curated pairs; with `allowed` (the app), the base model
    must be one it may load."""
    request.validate()
    flt.validate()
    if allowed is not None:
        allowed.check_model(store, request.base)
    args = ["rm", "train", "--from-store", *flt.argv(rm_flag="--pairs-rm")]
    args += ["--base", request.base.strip(), "--out", str(out_dir), "--name", request.name]
    for name in APP_TRAIN_FIELDS:  # the options `rm train` generates from TrainConfig (`--base`: by hand)
        if name != "base" and getattr(request, name) is not None:
            args += ["--" + name.replace("_", "-"), getattr(request, name)]
    args += ["--eval-fraction", request.eval_fraction, "--recipe", request.recipe]
    return workbench_command(store, *args, "--json")


def training_dir(runs_dir: str | Path, name: str) -> Path:
    """Where the app trains a model called `name` (a checked name inside the runs directory)."""
    if not _NAME.match(name or ""):
        raise WorkbenchError("the model name takes letters, digits, '.', '-' and '_' (up to 64), e.g. rm-v2")
    return Path(runs_dir) / "reward-models" / name


def read_metrics(out_dir: str | Path) -> pd.DataFrame:
    """The per-step metrics a training run wrote so far (DIR/metrics.jsonl); a half-written last
    line is skipped."""
    records = [{k: record.get(k) for k in METRIC_COLUMNS} for record in RunDirectory(out_dir).read_metrics()]
    return pd.DataFrame(records, columns=METRIC_COLUMNS)


def loss_curve(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long format (step, value, metric) of loss and accuracy, for one line plot."""
    frames = [pd.DataFrame({"step": metrics["step"], "value": metrics[name], "metric": name})
              for name in ("loss", "accuracy") if metrics[name].notna().any()]
    if not frames:
        return pd.DataFrame({"step": pd.Series(dtype=int), "value": pd.Series(dtype=float),
                             "metric": pd.Series(dtype=str)})
    return pd.concat(frames, ignore_index=True)


# --- evaluation and re-scoring --------------------------------------------------------------

def heldout_path(out_dir: str | Path) -> Path:
    """The held-out pairs a training run wrote into its output directory."""
    return RunDirectory(out_dir).heldout_pairs


# What "Evaluate both" grades the two models on (the app's choices).
EVAL_SETS = {"heldout": "The new model's held-out pairs", "human": "Human-labelled pairs in the store",
             "curated": "The pairs selected in Curate & export"}


def eval_commands(store: Store, models: list[str], data: str | Path | None = None, *,
                  pair_filter: PairFilter | None = None) -> list[list[str]]:
    """One `workbench rm eval --json` per reward model, on the same pairs: a file (`data`) or the
    store's `pair_filter` selection. Each names the others with --compared-with, so every model is
    graded on the same pairs and none on pairs one of them labelled."""
    if data is not None and not Path(data).exists():
        raise WorkbenchError(f"{data} does not exist: train a model first (it writes its held-out pairs there)")
    pairs = ["--data", str(data)] if data is not None else ["--from-store", *pair_filter.argv(rm_flag="--pairs-rm")]
    return [workbench_command(store, "rm", "eval", "--rm", model, *pairs,
                              *[arg for other in models if other != model for arg in ("--compared-with", other)],
                              "--json") for model in models]


def compare_evaluations(names: list[str], outputs: list[str]) -> pd.DataFrame:
    """A table: one row per metric, one column per model, plus the change (last minus first)."""
    results = []
    for name, output in zip(names, outputs):
        result = parse_json_output(output)
        if result is None:
            raise WorkbenchError(f"the evaluation of {name} printed no result; see the job log")
        results.append(result)
    table = pd.DataFrame({"metric": list(EVAL_KEYS)})
    for name, result in zip(names, results):
        table[name] = [None if result.get(k) is None else round(result[k], 4) for k in EVAL_KEYS]
    if len(names) == 2:
        first, last = names
        table["change"] = [None if a is None or b is None else round(b - a, 4)
                           for a, b in zip(table[first], table[last])]
    return table


def rescore_command(store: Store, rm: str, allowed: AllowedModels | None = None) -> list[str]:
    """argv of `workbench score --json` with the reward model; with `allowed` (the app), it must be
    one the app may load."""
    if not rm:
        raise WorkbenchError("pick the reward model to score the store with")
    if allowed is not None:
        allowed.check_reward_model(store, rm)
    return workbench_command(store, "score", "--rm", rm, "--json")
