"""`import --skip-invalid` lists the refused records beside the store, and says where (issue 21, item 4):
the file used to land in whatever directory the command ran from."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.workbench.conftest import write_jsonl
from cli import load_commands


def test_the_rejects_file_lands_beside_the_store_and_the_output_names_it(tmp_path, monkeypatch):
    store_dir, elsewhere, data_dir = tmp_path / "stores", tmp_path / "elsewhere", tmp_path / "data"
    for folder in (store_dir, elsewhere, data_dir):
        folder.mkdir()
    data = write_jsonl(data_dir / "mixed.jsonl", [{"prompt": "good", "chosen": "a", "rejected": "b"}, "{not json",
                                                  {"prompt": "x", "chosen": "", "rejected": "c"}])
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(load_commands(), ["--db", str(store_dir / "s.duckdb"), "-q", "import", str(data),
                                                  "--skip-invalid"])
    assert result.exit_code == 0, result.output
    rejects = store_dir / "mixed.rejects.jsonl"
    assert f"listed with reasons in {rejects}." in result.output
    assert [json.loads(line)["line"] for line in rejects.read_text().splitlines()] == [2, 3]
    assert list(elsewhere.iterdir()) == []

    explicit = tmp_path / "mine.jsonl"  # --rejects still puts it where the user says
    result = CliRunner().invoke(load_commands(), ["--db", str(store_dir / "t.duckdb"), "-q", "import", str(data),
                                                  "--skip-invalid", "--rejects", str(explicit), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["rejects_path"] == str(explicit)
