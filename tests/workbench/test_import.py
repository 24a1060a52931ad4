import gzip
import json
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.processes import kill_when_printed, python, stall_after_insert
from tests.workbench.conftest import table_counts, write_jsonl
from workbench import ids
from workbench.errors import InputError, WorkbenchError
from workbench.ingest.importer import import_files
from workbench.store import queries

TRL = {"prompt": [{"role": "user", "content": "Name a colour."}],
       "chosen": [{"role": "assistant", "content": "Blue."}],
       "rejected": [{"role": "assistant", "content": "I will not."}]}
HH = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?",
      "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away."}


def _pairs(store):
    with store.connect() as con:
        return queries.fetch_dicts(con, """
            SELECT p.messages, c.text AS chosen, r.text AS rejected, pr.label_source
            FROM pairs pr JOIN prompts p USING (prompt_id)
            JOIN responses c ON c.response_id = pr.chosen_id JOIN responses r ON r.response_id = pr.rejected_id
            ORDER BY pr.source_line""")


@pytest.mark.parametrize("fmt", ["auto", "trl", "xtuner"])
def test_trl_conversational(store, tmp_path, fmt):
    path = write_jsonl(tmp_path / "trl.jsonl", [TRL])
    result = import_files(store, [path], fmt=fmt, progress=False)
    assert result.formats[str(path)] == ("trl" if fmt == "auto" else fmt)
    [pair] = _pairs(store)
    assert json.loads(pair["messages"]) == TRL["prompt"]
    assert (pair["chosen"], pair["rejected"], pair["label_source"]) == ("Blue.", "I will not.", "human")


def test_trl_implicit_prompt_is_the_shared_prefix(store, tmp_path):
    user = {"role": "user", "content": "Name a colour."}
    record = {"chosen": [user, {"role": "assistant", "content": "Red."}],
              "rejected": [user, {"role": "assistant", "content": "No."}]}
    import_files(store, [write_jsonl(tmp_path / "implicit.jsonl", [record])], progress=False)
    [pair] = _pairs(store)
    assert json.loads(pair["messages"]) == [user]
    assert (pair["chosen"], pair["rejected"]) == ("Red.", "No.")


def test_trl_standard_strings(store, tmp_path):
    record = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    result = import_files(store, [write_jsonl(tmp_path / "std.jsonl", [record])], progress=False)
    assert list(result.formats.values()) == ["trl-standard"]
    [pair] = _pairs(store)
    assert json.loads(pair["messages"]) == [{"role": "user", "content": "2+2?"}]
    assert (pair["chosen"], pair["rejected"]) == ("4", "5")


