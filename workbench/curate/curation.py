"""Curate pairs for export: a filter, a live count with a first page, and a safe export.

The count must follow every filter change in well under 300 ms at a million responses, and the
export query joins four tables (about a second at that size). So the app keeps a `PairIndex`:
an in-memory DuckDB copy of the few columns a filter looks at, one row per pair. It is rebuilt
when the store's version (cheap counts and the newest run time) changes, so the CLI or another
browser tab writing to the store is picked up on the next filter change. The index applies the
export's own rules (one pair per distinct prompt/chosen/rejected text, the largest margin first),
and tests compare its counts with `workbench.exports.export.count_pairs`.

Export paths are names inside the export directory: absolute paths, `..` and symlinks that lead
out of it are refused.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb
import pandas as pd

from workbench.curate.browse import shorten
from workbench.errors import WorkbenchError, check_name_is_text
from workbench.exports.export import SCHEMAS, export_pairs
from workbench.exports.export_files import manifest_path
from workbench.curate.pair_filter import PairFilter
from workbench.store import Store, queries

UI_FORMATS = ("jsonl", "parquet")
# The Curate tab counts pairs; a KTO export writes up to two rows per pair, a `bon` one a row per
# prompt: CLI only for now.
UI_SCHEMAS = tuple(s for s in SCHEMAS if s not in ("kto", "bon"))
PREVIEW_ROWS = 20
PREVIEW_COLUMNS = ["prompt", "chosen", "rejected", "margin", "labeler", "strategy", "flagged", "pair_id"]


def _params(con, flt: PairFilter) -> dict:
    return flt.query_values(queries.rm_id_for(con, flt.rm) if flt.rm else None)


class PairIndex:
    """Per-pair curation columns in an in-memory DuckDB, rebuilt when the store changes."""

    def __init__(self, store: Store):
        self.store = store
        self._mem = duckdb.connect(":memory:")
        self._version: tuple | None = None
        self._rebuild_lock = threading.Lock()
        self._cursor_lock = threading.Lock()
        self.builds = 0

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the in-memory database for this thread (a connection is not thread-safe)."""
        with self._cursor_lock:
            cursor = self._mem.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def refresh(self, con) -> bool:
        """Rebuild from the open store connection `con` if the store changed; True if it did."""
        version = queries.store_version(con)
        if version == self._version:
            return False
        with self._rebuild_lock:
            if version == self._version:  # another thread rebuilt it meanwhile
                return False
            table = queries.pair_index_rows(con)
            with self._cursor() as cursor:
                queries.load_pair_index(cursor, table)
            self._version = version
            self.builds += 1
        return True

    def size(self) -> int:
        """Pairs in the store (at the last refresh)."""
        if self._version is None:
            return 0
        with self._cursor() as cursor:
            return queries.index_size(cursor)

    def breakdown(self, params: dict) -> list[tuple[str, str, int]]:
        """(labeler, strategy, pairs) of the pairs the filter values select."""
        with self._cursor() as cursor:
            return queries.index_breakdown(cursor, params)

    def waterfall(self, params: dict, active: list[str]) -> dict:
        """`queries.filter_waterfall` on the index: what each filter step removes."""
        with self._cursor() as cursor:
            return queries.index_waterfall(cursor, params, active)

    def page(self, params: dict, limit: int, offset: int) -> list[dict]:
        """One page of the selected pairs in export order."""
        with self._cursor() as cursor:
            return queries.index_page(cursor, params, limit, offset)


@dataclass
class CurationPreview:
    total: int
    breakdown: pd.DataFrame   # labeler, strategy, pairs
    rows: pd.DataFrame        # PREVIEW_COLUMNS, the first rows the export would write
    store_pairs: int          # pairs in the store, before any filter
    unit: str = "pair"        # what a row of the export is: a pair, or an SFT row

    def summary(self) -> str:
        if not self.total:
            return f"### 0 {self.unit}s match these filters"
        return f"### {self.total:,} {self.unit}{'s' if self.total != 1 else ''} would be exported"


def curation_preview(store: Store, index: PairIndex, flt: PairFilter, page: int = 1,
                     page_size: int = PREVIEW_ROWS) -> CurationPreview:
    """How many pairs the filter selects (as the export counts them), by labeler and strategy,
    and one page of them in export order."""
    flt.validate()
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")  # one snapshot for the version check, the index and the texts
        params = _params(con, flt)
        index.refresh(con)
        counts = index.breakdown(params)
        store_pairs = index.size()
        found = index.page(params, page_size, (max(page, 1) - 1) * page_size)
        responses, prompts = _texts(con, found)
        con.execute("COMMIT")
    breakdown = pd.DataFrame(counts, columns=["labeler", "strategy", "pairs"])
    records = [[shorten(prompts.get(r["prompt_id"], ""), 120), shorten(responses.get(r["chosen_id"], ""), 120),
                shorten(responses.get(r["rejected_id"], ""), 120),
                None if r["margin"] is None else round(r["margin"], 4), r["labeler"], r["strategy"],
                bool(r["flagged"]), r["pair_id"]] for r in found]
    return CurationPreview(int(breakdown["pairs"].sum()) if counts else 0, breakdown,
                           pd.DataFrame(records, columns=PREVIEW_COLUMNS), store_pairs)


