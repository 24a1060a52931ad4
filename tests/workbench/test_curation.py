"""Curation: the in-memory pair index must count exactly what `workbench.exports.export` writes."""

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.ui.data import make_store
from workbench.curate.curation import (PairIndex, curation_preview,
                                export_curated, safe_export_path)
from workbench.curate.explain import why_dropped
from workbench.errors import WorkbenchError
from workbench.exports.export import count_pairs, export_pairs
from workbench.ingest.importer import import_files
from workbench.curate.pair_filter import PairFilter
from workbench.curate.pairs import build_pairs
from workbench.store import queries


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = make_store(tmp_path_factory.mktemp("curation"), prompts=25)
    # Overlapping strategies give pairs with the same texts: the export keeps one of each.
    build_pairs(store, "ext", "all-above-margin", min_margin=0.5, progress=False)
    build_pairs(store, "ext", "top-k", k=2, progress=False)
    return store


def _rm(store):
    with store.connect() as con:
        return queries.find_reward_models(con, "ext")[0].rm_id


FILTERS = [
    {}, {"min_margin": 1.0}, {"min_margin": 0.0}, {"label": "human"}, {"label": "rm"}, {"rm": "ext"},
    {"rm": "ext@1", "min_margin": 2.5}, {"strategy": "top-k"}, {"strategy": "best-vs-worst", "min_margin": 1},
    {"source": "garden"}, {"source": "bon-demo", "tag": "synthetic"}, {"tag": "human"}, {"tag": "missing"},
    {"min_chars": 40}, {"max_chars": 80}, {"min_chars": 20, "max_chars": 120}, {"exclude_flagged": True},
    {"exclude_flagged": True, "min_margin": 1.5, "max_chars": 200},
]


@pytest.mark.parametrize("fields", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "all")
def test_index_count_equals_export_count(store, fields):
    index = PairIndex(store)
    flt = PairFilter(**fields)
    preview = curation_preview(store, index, flt)
    assert preview.total == count_pairs(store, flt)
    assert preview.breakdown["pairs"].sum() == preview.total


@pytest.mark.parametrize("fields", FILTERS + [{"min_margin": 1.0, "limit": 3}, {"limit": 0}],
                         ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "all")
def test_index_waterfall_equals_the_stores(store, fields):
    """The Curate tab draws the waterfall from the in-memory index; the export's manifest counts it on
    the store's tables. Every step must agree."""
    flt = PairFilter(**fields)
    on_index = why_dropped(store, flt, PairIndex(store))
    assert on_index == why_dropped(store, flt)
    assert on_index["kept"] == min(count_pairs(store, PairFilter(**(fields | {"limit": None}))),
                                   flt.limit if flt.limit is not None else 10**9)


def test_dedupe_is_exercised(store):
    with store.connect() as con:
        stored = queries.fetch_value(con, "SELECT count(*) FROM pairs")
    assert count_pairs(store, PairFilter()) < stored  # same texts from several strategies