def test_hh_rlhf_transcript_becomes_messages(store, tmp_path):
    record = {"chosen": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: good",
              "rejected": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: bad"}
    import_files(store, [write_jsonl(tmp_path / "hh.jsonl", [record])], progress=False)
    [pair] = _pairs(store)
    assert json.loads(pair["messages"]) == [
        {"role": "user", "content": "A"}, {"role": "assistant", "content": "B"}, {"role": "user", "content": "C"}]
    assert (pair["chosen"], pair["rejected"]) == ("good", "bad")


def test_hh_rlhf_keeps_two_assistant_turns_in_a_row(store, tmp_path):
    record = {"chosen": "\n\nHuman: A\n\nAssistant: B1\n\nAssistant: B2\n\nHuman: C\n\nAssistant: yes",
              "rejected": "\n\nHuman: A\n\nAssistant: B1\n\nAssistant: B2\n\nHuman: C\n\nAssistant: no"}
    import_files(store, [write_jsonl(tmp_path / "hh.jsonl", [record])], progress=False)
    [pair] = _pairs(store)
    roles = [m["role"] for m in json.loads(pair["messages"])]
    assert roles == ["user", "assistant", "assistant", "user"]


def test_bon_with_scores_registers_an_external_scorer(store, tmp_path):
    records = [{"prompt": "Say hi", "responses": ["hi", "hello", {"text": "hey", "score": 0.5}],
                "scores": [1.0, 2.0, 3.0]},
               {"prompt": [{"role": "user", "content": "Say bye"}], "responses": [{"text": "bye", "score": -1}]}]
    result = import_files(store, [write_jsonl(tmp_path / "bon.jsonl", records)], score_name="ext", progress=False)
    assert (result.new_prompts, result.new_responses, result.new_scores, result.new_pairs) == (2, 4, 4, 0)
    with store.connect() as con:
        scores = dict(queries.fetch_rows(con, """SELECT r.text, s.score FROM scores s JOIN responses r USING (response_id)
                                           JOIN reward_models m USING (rm_id) WHERE m.name = 'ext'"""))
    # the record-level `scores` list wins over per-response scores
    assert scores == {"hi": 1.0, "hello": 2.0, "hey": 3.0, "bye": -1.0}


def test_prompts_format_with_tags(store, tmp_path):
    records = [{"prompt": "Write a poem", "tags": ["writing"]},
               {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}]
    import_files(store, [write_jsonl(tmp_path / "prompts.jsonl", records)], tags=["batch1"], progress=False)
    with store.connect() as con:
        got = queries.fetch_rows(con, "SELECT text, tags FROM prompts ORDER BY source_line")
    assert got == [("Write a poem", ["batch1", "writing"]), ("Hi", ["batch1"])]


def test_file_types_json_parquet_gz_and_datasets_dir(store, tmp_path):
    from datasets import Dataset, DatasetDict

    records = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)]
    (tmp_path / "a.json").write_text(json.dumps(records[:1]))
    (tmp_path / "b.json").write_text(json.dumps({"data": records[1:2]}))
    pq.write_table(pa.Table.from_pylist(records[2:3]), tmp_path / "c.parquet")
    with gzip.open(tmp_path / "d.jsonl.gz", "wt") as f:
        f.write(json.dumps(records[3]) + "\n")
    Dataset.from_list(records[4:5]).save_to_disk(str(tmp_path / "e_ds"))
    DatasetDict({"train": Dataset.from_list(records[5:6])}).save_to_disk(str(tmp_path / "f_dd"))
    paths = [tmp_path / n for n in ("a.json", "b.json", "c.parquet", "d.jsonl.gz", "e_ds", "f_dd")]
    result = import_files(store, paths, progress=False)
    assert result.new_pairs == 6
    assert sorted(p["chosen"] for p in _pairs(store)) == [f"good {i}" for i in range(6)]


def test_reimport_changes_nothing(store, tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [TRL, TRL | {"prompt": [{"role": "user", "content": "Other?"}]}])
    first = import_files(store, [path], progress=False)
    before = table_counts(store)
    second = import_files(store, [path], progress=False)
    assert second.already_imported and not first.already_imported
    assert table_counts(store) == before
    # same content under another name: new run, but no new rows
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(path.read_bytes())
    third = import_files(store, [copy], source="x", progress=False)
    assert (third.new_prompts, third.new_responses, third.new_pairs) == (0, 0, 0)


BAD_CASES = [
    ("invalid json", '{"prompt": "a", "chosen": "b", ', None, "invalid JSON"),
    ("missing field", {"prompt": "a", "chosen": "b"}, None, None),
    ("wrong type", {"prompt": "a", "chosen": 3, "rejected": "c"}, "chosen", "expected a string"),
    ("empty text", {"prompt": "a", "chosen": "  ", "rejected": "c"}, "chosen", "empty text"),
    ("bad role", {"prompt": [{"role": "robot", "content": "x"}], "chosen": [{"role": "assistant", "content": "y"}],
                  "rejected": [{"role": "assistant", "content": "z"}]}, "prompt[0].role", "role must be"),
    ("identical", {"prompt": "a", "chosen": "same", "rejected": "same"}, "rejected", "same text"),
]