SFT_PREVIEW_COLUMNS = ["prompt", "reply", "score", "rank", "response_id"]


def sft_preview(store: Store, flt: PairFilter, page_size: int = PREVIEW_ROWS) -> CurationPreview:
    """What an SFT export (`--schema sft`, top 1) with this filter writes: its row count (the
    export's own query) and first rows. The reward model is the filter's `rm`; pair-only fields
    must be unset (`sft.check_sft_export` says which)."""
    from workbench.exports.sft import check_sft_export
    from workbench.store.sft import sft_preview as sft_rows

    labeler, top = check_sft_export(store, "sft", flt, None)
    with store.connect() as con:
        total, found = sft_rows(con, _params(con, flt), labeler, top, page_size)
    rows = pd.DataFrame([[shorten(p, 120), shorten(r, 240), round(s, 4), k, i] for p, r, s, k, i in found],
                        columns=SFT_PREVIEW_COLUMNS)
    breakdown = pd.DataFrame([[labeler, "best reply per prompt", total]] if total else [],
                             columns=["labeler", "strategy", "rows"])
    return CurationPreview(total, breakdown, rows, total, unit="SFT row")


def _texts(con, found: list[dict]) -> tuple[dict, dict]:
    response_ids = [r[k] for r in found for k in ("chosen_id", "rejected_id")]
    prompt_ids = [r["prompt_id"] for r in found]
    responses, prompts = queries.texts_by_row(con, [r[k] for r in found for k in ("chosen_row", "rejected_row")],
                                            [r["prompt_row"] for r in found])
    if set(response_ids) <= responses.keys() and set(prompt_ids) <= prompts.keys():
        return responses, prompts
    return queries.texts_by_id(con, response_ids, prompt_ids)  # rows moved since the index was built


MAX_NAME_BYTES = 200  # a file name may hold 255 bytes; leave room for the extension and temp names


def safe_export_path(export_dir: str | Path, name: str, fmt: str) -> Path:
    """`name` as a file inside `export_dir`, with the format's extension; refuses anything else."""
    if fmt not in UI_FORMATS:
        raise WorkbenchError(f"unknown format '{fmt}'; choose one of {', '.join(UI_FORMATS)}")
    name = (name or "").strip()
    if not name:
        raise WorkbenchError("give the export a file name, e.g. dpo-pairs")
    check_name_is_text(name, "export name")
    if "\\" in name or "\x00" in name:
        raise WorkbenchError("use plain names and '/' between folders in the export name")
    relative = PurePosixPath(name)
    if relative.is_absolute() or name.startswith("~"):
        raise WorkbenchError("give a name inside the export directory, not an absolute path")
    if ".." in relative.parts:
        raise WorkbenchError("'..' is not allowed in export names: exports stay in the export directory")
    if not relative.name:
        raise WorkbenchError(f"'{name}' names no file: give a file name, e.g. dpo-pairs")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise WorkbenchError("the export name has a control character (a line break?): use plain text")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in relative.parts):
        raise WorkbenchError(f"each part of the export name must be at most {MAX_NAME_BYTES} bytes long")
    if relative.suffix != f".{fmt}":
        relative = relative.with_name(relative.name + f".{fmt}")
    root = Path(export_dir).resolve()
    target = (root / relative).resolve()  # follows symlinks, so a link pointing out is caught here
    if not target.is_relative_to(root) or target == root:
        raise WorkbenchError(f"'{name}' leads outside the export directory (through a symlink); pick another name")
    if target.is_dir():
        raise WorkbenchError(f"'{name}' is a directory in the export directory; pick a file name")
    return target


def export_curated(store: Store, export_dir: str | Path, name: str, flt: PairFilter, *, fmt: str = "jsonl",
                   schema: str = "trl", with_scores: bool = False, with_provenance: bool = False) -> dict:
    """Export the filtered pairs to a file in the export directory; returns the result and manifest."""
    if schema not in UI_SCHEMAS:
        raise WorkbenchError(f"unknown schema '{schema}'; choose one of {', '.join(UI_SCHEMAS)}")
    path = safe_export_path(export_dir, name, fmt)
    if path.exists() or manifest_path(path, fmt).exists():  # the app offers no --overwrite
        raise WorkbenchError(f"'{path.name}' already exists in the export directory; pick another name")
    result = export_pairs(store, path, fmt=fmt, schema=schema, pair_filter=flt, with_scores=with_scores,
                          with_provenance=with_provenance)
    manifest = json.loads(Path(result.manifest_path).read_text())
    return {"path": result.path, "manifest_path": result.manifest_path, "rows": result.rows, "manifest": manifest}
