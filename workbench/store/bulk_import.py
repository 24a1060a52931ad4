"""SQL of the import's bulk lane: DuckDB reads Best-of-N JSON Lines, checks them, inserts them.

The exact lane (`workbench.ingest.formats`, row by row in Python) defines what an import means; this
lane does the same work inside DuckDB for the shape large files have (a string prompt, string
responses, optional numeric scores and tags) and gives up on anything else. `stage()` parses
each file once into a temporary table and reports how many records break a rule the exact lane
enforces; the importer falls back to the exact lane when any does, so errors are always reported
there, by file, line and field. `insert()` then writes prompts, responses and scores with the
exact lane's rules: content ids (`content_ids`), the first line holding an id wins, rows the
store already has are left alone.

The checks read DuckDB's re-serialised JSON of each field (compact, strings escaped), so they
can be exact regular expressions: a list of strings is `["...","..."]`, and a blank text is one
made only of the characters Python's `str.isspace` accepts.
"""

from __future__ import annotations

from workbench.store import content_ids

# Every character for which Python's str.isspace() is true (checked by a test over all code points).
_SPACE = r"\x{9}-\x{d}\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
BLANK = f"[{_SPACE}]*"
# Control characters that DuckDB's to_json escapes as \u000B where orjson (the exact lane) writes
# \u000b: the only difference between the two lanes' messages JSON (tests/workbench/test_bulk_import.py
# checks every code point). The bulk lane keeps such prompts: both spell the same JSON string, and the
# prompt id is computed from the prompt's text, not from this JSON.
JSON_HEX_ESCAPED = r"[\x{b}\x{e}\x{f}\x{1a}-\x{1f}]"


def _all(values: str, test: str, empty: str = "false") -> str:
    return f"coalesce(list_bool_and(list_transform({values}, lambda x: {test})), {empty})"


def _any(values: str, test: str) -> str:
    return f"coalesce(list_bool_or(list_transform({values}, lambda x: {test})), false)"


# No line column: a record's line is its row's position in the file. `read_json ... WITH ORDINALITY`
# numbered them but made DuckDB read the file on one thread (the stage took twice as long); the
# insert keeps the file's order (preserve_insertion_order, DuckDB's default) in consecutive rowids (they
# start high in a transaction's own storage), so a row's rowid, less the least rowid of its file
# (`bulk_files`), is its line - 1. `scan` counted the file's lines and
# `stage_and_insert` declines unless every line is a record, so records and lines correspond.
_STAGE_TABLE = """
CREATE OR REPLACE TEMP TABLE bulk_records (file INTEGER, prompt VARCHAR, prompt_id VARCHAR,
    responses VARCHAR[], scores DOUBLE[], tags VARCHAR[], response_ids VARCHAR[],
    valid BOOLEAN, distinct_replies BOOLEAN, scored BOOLEAN);
CREATE OR REPLACE TEMP TABLE bulk_files (file INTEGER, first_row BIGINT)
"""
# The staged records with their line numbers.
_LINED = """(SELECT r.*, r.rowid - f.first_row + 1 AS line FROM bulk_records r JOIN bulk_files f USING (file))"""

_READ = ("read_json($path, format = 'newline_delimited', records = true, maximum_object_size = $max_object, "
         "columns = {prompt: 'JSON', responses: 'JSON', scores: 'JSON', tags: 'JSON'})")

# One read of the file: each field as JSON, typed with json_transform, which converts any JSON value
# to the declared type (1 -> '1') as a typed read_json would; so `types_ok` checks the element types
# on the JSON itself: lists (a JSON null is no list) of strings (responses, tags), of numbers
# and nulls (scores); scores and tags may be absent or null. For the replies, one call without a
# lambda: `json_structure` is '["VARCHAR"]' for a list of strings and nulls with at least one string
# (a null reply then fails `_VALID`), '["JSON"]' when any element is something else. (Reading the
# file a second time for that check cost a third of the import at 10M replies.)
_TYPES_OK = f"""(
    CAST(json_structure(responses) AS VARCHAR) = '["VARCHAR"]'
    AND (scores IS NULL OR (json_type(scores) = 'ARRAY'
         AND {_all("json_type(scores, '$[*]')", "x IN ('UBIGINT', 'BIGINT', 'DOUBLE', 'NULL')", "true")}))
    AND (tags IS NULL OR (json_type(tags) = 'ARRAY' AND {_all("json_type(tags, '$[*]')", "x = 'VARCHAR'", "true")})))"""

# A record's value rules (a text prompt, no blank text or empty tag, finite scores, one score per
# reply), checked as it is staged: the staged texts outgrow DuckDB's memory cap at 10M replies, and a
# second pass over them cost 15 s there. `_COUNT` then reads three booleans and the prompt ids.
_VALID = f"""coalesce(types_ok AND prompt_is_text AND NOT regexp_full_match(prompt, '{BLANK}')
    AND len(responses) > 0 AND NOT {_any("responses", f"x IS NULL OR regexp_full_match(x, '{BLANK}')")}
    AND (scores IS NULL OR (len(scores) = len(responses) AND {_all("scores", "x IS NULL OR isfinite(x)", "true")}))
    AND (tags IS NULL OR NOT {_any("tags", "x IS NULL OR x = ''")}), false)"""