@pytest.mark.parametrize("name,bad,field,reason", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_record_refuses_the_whole_import_and_names_line_and_field(store, tmp_path, name, bad, field, reason):
    if name == "bad role":
        fmt, good, good2 = "trl", TRL, TRL | {"prompt": [{"role": "user", "content": "Another."}]}
    else:
        fmt, good = "trl-standard", {"prompt": "fine", "chosen": "yes", "rejected": "no"}
        good2 = good | {"prompt": "fine 2"}
    path = write_jsonl(tmp_path / "in.jsonl", [good, bad, good2])
    before = table_counts(store)
    with pytest.raises(InputError) as info:
        import_files(store, [path], fmt=fmt, progress=False)
    message = str(info.value)
    assert "in.jsonl:2" in message and "store is unchanged" in message
    if field:
        assert f"field '{field}'" in message
    if reason:
        assert reason in message
    assert table_counts(store) == before


def test_missing_field_is_named(store, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a", "chosen": "b"}])
    with pytest.raises(InputError, match=r"in.jsonl:1: missing \(field 'rejected'\)"):
        import_files(store, [path], fmt="trl-standard", progress=False)


def test_invalid_utf8_and_oversized_records(store, tmp_path):
    path = tmp_path / "bytes.jsonl"
    good = json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}).encode()
    big = json.dumps({"prompt": "a", "chosen": "x" * 5000, "rejected": "c"}).encode()
    path.write_bytes(good + b"\n" + b'{"prompt": "\xff\xfe", "chosen": "b", "rejected": "c"}\n' + big + b"\n")
    with pytest.raises(InputError) as info:
        import_files(store, [path], max_record_bytes=1000, progress=False)
    assert "lines 2, 3" in str(info.value) and "invalid UTF-8" in str(info.value)
    result = import_files(store, [path], max_record_bytes=1000, skip_invalid=True,
                          rejects_path=tmp_path / "rejects.jsonl", progress=False)
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3]
    assert "invalid UTF-8" in rejects[0]["reason"] and "over the 1,000-byte limit" in rejects[1]["reason"]
    assert result.new_pairs == 1


@pytest.mark.parametrize("chosen,rejected,reason", [
    ("Human: no blank line\n\nAssistant: a", "\n\nHuman: x\n\nAssistant: b", "must start with"),
    ("\n\nHuman: x\n\nAssistant: a\n\nHuman: more", "\n\nHuman: x\n\nAssistant: b", "end with an assistant turn"),
    ("\n\nHuman: x\n\nAssistant: a", "\n\nHuman: y\n\nAssistant: b", "diverge"),
    ("\n\nHuman: x\n\nAssistant: ", "\n\nHuman: x\n\nAssistant: b", "empty text"),
])
def test_hh_transcripts_that_do_not_parse(store, tmp_path, chosen, rejected, reason):
    path = write_jsonl(tmp_path / "hh.jsonl", [HH, {"chosen": chosen, "rejected": rejected}])
    with pytest.raises(InputError, match=reason) as info:
        import_files(store, [path], fmt="hh-rlhf", progress=False)
    assert "hh.jsonl:2" in str(info.value)
    assert table_counts(store)["pairs"] == 0


def test_skip_invalid_imports_the_rest_and_lists_every_rejected_line(store, tmp_path):
    records = [HH, "not json", {"chosen": "\n\nHuman: x\n\nAssistant: ", "rejected": "\n\nHuman: x\n\nAssistant: b"},
               {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}]
    path = write_jsonl(tmp_path / "hh.jsonl", records)
    result = import_files(store, [path], fmt="hh-rlhf", skip_invalid=True,
                          rejects_path=tmp_path / "rej.jsonl", progress=False)
    assert (result.valid, result.rejected, result.new_pairs) == (2, 2, 2)
    rejects = [json.loads(line) for line in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(2, None), (3, "chosen")]


@pytest.mark.parametrize(("bad_line", "bad"), [(line, bad) for line in (1, 2) for bad in (b"null", b"5", b'"text"', b"[1]", b"[]")]
                         + [(2, b'{"prompt": [{"role": "user"')])