def test_preview_rows_are_the_first_rows_of_the_export(store, tmp_path):
    flt = PairFilter(min_margin=0.7, exclude_flagged=True)
    preview = curation_preview(store, PairIndex(store), flt, page_size=10)
    out = tmp_path / "x.jsonl"
    export_pairs(store, out, pair_filter=flt, with_scores=True, with_provenance=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert preview.rows["pair_id"].tolist() == [r["pair_id"] for r in rows[:10]]
    assert preview.rows["margin"].tolist() == [round(r["margin"], 4) for r in rows[:10]]
    assert preview.rows["labeler"].tolist() == [r["labeler"] for r in rows[:10]]
    page2 = curation_preview(store, PairIndex(store), flt, page=2, page_size=10)
    assert page2.rows["pair_id"].tolist() == [r["pair_id"] for r in rows[10:20]]
    assert set(preview.rows.columns) >= {"prompt", "chosen", "rejected"}
    assert all(preview.rows["chosen"].str.len() > 0)


def test_score_range(store, tmp_path):
    flt = PairFilter(rm="ext", min_score=1.0, max_score=5.0)
    preview = curation_preview(store, PairIndex(store), flt)
    out = tmp_path / "s.jsonl"
    export_pairs(store, out, pair_filter=PairFilter(rm="ext"), with_scores=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    inside = [r for r in rows if 1.0 <= min(r["score_chosen"], r["score_rejected"])
              and max(r["score_chosen"], r["score_rejected"]) <= 5.0]
    assert 0 < preview.total == len(inside) < len(rows)
    assert count_pairs(store, flt) == preview.total
    export_pairs(store, tmp_path / "ranged.jsonl", pair_filter=flt, with_scores=True)
    ranged = [json.loads(line) for line in (tmp_path / "ranged.jsonl").read_text().splitlines()]
    assert sorted(map(json.dumps, ranged)) == sorted(map(json.dumps, inside))


def test_index_follows_store_changes_and_only_then_rebuilds(tmp_path):
    store = make_store(tmp_path, prompts=4)
    index = PairIndex(store)
    before = curation_preview(store, index, PairFilter()).total
    curation_preview(store, index, PairFilter(min_margin=1))
    assert index.builds == 1
    extra = tmp_path / "more.jsonl"
    extra.write_text("".join(json.dumps({"prompt": f"new {i}", "chosen": "yes", "rejected": "no"}) + "\n"
                             for i in range(3)))
    import_files(store, [extra], source="more", progress=False)  # as the CLI would, between two filter changes
    assert curation_preview(store, index, PairFilter()).total == before + 3
    assert index.builds == 2


def test_filter_validation():
    with pytest.raises(WorkbenchError, match="length range is empty"):
        PairFilter(min_chars=10, max_chars=5).validate()
    with pytest.raises(WorkbenchError, match="score range is empty"):
        PairFilter(min_score=2, max_score=1).validate()
    with pytest.raises(WorkbenchError, match="label must be"):
        PairFilter(label="robot").validate()
    assert PairFilter().describe() == "all pairs"
    assert PairFilter(source="a", min_margin=1.0).describe() == "source=a, min_margin=1.0"


@pytest.mark.parametrize("name,expected", [
    ("dpo", "dpo.jsonl"), ("dpo.jsonl", "dpo.jsonl"), ("sub/dir/dpo", "sub/dir/dpo.jsonl"),
    ("  spaced  ", "spaced.jsonl"),
    ("a..b", "a..b.jsonl"),
])
def test_safe_export_path_accepts_names_inside(tmp_path, name, expected):
    assert safe_export_path(tmp_path, name, "jsonl") == (tmp_path / expected).resolve()


@pytest.mark.parametrize("name,message", [
    ("", "give the export a file name"), ("../out", "'..' is not allowed"), ("a/../../out", "'..' is not allowed"),
    ("/etc/passwd", "not an absolute path"), ("~/x", "not an absolute path"), ("a\\..\\b", "plain names"),
    ("..", "'..' is not allowed"),
])
def test_safe_export_path_refuses_escapes(tmp_path, name, message):
    with pytest.raises(WorkbenchError, match=message):
        safe_export_path(tmp_path / "exports", name, "jsonl")


def test_safe_export_path_refuses_symlinks_out(tmp_path):
    root, outside = tmp_path / "exports", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    os.symlink(outside / "target.jsonl", root / "evil.jsonl")
    os.symlink(root / "real", root / "inner")  # a link that stays inside is fine
    for name in ("link/dpo", "evil.jsonl", "evil"):
        with pytest.raises(WorkbenchError, match="outside the export directory"):
            safe_export_path(root, name, "jsonl")
    assert safe_export_path(root, "inner/dpo", "jsonl") == root.resolve() / "real" / "dpo.jsonl"
    (root / "folder.jsonl").mkdir()
    with pytest.raises(WorkbenchError, match="is a directory"):
        safe_export_path(root, "folder", "jsonl")
    with pytest.raises(WorkbenchError, match="unknown format"):
        safe_export_path(root, "x", "csv")


def test_export_curated_writes_inside_the_export_dir(store, tmp_path):
    flt = PairFilter(label="rm", min_margin=1.0)
    expected = curation_preview(store, PairIndex(store), flt).total
    done = export_curated(store, tmp_path / "exports", "nested/dpo", flt, fmt="jsonl", schema="trl")
    path = tmp_path / "exports" / "nested" / "dpo.jsonl"
    assert done["path"] == str(path.resolve()) and done["rows"] == expected == done["manifest"]["rows"]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == expected and set(rows[0]) == {"prompt", "chosen", "rejected"}
    assert done["manifest"]["filter"]["min_margin"] == 1.0
    done = export_curated(store, tmp_path / "exports", "dpo", flt, fmt="parquet", schema="xtuner", with_scores=True)
    table = pq.read_table(done["path"])
    assert table.num_rows == expected and "margin" in table.column_names
    with pytest.raises(WorkbenchError, match="unknown schema"):
        export_curated(store, tmp_path / "exports", "dpo", flt, schema="csv")
    assert not any(tmp_path.glob("*.jsonl"))  # nothing landed outside


def test_export_curated_refuses_a_name_that_exists(store, tmp_path):
    flt = PairFilter(label="rm")
    first = export_curated(store, tmp_path / "exports", "dpo", flt)
    before = Path(first["path"]).read_bytes()
    with pytest.raises(WorkbenchError, match="already exists in the export directory; pick another name"):
        export_curated(store, tmp_path / "exports", "dpo", PairFilter(label="rm", min_margin=5.0))
    assert Path(first["path"]).read_bytes() == before
