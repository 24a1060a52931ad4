"""`workbench dpo train`: DPO on stored pairs (chosen by a `PairFilter`, as `export` chooses them)
or on an export file, with TRL's trainer (engine/dpo.py); the result is a registered policy.

    train_policy(store, DPOTrainConfig(policy="smollm2", out_dir="runs/dpo-1"), name="dpo-1",
                 pair_filter=PairFilter(rm="demo-rm", min_margin=1.0))

The output directory holds `dpo_run.json` (the run's resolved config, written first), the
pairs (`pairs.jsonl`, an export recorded in the store, or the given file's hash), the trainer's
checkpoints and, at the end, `policy/` with merged weights. A rerun of the same command resumes:
it finds its own `dpo_run.json`, reuses the pairs file (so the data cannot shift under a
resumed run) and continues from the newest complete checkpoint; once the policy is registered a
rerun only reports it. A directory that holds anything else is refused, as are an empty
selection and a starting policy that is not a causal LM — before the store is changed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.dpo import POLICY_DIR, DPOTrainConfig
from workbench import ids
from workbench.errors import WorkbenchError
from workbench.curate.pair_filter import PairFilter
from workbench.dpo.policies import check_name_free, lookup_policy, policy_path, register_policy
from workbench.store.runs import recorded_run
from workbench.store import Store

RUN_FILE = "dpo_run.json"
PAIRS_FILE = "pairs.jsonl"


@dataclass
class PolicyTrainResult:
    name: str
    path: str
    run_id: str
    export_hash: str
    pairs: int
    steps: int
    resumed_from_step: int
    seconds: float
    already_trained: bool

    def as_dict(self) -> dict:
        return asdict(self)


def train_policy(store: Store, config: DPOTrainConfig, name: str, *, pair_filter: PairFilter | None = None,
                 pairs_file: str | Path | None = None, progress: bool = True) -> PolicyTrainResult:
    """Train (or resume, or only report) the DPO run in `config.out_dir` and register its policy."""
    if (pair_filter is None) == (pairs_file is None):
        raise WorkbenchError("give either a pair filter or --pairs FILE, not both")
    out = Path(config.out_dir)
    check_name_free(store, name, out)
    resolved = _resolved(store, config)
    source = {"pairs_file": str(Path(pairs_file).resolve())} if pairs_file else {"filter": pair_filter.as_dict()}
    record = {"name": name, "config": config.as_dict(), "resolved": resolved, **source}
    done = lookup_policy(store, name)
    _claim(out, record)
    if done is not None:  # registered by an earlier run of this same command
        return PolicyTrainResult(name, done["path"], done["run_id"], done["export_hash"], -1, -1, -1, 0.0, True)
    pairs, export_hash = _pairs(store, out, pair_filter, pairs_file)
    run_id = ids.run_id("dpo", {**record, "export_hash": export_hash})
    train_config = DPOTrainConfig(**{**config.as_dict(), **resolved})
    with recorded_run(store, run_id, "dpo", {**record, "export_hash": export_hash}) as run:
        from engine.dpo import train_dpo

        if (out / POLICY_DIR / "config.json").is_file():  # trained, killed before registering
            steps, resumed, seconds = -1, -1, 0.0
        else:
            trained = train_dpo(train_config, pairs, progress=progress)
            steps, resumed, seconds = trained.steps, trained.resumed_from_step, trained.seconds
        policy = register_policy(store, name, out / POLICY_DIR, base=config.policy,
                                 reference=config.reference or config.policy, export_hash=export_hash,
                                 hyper_parameters=config.hyper_parameters(), run_id=run_id)
        result = PolicyTrainResult(name, policy["path"], run_id, export_hash, len(pairs), steps, resumed, seconds,
                                   False)
        run.summary = result.as_dict()
    return result


def _resolved(store: Store, config: DPOTrainConfig) -> dict:
    """The policy and reference as weights directories (a registered policy name is looked up),
    the starting policy checked to be a causal LM."""
    from engine.backbone import resolve_model_path
    from engine.dpo import check_causal_lm

    policy = str(resolve_model_path(policy_path(store, config.policy)))
    check_causal_lm(policy)
    reference = str(resolve_model_path(policy_path(store, config.reference))) if config.reference else None
    return {"policy": policy, "reference": reference}


def _claim(out: Path, record: dict) -> None:
    """Refuse an --out that holds anything but this same run; write the run file into a new one."""
    run_file = out / RUN_FILE
    if run_file.is_file():
        earlier = json.loads(run_file.read_text())
        if earlier != json.loads(json.dumps(record)):
            raise WorkbenchError(f"--out {out} holds another DPO run ({earlier.get('name')}); choose a new --out, "
                                 "or rerun that run's own command to resume it")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WorkbenchError(f"--out {out} exists and is not a DPO run of this command: choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    tmp = run_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(run_file)


def _pairs(store: Store, out: Path, pair_filter: PairFilter | None, pairs_file) -> tuple[list[dict], str]:
    """The training rows and the sha256 of the file they came from (exported on the first run)."""
    from workbench.exports.export import count_pairs, export_pairs

    path = Path(pairs_file) if pairs_file else out / PAIRS_FILE
    if pairs_file is None and not path.is_file():
        if count_pairs(store, pair_filter) == 0:
            _release(out)
            raise WorkbenchError(f"no stored pairs match the filter ({pair_filter.describe()}): build pairs with "
                                 "`workbench pairs` or loosen the filter")
        export_pairs(store, path, schema="trl", pair_filter=pair_filter)
    if not path.is_file():
        raise WorkbenchError(f"--pairs {path} does not exist")
    rows = _read_pairs(path)
    if not rows:
        _release(out)
        raise WorkbenchError(f"{path} has no pairs: export some with `workbench export`")
    return rows, ids.sha256_file(path)


def _read_pairs(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
            if missing:
                raise WorkbenchError(f"{path}:{line_number}: missing {', '.join(missing)} (export with --schema trl)")
            rows.append(row)
    return rows


def _release(out: Path) -> None:
    """Undo the claim of a run refused before it started, so the refusal leaves nothing behind."""
    (out / RUN_FILE).unlink(missing_ok=True)
    try:
        out.rmdir()
    except OSError:
        pass
