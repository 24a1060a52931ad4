"""A reward-model training run's output directory: every file in it by name, read and written here.

    run = RunDirectory("runs/rm")
    run.write_config(config); run.append_metrics({"step": 1, "loss": 0.7}); run.mark_complete(result)
    run.read_metrics(); run.is_complete; run.holds_run()

The directory is the trained model itself (a standard HF directory, written by `RewardModel.save`)
plus the run's records below. Both trainers (`engine.training`, `engine.head_training`) write the
records through this type, and every reader (export, the workbench's claim, the app's chart) finds
them through it, so a file's name is written once. The workbench adds two of its own, named here
too so that an export leaves every record behind: the held-out pairs it evaluated on and the
claim that keeps two trainings out of one directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import EngineError

TRAIN_CONFIG = "train_config.json"
PRECISION = "precision.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
HEAD_PROBE = "head_probe.json"
FEATURES = "features.json"
COMPLETE = "training_complete.json"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
HELDOUT_PAIRS = "heldout_pairs.jsonl"  # written by the workbench before training
CLAIM = "training_claim.json"  # the workbench's lock on the directory
# what a run leaves beside the model; an exported model copies none of it
RECORDS = frozenset({TRAIN_CONFIG, PRECISION, METRICS, EVAL, HEAD_PROBE, FEATURES, COMPLETE, CHECKPOINTS, ADAPTER,
                     HELDOUT_PAIRS, CLAIM})
# what a training run (of this or an earlier version) leaves in its directory first
RUN_MARKS = (CLAIM, CHECKPOINTS, HELDOUT_PAIRS, TRAIN_CONFIG, COMPLETE)


def _write_json(path: Path, value, indent: int | None = 2) -> None:
    path.write_text(json.dumps(value, indent=indent) + "\n")


class RunDirectory:
    """The output directory of one training run (`path`), its files as attributes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.train_config = self.path / TRAIN_CONFIG
        self.precision = self.path / PRECISION
        self.metrics = self.path / METRICS
        self.eval = self.path / EVAL
        self.head_probe = self.path / HEAD_PROBE
        self.features = self.path / FEATURES
        self.complete_marker = self.path / COMPLETE
        self.checkpoints = self.path / CHECKPOINTS
        self.adapter = self.path / ADAPTER
        self.heldout_pairs = self.path / HELDOUT_PAIRS
        self.claim = self.path / CLAIM

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # ---- state --------------------------------------------------------------------------------

    @property
    def is_complete(self) -> bool:
        """Whether a run finished here (the model and its records are all written)."""
        return self.complete_marker.exists()

    def holds_run(self) -> bool:
        """A checkpoint or a finished run: something a fresh run must not overwrite."""
        from engine.checkpoint import latest_checkpoint

        return latest_checkpoint(self.path) is not None or self.is_complete

    def looks_like_a_run(self) -> bool:
        """Whether any file a training run writes first is here (a directory `--resume` may continue)."""
        return any((self.path / name).exists() for name in RUN_MARKS)

    def check_fresh(self, resume: bool) -> None:
        """Refuse to start a fresh run in a directory that holds a checkpoint or a finished run."""
        if not resume and self.holds_run():
            raise EngineError(f"{self.path} already holds a training run: pass --resume to continue it, "
                              "or choose another --out")

    # ---- writing ------------------------------------------------------------------------------

    def write_config(self, config) -> None:
        """The resolved `TrainConfig`, every field by name."""
        _write_json(self.train_config, config.as_dict())

    def write_precision(self, requested: str, resolved: str, cpu: dict) -> None:
        _write_json(self.precision, {"requested": requested, "resolved": resolved, "cpu": cpu}, indent=None)

    def start_metrics(self, resumed_step: int = 0) -> None:
        """An empty metrics log, or on resume the lines up to the step resumed from."""
        from engine.train_guards import truncate_metrics

        if resumed_step:
            truncate_metrics(self.metrics, resumed_step)
        else:
            self.metrics.write_text("")

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def write_eval(self, evaluation: dict) -> None:
        _write_json(self.eval, evaluation)

    def write_head_probe(self, probe: dict) -> None:
        _write_json(self.head_probe, probe)

    def write_features(self, stats: dict) -> None:
        _write_json(self.features, stats)

    def mark_complete(self, result: dict) -> None:
        """Written last: the run's result (`TrainResult.as_dict()`)."""
        _write_json(self.complete_marker, result)

    # ---- reading ------------------------------------------------------------------------------

    def read_metrics(self) -> list[dict]:
        """The per-step records so far; a half-written line (a run being written or killed) is skipped."""
        records = []
        if self.metrics.exists():
            for line in self.metrics.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "step" in record:
                    records.append(record)
        return records

    def read_json(self, path: Path) -> dict | None:
        """One of the JSON records (e.g. `run.read_json(run.eval)`), or None where it is not written."""
        return json.loads(path.read_text()) if path.exists() else None

    def promised_score_range(self) -> tuple[float, float] | None:
        """(-bound, bound) where the run trained with the log barrier, whose recipes keep training
        scores inside it (tested per recipe); None for any other penalty or no recorded config,
        whose scores an absolute threshold (`--min-score`) cannot be compared across."""
        config = self.read_json(self.train_config)
        if not config or config.get("penalty", "log_barrier") != "log_barrier":
            return None
        bound = float(config.get("barrier_bound", 5.0))
        return (-bound, bound)