_STAGE_FILE = f"""
INSERT INTO bulk_records
SELECT file, prompt, prompt_id, responses, scores, tags,
       list_transform(responses, lambda x: {content_ids.imported_response_id("prompt_id", "x")}),
       {_VALID}, len(list_distinct(responses)) = len(responses), {_any("scores", "x IS NOT NULL")}
FROM (SELECT $file AS file, prompt_is_text, prompt, {content_ids.prompt_id_of_user_text("prompt")} AS prompt_id,
             json_transform(responses, '["VARCHAR"]') AS responses, json_transform(scores, '["DOUBLE"]') AS scores,
             json_transform(tags, '["VARCHAR"]') AS tags, types_ok
      FROM (SELECT coalesce(json_type(prompt) = 'VARCHAR', false) AS prompt_is_text,
                   prompt ->> '$' AS prompt, responses, scores, tags, {_TYPES_OK} AS types_ok
            FROM {_READ}))
"""

# Records breaking a rule, whether any id occurs twice (a prompt in several records, a reply twice
# in one record), and whether any score is given.
_COUNT = """
SELECT count(*), count(*) FILTER (WHERE NOT valid),
       count(DISTINCT prompt_id) < count(*) OR NOT coalesce(bool_and(distinct_replies), true),
       coalesce(bool_or(scored), false)
FROM bulk_records
"""


def stage(con, files: list[tuple[str, int]]) -> tuple[int, int, bool, bool]:
    """Parse (path, max object bytes) files into `bulk_records`.

    Returns (records, records breaking a rule, whether some id repeats, whether any score is
    given); raises duckdb.Error when DuckDB cannot read a file as records.
    """
    con.execute(_STAGE_TABLE)
    for number, (path, max_object) in enumerate(files):
        con.execute(_STAGE_FILE, {"file": number, "path": path, "max_object": max_object})
        con.execute("INSERT INTO bulk_files SELECT $file, min(rowid) FROM bulk_records WHERE file = $file",
                    {"file": number})
    records, bad, repeats, scored = con.execute(_COUNT).fetchall()[0]
    return int(records), int(bad), bool(repeats), bool(scored)


# Within the import the first occurrence of an id wins (file, line, index), as in the exact lane;
# the window only runs when `stage` saw an id repeat.
_FIRST = "QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY file, line{more}) = 1"

_INSERT_PROMPTS = """
INSERT INTO prompts (prompt_id, messages, text, source, tags, run_id, source_line, created_at)
SELECT prompt_id, '[{{"content":' || to_json(prompt) || ',"role":"user"}}]', prompt, $source,
       CASE WHEN len(coalesce(tags, [])) = 0 THEN $tags ELSE list_sort(list_distinct(list_concat($tags, tags))) END,
       $run, line, current_timestamp
FROM {lined} s
WHERE NOT EXISTS (SELECT 1 FROM prompts t WHERE t.prompt_id = s.prompt_id)
{first}
"""

# Each reply of the staged records with its id (computed once, in the stage), read by the two
# inserts below as subqueries: a temporary table of ten million texts cost as much as the insert
# itself (it spilled past DuckDB's memory cap), and the scores' pass reads no text.
_REPLIES = f"""(
SELECT file, line, prompt_id, unnest(response_ids) AS response_id, unnest(responses) AS text,
       unnest(range(len(responses))) AS sample_index FROM {_LINED})"""
_REPLY_SCORES = f"""(
SELECT file, line, unnest(response_ids) AS response_id, unnest(scores) AS score,
       unnest(range(len(responses))) AS sample_index FROM {_LINED})"""

_INSERT_RESPONSES = """
INSERT INTO responses (response_id, prompt_id, text, origin, run_id, sample_index, n_chars, source_line, created_at)
SELECT response_id, prompt_id, text, 'imported', $run, sample_index, length(text), line, current_timestamp
FROM {replies} s
WHERE NOT EXISTS (SELECT 1 FROM responses t WHERE t.response_id = s.response_id)
{first}
"""

_INSERT_SCORES = """
INSERT INTO scores (response_id, rm_id, score, run_id, created_at)
SELECT response_id, $rm, score, $run, current_timestamp
FROM {replies} s
WHERE score IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM scores t WHERE t.response_id = s.response_id AND t.rm_id = $rm)
{first}
"""


def insert(con, *, run_id: str, source: str, tags: list[str], rm_id: str | None, repeats: bool) -> dict[str, int]:
    """Write the staged records into the store; how many new prompts, responses and scores."""
    def first(key: str, more: str = "") -> str:
        return _FIRST.format(key=key, more=more) if repeats else ""

    counts = {
        "prompts": _count(con, _INSERT_PROMPTS.format(lined=_LINED, first=first("prompt_id")),
                          {"source": source, "tags": tags, "run": run_id}),
        "responses": _count(con, _INSERT_RESPONSES.format(replies=_REPLIES, first=first("response_id", ", sample_index")),
                            {"run": run_id}),
        "scores": _count(con, _INSERT_SCORES.format(replies=_REPLY_SCORES, first=first("response_id", ", sample_index")),
                         {"rm": rm_id, "run": run_id}) if rm_id else 0,
    }
    con.execute("DROP TABLE bulk_records; DROP TABLE bulk_files")
    return counts


def _count(con, sql: str, params: dict) -> int:
    result = con.execute(sql, params).fetchall()
    return int(result[0][0]) if result else 0
