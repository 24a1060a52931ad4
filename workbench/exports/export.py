"""`workbench export`: write DPO pairs in the TRL / XTuner schema as JSONL, Parquet or a
`datasets` directory, with a manifest beside it.

DuckDB runs the selection once into a temporary table, counts it by labeler for the manifest,
and writes JSON Lines itself (Parquet and `datasets` go through Arrow).

Schemas:
- `trl` (also `xtuner`, which reads the same layout): `prompt` is the message list,
  `chosen` and `rejected` are one-message assistant lists — TRL's conversational preference type.
- `trl-standard`: strings. A single-turn prompt is its user text; a multi-turn prompt is rendered
  as an hh-rlhf style transcript ending in "\\n\\nAssistant:", and the replies start with a space.
- `reward`: `trl` plus each pair's `margin`, which TRL's RewardTrainer subtracts from the reward
  difference (pairs without a margin, i.e. human labels, are refused).
- `kto`: unpaired rows for TRL's KTOTrainer: `prompt`, `completion` (one assistant message) and
  `label` (true for a pair's chosen reply, false for its rejected one).
- `bon`: no pairs: one row per prompt with every reply the `--rm` model scored, best first, as
  `{"prompt": [...], "responses": [{"text", "score"}, ...]}` (the `bon` import format; the reply
  filters apply, as for `sft`).
- `sft`: no pairs: each prompt's best `top` replies by the `--rm` model as TRL's conversational
  `messages` rows (rejection sampling; see `workbench.exports.sft`).

Same store and same arguments give a byte-identical file: rows are ordered by pair id and
nothing time-dependent is written into the data file (the manifest carries the time).
An existing path is replaced only with `overwrite` and only if it is an earlier export; data and
manifest are staged under temporary names and swapped in after the store commits (export_files.py).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from workbench import ids
from workbench.errors import WorkbenchError, check_name_is_text
from workbench.curate.explain import check_length_bias, length_bias, waterfall
from workbench.exports.export_files import StagedExport, check_export_target, manifest_path
from workbench.curate.pair_filter import PairFilter
from workbench.store.provenance import code_version
from workbench.models.reward_models import resolve_reward_model
from workbench.store.runs import record_completed_run
from workbench.store import Store, queries

if TYPE_CHECKING:  # loaded where written: the CLI reads FORMATS and SCHEMAS without loading pyarrow
    import pyarrow as pa

FORMATS = ("jsonl", "parquet", "hf")
SCHEMAS = ("trl", "trl-standard", "xtuner", "reward", "kto", "sft", "bon")
# Schemas whose rows are replies of one reward model, not pairs (`workbench.exports.sft`).
REPLY_SCHEMAS = ("sft", "bon")


@dataclass
class ExportResult:
    path: str
    manifest_path: str
    format: str
    schema: str
    rows: int
    content_hash: str
    store_hash: str
    why_dropped: dict | None = None
    length_bias: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def store_hash(con) -> str:
    """SHA-256 over the store's completed data runs and table sizes: which state an export came from."""
    return hashlib.sha256(ids.canonical_json(queries.store_fingerprint_rows(con)).encode()).hexdigest()


def query_values(store: Store, pair_filter: PairFilter) -> dict:
    """The filter's values for the export query, its reward model resolved (a directory is registered)."""
    pair_filter.validate()
    rm_id = resolve_reward_model(store, pair_filter.rm).rm_id if pair_filter.rm is not None else None
    return pair_filter.query_values(rm_id)


def count_pairs(store: Store, pair_filter: PairFilter) -> int:
    """How many rows an export with this filter would write (before its limit)."""
    values = query_values(store, pair_filter)
    with store.connect() as con:
        return queries.count_export_pairs(con, values)


def _check_arguments(store: Store, fmt: str, schema: str, pair_filter: PairFilter, top: int | None,
                     max_length_bias: float | None) -> tuple[str | None, int | None]:
    """Refuse what cannot be exported; the labeler and `top` of a reply schema (else None, None)."""
    pair_filter.validate()
    labeler = None
    if schema in REPLY_SCHEMAS or top is not None:
        from workbench.exports.sft import check_sft_export

        labeler, top = check_sft_export(store, schema, pair_filter, top)
        top = top if schema == "sft" else None
    if max_length_bias is not None and (schema in REPLY_SCHEMAS or max_length_bias < 0):
        raise WorkbenchError(f"--max-length-bias takes a Cohen's d >= 0 and applies to pairs, not to --schema {schema}")
    if fmt not in FORMATS:
        raise WorkbenchError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if schema not in SCHEMAS:
        raise WorkbenchError(f"unknown schema '{schema}'; choose one of {', '.join(SCHEMAS)}")
    return labeler, top


def _stage(con, schema: str, values, limit: int | None, labeler, top: int | None, column_sets,
           with_scores: bool, with_provenance: bool) -> dict:
    """Stage the export's rows in the transaction; how many rows each labeler gave."""
    if schema == "sft":
        from workbench.store.sft import stage_sft_export

        return stage_sft_export(con, values, labeler, top, column_sets, limit)
    if schema == "bon":
        from workbench.store.sft import stage_scored_export

        return stage_scored_export(con, values, labeler, limit)
    if schema == "kto":
        return queries.stage_kto_export(con, values, with_scores, with_provenance, limit)
    if schema == "reward":
        _require_margins(con, values, limit)
    return queries.stage_export(con, values, column_sets, limit)


