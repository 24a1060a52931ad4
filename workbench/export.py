"""`workbench export`: write DPO pairs in the TRL / XTuner schema as JSONL, Parquet or a
`datasets` directory, with a manifest beside it.

DuckDB runs the selection once into a temporary table, counts it by labeler for the manifest,
and writes JSON Lines itself (Parquet and `datasets` go through Arrow).

Schemas:
- `trl` (also `xtuner`, which reads the same layout): `prompt` is the message list,
  `chosen` and `rejected` are one-message assistant lists — TRL's conversational preference type.
- `trl-standard`: strings. A single-turn prompt is its user text; a multi-turn prompt is rendered
  as an hh-rlhf style transcript ending in "\\n\\nAssistant:", and the replies start with a space.

Same store and same arguments give a byte-identical file: rows are ordered by pair id and
nothing time-dependent is written into the data file (the manifest carries the time).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from workbench import ids
from workbench.errors import WorkbenchError
from workbench.provenance import code_version, environment
from workbench.reward_models import format_fields, resolve_reward_model
from workbench.store import Store, queries

FORMATS = ("jsonl", "parquet", "hf")
SCHEMAS = ("trl", "trl-standard", "xtuner")
LABELS = ("human", "rm")


@dataclass
class ExportSpec:
    """Which pairs to export; every field is a bound parameter, never SQL text."""

    source: str | None = None
    min_margin: float | None = None
    label: str | None = None
    rm: str | None = None
    strategy: str | None = None
    tag: str | None = None
    min_score: float | None = None  # both replies' scores at least this
    max_score: float | None = None  # both replies' scores at most this
    min_chars: int | None = None
    max_chars: int | None = None
    exclude_flagged: bool = False
    limit: int | None = None

    def validate(self) -> None:
        if self.label is not None and self.label not in LABELS:
            raise WorkbenchError(f"--label must be one of {', '.join(LABELS)}")
        if self.limit is not None and self.limit < 0:
            raise WorkbenchError("--limit must be >= 0")
        if self.min_chars is not None and self.max_chars is not None and self.min_chars > self.max_chars:
            raise WorkbenchError("--min-chars is larger than --max-chars")
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise WorkbenchError("--min-score is larger than --max-score")


@dataclass
class ExportResult:
    path: str
    manifest_path: str
    format: str
    schema: str
    rows: int
    content_hash: str
    store_hash: str

    def as_dict(self) -> dict:
        return asdict(self)


def store_hash(con) -> str:
    return hashlib.sha256(ids.canonical_json(queries.store_fingerprint_rows(con)).encode()).hexdigest()


def _query_spec(store: Store, spec: ExportSpec) -> dict:
    query = {k: v for k, v in asdict(spec).items() if k != "limit"}
    if spec.rm is not None:
        query["rm"] = resolve_reward_model(store, spec.rm)["rm_id"]
    return query


def count_pairs(store: Store, spec: ExportSpec) -> int:
    """How many rows an export with this spec would write (before --limit)."""
    spec.validate()
    query = _query_spec(store, spec)
    with store.connect() as con:
        return queries.count_export_pairs(con, query)


def export_pairs(store: Store, out: str | Path, *, fmt: str = "jsonl", schema: str = "trl",
                 spec: ExportSpec | None = None, with_scores: bool = False,
                 with_provenance: bool = False) -> ExportResult:
    spec = spec or ExportSpec()
    spec.validate()
    if fmt not in FORMATS:
        raise WorkbenchError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if schema not in SCHEMAS:
        raise WorkbenchError(f"unknown schema '{schema}'; choose one of {', '.join(SCHEMAS)}")
    out = Path(out)
    if out.exists() and out.is_dir() and fmt != "hf":
        raise WorkbenchError(f"{out} is a directory; give a file path for {fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    query = _query_spec(store, spec)

    column_sets = ["standard" if schema == "trl-standard" else "conversational"]
    column_sets += ["scores"] * with_scores + ["provenance"] * with_provenance
    config = {"path": str(out.resolve()), "format": fmt, "schema": schema, "filter": asdict(spec),
              "with_scores": with_scores, "with_provenance": with_provenance}
    manifest_path = _manifest_path(out, fmt)

    def work(con) -> ExportResult:
        # one transaction: what is counted, written and recorded is one consistent state of the store
        fingerprint = store_hash(con)
        labelers = queries.stage_export(con, query, column_sets, spec.limit)
        rows = sum(labelers.values())
        if fmt == "jsonl":
            content_hash = _write_jsonl(con, out)
        else:
            table = queries.staged_export_table(con)
            content_hash = (_write_parquet if fmt == "parquet" else _write_hf)(table, out)
        manifest = {
            "path": str(out), "format": fmt, "schema": schema, "rows": rows,
            "filter": asdict(spec), "columns": {"scores": with_scores, "provenance": with_provenance},
            "labelers": labelers, "reward_models": _reward_models(con, labelers),
            "content_sha256": content_hash, "store_hash": fingerprint, "store": str(store.path),
            "code_version": code_version(), "created_at": datetime.now(timezone.utc).isoformat(),
        }
        manifest_path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        run_id = ids.run_id("export", {**config, "content": content_hash, "store": fingerprint})
        if queries.get_run(con, run_id) is None:
            queries.insert_run(con, run_id, "export", "completed", config, environment(),
                               {"rows": rows, "content_sha256": content_hash})
        queries.insert_export(con, ids._digest("export", str(out.resolve()), content_hash), run_id,
                              str(out.resolve()), fmt, schema, asdict(spec), rows, content_hash, fingerprint)
        return ExportResult(str(out), str(manifest_path), fmt, schema, rows, content_hash, fingerprint)

    return store.write(work)


def _manifest_path(out: Path, fmt: str) -> Path:
    return out / "workbench_manifest.json" if fmt == "hf" else out.with_name(out.name + ".manifest.json")


def _reward_models(con, labelers: dict) -> list[dict]:
    """The reward models behind the NAME@VERSION labelers of an export."""
    models = []
    for label in sorted(labelers):
        if label == "human":
            continue
        model = queries.lookup_reward_model(con, label)
        models.append({"name": model["name"], "version": model["version"], "rm_id": model["rm_id"],
                       "path": model["path"], **format_fields(model)})
    return models


def _write_jsonl(con, out: Path) -> str:
    tmp = out.with_name(f".{out.name}.tmp")
    queries.write_staged_export_jsonl(con, str(tmp))
    os.replace(tmp, out)  # readers never see a half-written file
    return ids.sha256_file(out)


def _write_parquet(table: pa.Table, out: Path) -> str:
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)
    return ids.sha256_file(out)


def _write_hf(table: pa.Table, out: Path) -> str:
    from datasets import Dataset

    content_hash = hashlib.sha256()
    for batch in table.to_batches():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        content_hash.update(sink.getvalue().to_pybytes())
    digest = content_hash.hexdigest()
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        # A fingerprint from the content (not a random one) keeps the directory reproducible.
        Dataset(table, fingerprint=digest[:16]).save_to_disk(str(tmp))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return digest
