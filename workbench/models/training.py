"""`workbench rm train`: train a reward model on pairs from files or from the store.

The workbench side gathers the pairs (any file `workbench import` reads, or the store's pairs
selected with the same filters as `workbench export`), holds out a share of prompts for
evaluation, records the run, calls `engine.training`, and registers the trained model in the
store. Under torchrun only rank 0 reads the data and touches the store; the pairs are broadcast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import orjson

from engine.data import PreferencePair
from engine.distributed import broadcast_object, compute_init
from engine.train_config import TrainConfig
from workbench import ids
from workbench.errors import InputError, WorkbenchError
from workbench.exports.export import query_values
from workbench.ingest.importer import parse_files
from workbench.curate.pair_filter import PairFilter
from workbench.models.reward_models import register_reward_model
from workbench.store.runs import recorded_run
from workbench.store import Store, queries
from workbench.models.training_claim import claim_output_dir


def pairs_from_files(paths: Sequence[str | Path], fmt: str = "auto", skip_invalid: bool = False,
                     progress: bool = True) -> list[PreferencePair]:
    """The chosen/rejected pairs in files any `workbench import` format reads."""
    good, bad, _ = parse_files([Path(p) for p in paths], fmt, progress=progress, skip_oversized=skip_invalid)
    if bad and not skip_invalid:
        raise InputError(f"{len(bad)} invalid record(s); first: {bad[0].describe()}. "
                         "Fix them or pass --skip-invalid")
    pairs = [PreferencePair(r.record.prompt, r.record.responses[r.record.pair[0]],
                            r.record.responses[r.record.pair[1]], id=f"{Path(r.file).name}:{r.line}")
             for r in good if r.record.pair is not None]
    if not pairs:
        raise WorkbenchError("the data holds no preference pairs (chosen/rejected records)")
    return pairs


def pairs_from_store(store: Store, pair_filter: PairFilter) -> list[PreferencePair]:
    """The pairs an export with this filter would write, in the same order."""
    values = query_values(store, pair_filter)
    with store.connect() as con:
        found = queries.selected_pairs(con, values)
    if pair_filter.limit is not None:
        found = found[:pair_filter.limit]
    if not found:
        raise WorkbenchError("no pairs match the selection: import pairs or build them with `workbench pairs build`")
    return [PreferencePair(json.loads(messages), chosen, rejected, id=pair_id)
            for pair_id, _, messages, chosen, rejected in found]


def heldout_share(pair: PreferencePair, seed: int) -> float:
    """A stable number in [0, 1) per prompt: the same prompt always falls on the same side."""
    digest = ids.digest("heldout", str(seed), ids.canonical_messages(pair.prompt))
    return int(digest[:8], 16) / 16**8


def split_heldout(pairs: list[PreferencePair], fraction: float, seed: int = 0):
    """(train, held out): whole prompts are held out, chosen by a hash of the prompt and the seed."""
    if not 0 <= fraction < 1:
        raise WorkbenchError("--eval-fraction must be in [0, 1)")
    heldout = [p for p in pairs if heldout_share(p, seed) < fraction]
    train = [p for p in pairs if heldout_share(p, seed) >= fraction]
    return train, heldout


def write_pairs(pairs: Sequence[PreferencePair], path: Path) -> None:
    """TRL conversational schema, one pair per line."""
    with open(path, "wb") as f:
        f.write(_pairs_jsonl(pairs))


def _pairs_jsonl(pairs: Sequence[PreferencePair]) -> bytes:
    return b"".join(orjson.dumps({"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
                                  "rejected": [{"role": "assistant", "content": p.rejected}], "id": p.id}) + b"\n"
                    for p in pairs)


def write_heldout(pairs: Sequence[PreferencePair], path: Path, resume: bool, *, dry_run: bool = False) -> None:
    """Write the held-out pairs; a resumed run must hold out exactly the pairs it held out before.

    `dry_run` only checks that (nothing is written).
    """
    content = _pairs_jsonl(pairs)
    if resume and path.exists():
        if path.read_bytes() != content:
            raise WorkbenchError(f"{path} holds other held-out pairs than this command makes: resume with the "
                                 "run's own data, --eval-fraction and --eval-data, or train into a new --out")
        return
    if pairs and not dry_run:
        path.write_bytes(content)


def train_rm(store: Store | None, config: TrainConfig, *, data: Sequence[str] = (),
             pair_filter: PairFilter | None = None, fmt: str = "auto", skip_invalid: bool = False,
             eval_fraction: float = 0.1,
             eval_data: Sequence[str] = (), name: str | None = None, resume: bool = False,
             progress: bool = True, allow_pickle: bool = False) -> dict:
    """Gather pairs, train, register. Returns the training result plus data counts and the model row.

    The output directory is claimed first (training_claim.py): a fresh run needs a new or empty one.
    """
    from engine.run_dir import RunDirectory
    from engine.trainers import train as train_model

    ctx = compute_init(config.device)
    selection = {"data": [str(d) for d in data], "store_filter": pair_filter.as_dict() if pair_filter else None,
                 "eval_fraction": eval_fraction, "eval_data": [str(d) for d in eval_data]}
    run_id = ids.run_id("training", {"config": config.as_dict(), "selection": selection})
    payload, claim, failed = None, None, True
    if ctx.is_main:
        train, heldout = _gather_pairs(store, config, data, pair_filter, fmt, skip_invalid, eval_fraction,
                                       eval_data, progress)
        heldout_path = RunDirectory(config.out_dir).heldout_pairs
        write_heldout(heldout, heldout_path, resume, dry_run=True)  # refuse before claiming
        claim = claim_output_dir(config.out_dir, resume)  # before anything is written into it
    try:
        if ctx.is_main:
            write_heldout(heldout, heldout_path, resume)
            payload = (train, heldout)
        train, heldout = broadcast_object(payload)
        record = {"config": config.as_dict(), "selection": selection, "train_pairs": len(train),
                  "heldout_pairs": len(heldout)}
        with recorded_run(store if ctx.is_main else None, run_id, "training", record) as run:
            result = train_model(config, train, heldout or None, resume=resume, progress=progress, ctx=ctx,
                                 allow_pickle=allow_pickle)
            summary = result.as_dict() | {"train_pairs": len(train), "heldout_pairs": len(heldout), "run_id": run_id}
            if ctx.is_main and store is not None:
                model = register_reward_model(store, config.out_dir, name=name or Path(config.out_dir).name,
                                              run_id=run_id)
                summary["reward_model"] = model.as_reference()
            run.summary = summary
        failed = False
        return summary
    finally:
        if claim is not None:  # a failed run under torchrun keeps its files: the other ranks may still use them
            claim.release(failed=failed and not ctx.is_distributed)


def _gather_pairs(store: Store | None, config: TrainConfig, data: Sequence[str], pair_filter: PairFilter | None,
                  fmt: str, skip_invalid: bool, eval_fraction: float, eval_data: Sequence[str],
                  progress: bool) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held out) pairs from files or the store (nothing is written)."""
    if bool(data) == bool(pair_filter):
        raise WorkbenchError("give the training pairs with --data FILE... or --from-store (not both)")
    pairs = pairs_from_files(data, fmt, skip_invalid, progress) if data else pairs_from_store(store, pair_filter)
    if eval_data:
        train, heldout = pairs, pairs_from_files(eval_data, "auto", skip_invalid, progress)
    else:
        train, heldout = split_heldout(pairs, eval_fraction, config.seed)
    if not train:
        raise WorkbenchError("every pair fell into the held-out share: lower --eval-fraction")
    return train, heldout
