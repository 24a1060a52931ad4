"""`workbench export` never deletes or half-writes user files (issue 13, items 1 and 7).

An existing path is refused for every format unless --overwrite, and --overwrite only replaces an
earlier export (one with a workbench manifest). Data and manifest are written to temporary names,
the store records the export, and only then are both swapped in: a failure anywhere leaves the
directory exactly as it was, with no temporary files in it.
"""

import json

import pytest
from click.testing import CliRunner

from tests.workbench.test_export import filled  # noqa: F401  (fixture)
from cli import load_commands
from workbench.errors import WorkbenchError
from workbench.exports.export import export_pairs
from workbench.curate.pair_filter import PairFilter
from workbench.curate.stats import store_stats
from workbench.store import queries


def _tree(root) -> dict:
    """Every file under root (names relative to it) with its bytes: 'unchanged' means equal trees."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_an_existing_user_path_is_refused_for_every_format(filled, tmp_path, fmt):
    user = tmp_path / "user"
    (user / "notes").mkdir(parents=True)
    (user / "notes" / "thesis.txt").write_text("years of work")
    (user / "data.bin").write_bytes(b"\x00\x01")
    before, exports = _tree(user), store_stats(filled)["exports"]
    target = user if fmt == "hf" else user / "data.bin"
    with pytest.raises(WorkbenchError, match="already exists: pass --overwrite"):
        export_pairs(filled, target, fmt=fmt)
    # even with --overwrite, a path that holds no earlier export is never replaced
    with pytest.raises(WorkbenchError, match="not an earlier workbench export"):
        export_pairs(filled, target, fmt=fmt, overwrite=True)
    assert _tree(user) == before
    assert store_stats(filled)["exports"] == exports


def test_export_dot_as_hf_through_the_cli_keeps_the_working_directory(filled, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("mine")
    monkeypatch.chdir(work)
    before = _tree(work)
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(load_commands(), ["--db", str(filled.path), "export", ".", "--format", "hf",
                                                      *extra])
        assert result.exit_code != 0
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert _tree(work) == before


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_overwrite_replaces_an_earlier_export_with_its_manifest(filled, tmp_path, fmt):
    out = tmp_path / "exports" / ("hf" if fmt == "hf" else f"d.{fmt}")
    first = export_pairs(filled, out, fmt=fmt)
    second = export_pairs(filled, out, fmt=fmt, pair_filter=PairFilter(limit=2), overwrite=True)
    assert second.rows == 2 and first.rows > 2
    manifest = json.loads(open(second.manifest_path).read())
    assert manifest["rows"] == 2 and manifest["content_sha256"] == second.content_hash
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_a_failed_store_write_leaves_neither_data_nor_manifest_nor_temps(filled, tmp_path, monkeypatch, fmt):
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    out = out_dir / ("hf" if fmt == "hf" else f"d.{fmt}")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full while recording the export")

    monkeypatch.setattr(queries, "insert_export", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export_pairs(filled, out, fmt=fmt)
    assert list(out_dir.iterdir()) == []  # no data, no manifest, no .NAME.tmp
    assert store_stats(filled)["exports"] == 0


def test_a_failed_data_write_leaves_no_temporary_file(filled, tmp_path, monkeypatch):
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    original = queries.write_staged_export_jsonl

    def write_then_fail(con, path):
        original(con, path)
        raise OSError("no space left on device")

    monkeypatch.setattr(queries, "write_staged_export_jsonl", write_then_fail)
    with pytest.raises(OSError, match="no space"):
        export_pairs(filled, out_dir / "d.jsonl")
    assert list(out_dir.iterdir()) == []


def test_a_failed_overwrite_keeps_the_earlier_export_whole(filled, tmp_path, monkeypatch):
    out = tmp_path / "exports" / "hf"
    export_pairs(filled, out, fmt="hf")
    before = _tree(out.parent)
    monkeypatch.setattr(queries, "insert_export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        export_pairs(filled, out, fmt="hf", overwrite=True)
    assert _tree(out.parent) == before


def test_a_lone_surrogate_in_the_export_name_is_one_clear_line(filled, tmp_path):
    """Issue 20.13: a browser can send '\\ud800' in the app's export name ("Internal error
    (UnicodeEncodeError)" before), and a shell passes a name that is not UTF-8 as '\\udcff'."""
    from workbench.curate.curation import export_curated, safe_export_path

    exports = store_stats(filled)["exports"]
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(WorkbenchError, match=r"the export name 'dpo\\ud800' is not valid text: character 4"):
        safe_export_path(tmp_path, "dpo\ud800", "jsonl")
    with pytest.raises(WorkbenchError, match="not valid text"):
        export_curated(filled, tmp_path, "a/b\udcff", PairFilter())
    with pytest.raises(WorkbenchError, match=r"the export path '.*x\\udcff.jsonl' is not valid text"):
        export_pairs(filled, tmp_path / "x\udcff.jsonl")
    assert list(tmp_path.iterdir()) == [] and store_stats(filled)["exports"] == exports


def test_an_export_path_that_is_not_utf8_from_the_shell(filled, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    done = subprocess.run([sys.executable, "-m", "workbench", "--db", str(filled.path), "-q", "export",
                           os.fsencode(tmp_path) + b"/bad\xff.jsonl"], capture_output=True, cwd=root,
                          env=os.environ | {"PYTHONPATH": str(root)}, timeout=120)
    errors = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1 and len(errors) == 1, done.stderr.decode()[-2000:]
    assert errors[0].startswith("Error: the export path ") and "bad\\udcff.jsonl' is not valid text" in errors[0]
    assert list(tmp_path.iterdir()) == []


# Exports to argv[2] from the store argv[1] (the first 2 pairs), SIGKILLed right after the data's rename.
KILL_BETWEEN_RENAMES = r"""
import os, signal, sys
from pathlib import Path
from workbench.exports.export import export_pairs
from workbench.curate.pair_filter import PairFilter
from workbench.store import Store

real_replace = os.replace

def replace_then_die(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if Path(dst) == Path(sys.argv[2]):  # the data is in place, its manifest not yet
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace_then_die
export_pairs(Store(sys.argv[1], timeout=30), Path(sys.argv[2]), fmt=sys.argv[3], pair_filter=PairFilter(limit=2),
             overwrite=True)
"""


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_kill_between_the_data_and_manifest_renames_is_rolled_forward(filled, tmp_path, fmt):
    import subprocess
    import sys

    from workbench.exports.export_files import check_export_target, manifest_path
    from workbench.ids import sha256_file

    out = tmp_path / "exports" / f"d.{fmt}"
    first = export_pairs(filled, out, fmt=fmt)
    killed = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(filled.path), str(out), fmt],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert sha256_file(out) != first.content_hash  # the new data is in place ...
    check_export_target(out, fmt, overwrite=True)  # ... and the next export to this path finishes the swap first
    manifest = json.loads(manifest_path(out, fmt).read_text())
    assert manifest["rows"] == 2 and manifest["content_sha256"] == sha256_file(out)
    from workbench.exports.export_files import verify_export

    verify_export(out, fmt)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_verify_export_refuses_data_its_manifest_does_not_vouch_for(filled, tmp_path):
    from workbench.exports.export_files import verify_export

    out = tmp_path / "d.jsonl"
    export_pairs(filled, out)
    verify_export(out, "jsonl")
    out.write_text(out.read_text() + "\n")
    with pytest.raises(WorkbenchError, match="does not match its manifest"):
        verify_export(out, "jsonl")