def export_pairs(store: Store, out: str | Path, *, fmt: str = "jsonl", schema: str = "trl",
                 pair_filter: PairFilter | None = None, with_scores: bool = False,
                 with_provenance: bool = False, top: int | None = None, overwrite: bool = False,
                 max_length_bias: float | None = None) -> ExportResult:
    """Write the filtered pairs to `out` in one format and schema, plus the manifest beside it;
    the export is recorded in the store (run and exports row). Same store and arguments: same bytes.
    With schema "sft", each prompt's best `top` replies by `pair_filter.rm` instead (`workbench.exports.sft`).

    An existing `out` is refused unless `overwrite`, and then only an earlier export is replaced.
    The manifest says how many pairs each filter step removed (`why_dropped`) and how chosen and
    rejected lengths differ (`length_bias`); `max_length_bias` refuses a selection whose |Cohen's d|
    is above it (`workbench.curate.explain`).
    """
    pair_filter = pair_filter or PairFilter()
    labeler, top = _check_arguments(store, fmt, schema, pair_filter, top, max_length_bias)
    check_name_is_text(out)
    out = Path(out)
    check_export_target(out, fmt, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    values = query_values(store, pair_filter)

    column_sets = _column_sets(schema, with_scores, with_provenance)
    config = {"path": str(out.resolve()), "format": fmt, "schema": schema, "filter": pair_filter.as_dict(),
              "with_scores": with_scores, "with_provenance": with_provenance, **_top_field(top)}
    manifest_file = manifest_path(out, fmt)

    def work(con, staged: StagedExport) -> ExportResult:
        # one transaction: what is counted, written and recorded is one consistent state of the store
        fingerprint = store_hash(con)
        checks = {} if schema in REPLY_SCHEMAS else {"why_dropped": waterfall(con, values, pair_filter),
                                             "length_bias": length_bias(con, values, pair_filter)}
        decided = {} if schema in REPLY_SCHEMAS else {
            "decided_by": queries.decided_by_kind(con, values, pair_filter.limit)}
        if max_length_bias is not None:
            check_length_bias(checks["length_bias"], max_length_bias)
        labelers = _stage(con, schema, values, pair_filter.limit, labeler, top, column_sets, with_scores,
                          with_provenance)
        rows = sum(labelers.values())
        if fmt == "jsonl":
            content_hash = _write_jsonl(con, staged.data)
        else:
            table = queries.staged_export_table(con)
            content_hash = (_write_parquet if fmt == "parquet" else _write_hf)(table, staged.data)
        manifest = {
            "path": str(out), "format": fmt, "schema": schema, "rows": rows,
            "filter": pair_filter.as_dict(), "columns": {"scores": with_scores, "provenance": with_provenance},
            **_top_field(top),
            "labelers": labelers, **decided, "reward_models": _reward_models(con, labelers), **checks,
            "content_sha256": content_hash, "store_hash": fingerprint, "store": str(store.path),
            "code_version": code_version(), "created_at": datetime.now(timezone.utc).isoformat(),
        }
        staged.write_manifest(manifest)
        run_id = ids.run_id("export", {**config, "content": content_hash, "store": fingerprint})
        record_completed_run(con, run_id, "export", config, {"rows": rows, "content_sha256": content_hash})
        queries.insert_export(con, ids.export_id(str(out.resolve()), content_hash), run_id,
                              str(out.resolve()), fmt, schema, pair_filter.as_dict(), rows, content_hash, fingerprint)
        return ExportResult(str(out), str(manifest_file), fmt, schema, rows, content_hash, fingerprint,
                            checks.get("why_dropped"), checks.get("length_bias"))

    with StagedExport(out, fmt) as staged:
        result = store.write(lambda con: work(con, staged))
        staged.swap_in()  # only once the store holds the export: files and store agree
    return result


def _column_sets(schema: str, with_scores: bool, with_provenance: bool) -> list[str]:
    """The export query's column sets for a pair schema (`kto` and `sft` write rows of their own)."""
    if schema == "reward":  # TRL's RewardTrainer: conversational pairs and their margin
        return ["conversational", "margin"] + ["reply_scores"] * with_scores + ["provenance"] * with_provenance
    base = "standard" if schema == "trl-standard" else "messages" if schema == "sft" else "conversational"
    return [base] + ["scores"] * with_scores + ["provenance"] * with_provenance


def _require_margins(con, values: dict, limit: int | None) -> None:
    missing = queries.pairs_without_margin(con, values, limit)
    if missing:
        raise WorkbenchError(f"--schema reward writes each pair's margin, and {missing} selected pairs have none "
                             "(human labels): select reward-model pairs (--label rm), or use --schema trl, "
                             "which RewardTrainer reads without margins")


def _top_field(top: int | None) -> dict:
    return {"top": top} if top else {}


def _reward_models(con, labelers: dict) -> list[dict]:
    """The reward models behind the NAME@VERSION labelers of an export."""
    return [queries.lookup_reward_model(con, label).as_manifest() for label in sorted(labelers) if label != "human"]


def _write_jsonl(con, out: Path) -> str:
    queries.write_staged_export_jsonl(con, str(out))
    return ids.sha256_file(out)


def _write_parquet(table: pa.Table, out: Path) -> str:
    import pyarrow.parquet as pq

    pq.write_table(table, out, compression="zstd")
    return ids.sha256_file(out)


def _write_hf(table: pa.Table, out: Path) -> str:
    import pyarrow as pa
    from datasets import Dataset

    content_hash = hashlib.sha256()
    for batch in table.to_batches():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        content_hash.update(sink.getvalue().to_pybytes())
    digest = content_hash.hexdigest()
    shutil.rmtree(out, ignore_errors=True)  # the staged directory: empty it when the store retries the work
    # A fingerprint from the content (not a random one) keeps the directory reproducible.
    Dataset(table, fingerprint=digest[:16]).save_to_disk(str(out))
    return digest
