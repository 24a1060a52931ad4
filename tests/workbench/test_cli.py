import json

import click
import pytest
from click.testing import CliRunner

from tests.workbench.conftest import write_jsonl
from cli import load_commands


@pytest.fixture(scope="module")
def commands():
    return load_commands()


def _walk(group, prefix=()):
    for name, command in sorted(group.commands.items()):
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _walk(command, prefix + (name,))


def test_every_command_help_carries_an_example(commands):
    runner = CliRunner()
    result = runner.invoke(commands, ["--help"])
    assert result.exit_code == 0 and "Example" in result.output
    for path, command in _walk(commands):
        if isinstance(command, click.Group):
            continue
        result = runner.invoke(commands, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.output, f"`workbench {' '.join(path)} --help` has no example"


def test_import_stats_export_through_the_cli(commands, tmp_path):
    db = str(tmp_path / "t.duckdb")
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"}
                                             for i in range(3)])
    runner = CliRunner()
    result = runner.invoke(commands, ["--db", db, "-q", "import", str(data)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(commands, ["--db", db, "stats", "--json"])
    stats = json.loads(result.output)
    assert {k: stats[k] for k in ("prompts", "responses", "pairs", "exports")} == {
        "prompts": 3, "responses": 6, "pairs": 3, "exports": 0}
    assert stats["scores"] == {}
    assert stats["pairs_by_labeler"] == {"human": {"human": 3}}  # labeler, then strategy: not "human human"
    text = runner.invoke(commands, ["--db", db, "stats"]).output
    assert "pairs by human: 3" in text and "human human" not in text
    runs = json.loads(runner.invoke(commands, ["--db", db, "runs", "list"]).output)
    assert runs[0]["kind"] == "import" and runs[0]["summary"]["valid"] == 3  # an object, not JSON in a string
    out = tmp_path / "o.jsonl"
    result = runner.invoke(commands, ["--db", db, "export", str(out), "--schema", "trl"])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 3
    assert json.loads(runner.invoke(commands, ["--db", db, "stats", "--json"]).output)["exports"] == 1


def test_db_from_environment(commands, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DB", str(tmp_path / "env.duckdb"))
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q"}])
    result = CliRunner().invoke(commands, ["-q", "import", str(data)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env.duckdb").exists()


@pytest.mark.parametrize("args,message", [
    (["import", "{bad}"], "refused: 1 invalid record"),
    (["pairs", "build", "--rm", "missing"], "reward model 'missing' not found"),
    (["export", "{tmp}/x.jsonl", "--limit", "-1"], "--limit must be >= 0"),
])
def test_user_mistakes_exit_nonzero_with_one_line_and_no_traceback(commands, tmp_path, args, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b"}\n')
    args = [a.replace("{bad}", str(bad)).replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(commands, ["--db", str(tmp_path / "t.duckdb"), "-q", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1