def test_json_lines_named_json_with_a_bad_line_is_refused_by_line(store, tmp_path, bad, bad_line):
    """Found by tests/fuzz: a .json file of JSON Lines whose first or second line was not an object was
    refused as a whole ("more data after the document's value", "a JSON file must hold a record"), so
    --skip-invalid could not skip the line. (A cut first line stays a refusal of the whole file: it
    could as well be the start of a document over several lines.)"""
    path = tmp_path / "pairs.json"
    lines = [json.dumps(TRL).encode(), bad] if bad_line == 2 else [bad, json.dumps(TRL).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    before = table_counts(store)
    with pytest.raises(InputError, match=f"pairs.json:{bad_line}"):
        import_files(store, [path], progress=False)
    assert table_counts(store) == before
    result = import_files(store, [path], skip_invalid=True, rejects_path=tmp_path / "rej.jsonl", progress=False)
    assert (result.valid, result.rejected, result.new_pairs) == (1, 1, 1)


def test_unknown_format_is_a_clear_error(store, tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"foo": 1}])
    with pytest.raises(InputError, match="cannot detect the format"):
        import_files(store, [path], progress=False)
    with pytest.raises(WorkbenchError, match="unknown file type"):
        (tmp_path / "x.csv").write_text("a,b\n")
        import_files(store, [tmp_path / "x.csv"], progress=False)


def test_real_hh_rlhf_file(store, hh_rlhf_path, tmp_path):
    with pytest.raises(InputError) as info:
        import_files(store, [hh_rlhf_path], progress=False)
    assert "lines 87, 517, 926, 1104, 1255, 1689" in str(info.value)
    assert table_counts(store)["pairs"] == 0
    result = import_files(store, [hh_rlhf_path], skip_invalid=True, rejects_path=tmp_path / "r.jsonl",
                          progress=False)
    assert (result.records, result.valid, result.rejected, result.new_pairs) == (1800, 1794, 6, 1794)
    reasons = {json.loads(line)["line"]: json.loads(line)["reason"]
               for line in (tmp_path / "r.jsonl").read_text().splitlines()}
    assert sorted(reasons) == [87, 517, 926, 1104, 1255, 1689]
    assert "diverge" in reasons[1255] and "empty" in reasons[87]


_IMPORT = """
from cli import main
sys.argv = ["workbench", "--db", sys.argv[1], "-q", "import", sys.argv[2]]
main()
"""


def test_sigkill_during_import_leaves_the_store_unchanged_and_rerun_completes(store, tmp_path):
    first = write_jsonl(tmp_path / "first.jsonl", [TRL])
    import_files(store, [first], progress=False)
    before = table_counts(store)
    records = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(5000)]
    path = write_jsonl(tmp_path / "big.jsonl", records)
    kill_when_printed(python(stall_after_insert("responses", 1, _IMPORT), str(store.path), str(path)))
    assert table_counts(store) == before
    result = import_files(store, [path], progress=False)
    assert result.new_pairs == 5000
    assert table_counts(store)["pairs"] == before["pairs"] + 5000


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "json", "json.gz", "json-lines"])
def test_a_byte_order_mark_starts_the_text_and_skip_invalid_keeps_line_1(store, tmp_path, kind):
    """Issue 20.16: a file starting with a UTF-8 BOM was refused, and --skip-invalid dropped line 1."""
    records = [TRL, TRL | {"prompt": [{"role": "user", "content": "Name a shape."}]}]
    lines = [json.dumps(r).encode() for r in records]
    array = kind in ("json", "json.gz")
    body = BOM + (b"[" + b",\n".join(lines) + b"]" if array else b"\n".join(lines) + b"\n")
    name = "in.json" if kind == "json-lines" else f"in.{kind}"  # JSON Lines named .json
    path = tmp_path / name
    path.write_bytes(gzip.compress(body) if kind.endswith(".gz") else body)
    result = import_files(store, [path], skip_invalid=True, rejects_path=tmp_path / "rejects.jsonl", progress=False)
    assert (result.valid, result.rejected, result.new_pairs) == (2, 0, 2)
    assert not (tmp_path / "rejects.jsonl").exists()
    assert [p["messages"] for p in _pairs(store)] == [ids.canonical_messages(r["prompt"]) for r in records]
