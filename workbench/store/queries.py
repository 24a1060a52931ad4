"""All SQL outside the schema migrations. Every statement takes `?` parameters; bulk data
arrives as Arrow tables registered on the connection, then moves in one INSERT ... SELECT."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pyarrow as pa


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def value(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Any:
    result = con.execute(sql, params or []).fetchall()
    return result[0][0] if result else None


def dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _changed(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> int:
    result = con.execute(sql, params or []).fetchall()
    return int(result[0][0]) if result else 0


# --- runs ------------------------------------------------------------------------------

def get_run(con, run_id: str) -> dict | None:
    found = dicts(con, "SELECT * FROM runs WHERE run_id = ?", [run_id])
    return found[0] if found else None


def insert_run(con, run_id: str, kind: str, status: str, config: dict, environment: dict,
               summary: dict | None = None) -> None:
    con.execute(
        "INSERT INTO runs (run_id, kind, status, config, environment, summary, started_at, finished_at) "
        "VALUES (?, ?, ?, ?, ?, ?, current_timestamp, "
        "CASE WHEN ? IN ('completed', 'failed') THEN current_timestamp END)",
        [run_id, kind, status, json.dumps(config), json.dumps(environment),
         json.dumps(summary) if summary is not None else None, status],
    ).fetchall()


def finish_run(con, run_id: str, status: str, summary: dict | None = None, error: str | None = None) -> None:
    con.execute(
        "UPDATE runs SET status = ?, summary = ?, error = ?, finished_at = current_timestamp WHERE run_id = ?",
        [status, json.dumps(summary) if summary is not None else None, error, run_id],
    ).fetchall()


def restart_run(con, run_id: str) -> None:
    con.execute("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL WHERE run_id = ?",
                [run_id]).fetchall()


def list_runs(con, kind: str | None = None, limit: int = 50) -> list[dict]:
    return dicts(
        con,
        "SELECT run_id, kind, status, started_at, finished_at, summary, error FROM runs "
        "WHERE ? IS NULL OR kind = ? ORDER BY started_at DESC LIMIT ?",
        [kind, kind, limit],
    )


# --- bulk inserts (first writer wins: rows whose key is already stored are left alone) -------

_KEYS = {"prompts": ("prompt_id",), "responses": ("response_id",), "scores": ("response_id", "rm_id"),
         "pairs": ("pair_id",)}


def insert_new(con, table_name: str, rows_: pa.Table) -> int:
    """Insert the Arrow rows whose key is not in `table_name` yet; returns how many went in.

    Column names come from the Arrow table (built by our code, never from user input);
    `created_at` is stamped here.
    """
    keys = _KEYS[table_name]
    columns = ", ".join(f'"{c}"' for c in rows_.column_names)
    match = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    con.register("incoming", rows_)
    try:
        return _changed(con, f"""
            INSERT INTO {table_name} ({columns}, created_at)
            SELECT {", ".join(f's."{c}"' for c in rows_.column_names)}, current_timestamp FROM incoming s
            WHERE NOT EXISTS (SELECT 1 FROM {table_name} t WHERE {match})""")
    finally:
        con.unregister("incoming")


# --- reward models ---------------------------------------------------------------------

def get_reward_model(con, rm_id: str) -> dict | None:
    found = dicts(con, "SELECT * FROM reward_models WHERE rm_id = ?", [rm_id])
    return found[0] if found else None


def find_reward_models(con, name: str) -> list[dict]:
    """Reward models called `name`, newest version first."""
    return dicts(con, "SELECT * FROM reward_models WHERE name = ? ORDER BY version DESC", [name])


def lookup_reward_model(con, ref: str) -> dict | None:
    """A reward model given as its id, NAME (newest version) or NAME@VERSION; None if there is none."""
    found = get_reward_model(con, ref)
    if found:
        return found
    name, _, version = ref.rpartition("@") if "@" in ref else (ref, "", "")
    return next((m for m in find_reward_models(con, name) if not version or str(m["version"]) == version), None)


def reward_models_at_path(con, path: str) -> list[dict]:
    return dicts(con, "SELECT * FROM reward_models WHERE path = ? ORDER BY created_at DESC", [path])


def insert_reward_model(con, rm_id: str, name: str, path: str | None, config: dict, run_id: str | None) -> int:
    version = value(con, "SELECT coalesce(max(version), 0) + 1 FROM reward_models WHERE name = ?", [name])
    con.execute(
        "INSERT INTO reward_models (rm_id, name, version, path, config, run_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, current_timestamp)",
        [rm_id, name, version, path, json.dumps(config), run_id],
    ).fetchall()
    return version


def list_reward_models(con) -> list[dict]:
    return dicts(con, """
        SELECT m.rm_id, m.name, m.version, m.path, m.created_at,
               (SELECT count(*) FROM scores s WHERE s.rm_id = m.rm_id) AS n_scores
        FROM reward_models m ORDER BY m.name, m.version""")


# --- pair building ---------------------------------------------------------------------

# Candidates: one prompt's replies scored by the reward model, identical texts collapsed to one
# (the lowest id). Two imported replies of a prompt never share a text (their id is a hash of
# prompt and text), so only prompts with a generated reply can hold duplicates; there a 64-bit
# hash finds the replies that may repeat a text, and only those are compared in full.
_CANDIDATES = """
WITH scored AS (
    SELECT r.prompt_id, r.response_id, r.n_chars, r.n_tokens, s.score, r.origin
    FROM responses r
    JOIN scores s ON s.response_id = r.response_id AND s.rm_id = $rm
    WHERE {where} AND isfinite(s.score)  -- NaN > x is true in DuckDB: a NaN reply would win every pair
), mixed AS (
    SELECT c.prompt_id, c.response_id, r.text FROM scored c JOIN responses r USING (response_id)
    WHERE c.prompt_id IN (SELECT prompt_id FROM scored WHERE origin = 'generated')
), repeated AS (
    SELECT hash(prompt_id, text) AS h FROM mixed GROUP BY 1 HAVING count(*) > 1
), shadowed AS (
    SELECT response_id FROM mixed WHERE hash(prompt_id, text) IN (SELECT h FROM repeated)
    QUALIFY row_number() OVER (PARTITION BY prompt_id, text ORDER BY response_id) > 1
), cand AS (
    SELECT * EXCLUDE (origin) FROM scored ANTI JOIN shadowed USING (response_id)
)
"""
_SOURCE = "r.prompt_id IN (SELECT prompt_id FROM prompts WHERE source = $source)"
_RUN = "r.run_id = $run"

# Tie rules: among equal best scores the shorter reply is chosen, among equal worst scores the
# longer reply is rejected (both counter length bias), then the lower id. As sort keys:
_BEST_KEY = "{'s': -score, 'c': n_chars, 'i': response_id}"
_WORST_KEY = "{'s': score, 'c': -n_chars, 'i': response_id}"

_MARGIN_OK = """margin > 0 AND isfinite(margin) AND margin >= $min_margin
    AND ($ratio IS NULL OR greatest(chosen_tokens, rejected_tokens) <= $ratio * least(chosen_tokens, rejected_tokens))"""

# best-vs-worst: one aggregate per prompt (no window, no self-join).
_BEST_VS_WORST = f"""
, ends AS (
    SELECT prompt_id, arg_min({{'id': response_id, 'score': score, 'tokens': n_tokens}}, {_BEST_KEY}) AS b,
           arg_min({{'id': response_id, 'score': score, 'tokens': n_tokens}}, {_WORST_KEY}) AS w
    FROM cand GROUP BY prompt_id
), found AS (
    SELECT prompt_id, b.id AS chosen_id, w.id AS rejected_id, b.score AS score_chosen, w.score AS score_rejected,
           b.score - w.score AS margin, b.tokens AS chosen_tokens, w.tokens AS rejected_tokens
    FROM ends
)
SELECT * EXCLUDE (chosen_tokens, rejected_tokens) FROM found WHERE {_MARGIN_OK}
"""

_RANKED = f"""
, ranked AS (
    SELECT *,
        row_number() OVER (PARTITION BY prompt_id ORDER BY score DESC, n_chars ASC, response_id) AS best_rank,
        row_number() OVER (PARTITION BY prompt_id ORDER BY score ASC, n_chars DESC, response_id) AS worst_rank
    FROM cand
), found AS (
    SELECT c.prompt_id, c.response_id AS chosen_id, r.response_id AS rejected_id, c.score AS score_chosen,
           r.score AS score_rejected, c.score - r.score AS margin, c.n_tokens AS chosen_tokens,
           r.n_tokens AS rejected_tokens, c.best_rank, r.worst_rank
    FROM ranked c JOIN ranked r ON c.prompt_id = r.prompt_id AND c.response_id <> r.response_id
)
SELECT prompt_id, chosen_id, rejected_id, score_chosen, score_rejected, margin FROM found WHERE {_MARGIN_OK}
"""

PAIR_STRATEGY_SQL = {
    "best-vs-worst": _BEST_VS_WORST,
    "top-k": _RANKED + " AND best_rank <= $k AND worst_rank <= $k",
    "all-above-margin": _RANKED,
    # The rejected reply is drawn among those the margin allows, by a seeded hash of its id.
    "best-vs-random": _RANKED + """ AND best_rank = 1
        QUALIFY row_number() OVER (PARTITION BY prompt_id ORDER BY md5($seed || ':' || rejected_id)) = 1""",
}


def _pairs_sql(strategy: str, params: dict) -> tuple[str, dict]:
    where = [f for f, key in ((_SOURCE, "source"), (_RUN, "run")) if params.get(key) is not None] or ["true"]
    sql = _CANDIDATES.format(where=" AND ".join(where)) + PAIR_STRATEGY_SQL[strategy]
    named = {"rm": params["rm_id"], "min_margin": params.get("min_margin", 0.0),
             "ratio": params.get("max_length_ratio")}
    named.update({k: params[k] for k in ("source", "run") if params.get(k) is not None})
    if "$k" in sql:
        named["k"] = params["k"]
    if "$seed" in sql:
        named["seed"] = str(params["seed"])
    return sql, named


def candidate_pairs(con, strategy: str, params: dict) -> pa.Table:
    """The pairs a strategy finds: prompt_id, chosen_id, rejected_id, both scores, margin."""
    sql, named = _pairs_sql(strategy, params)
    return con.sql(sql + " ORDER BY 1, 2, 3", params=named).to_arrow_table()


def insert_pairs(con, strategy: str, params: dict, *, spec: str, run_id: str) -> tuple[int, int]:
    """Build the strategy's pairs and store the new ones, ids computed here; (found, new)."""
    from workbench.store import content_ids

    sql, named = _pairs_sql(strategy, params)
    pair_id = content_ids.pair_id("$rm", "$spec", "chosen_id", "rejected_id")
    con.execute(f"CREATE OR REPLACE TEMP TABLE found_pairs AS SELECT {pair_id} AS pair_id, * FROM ({sql})",
                named | {"spec": spec})
    found = value(con, "SELECT count(*) FROM found_pairs")
    new = _changed(con, """
        INSERT INTO pairs (pair_id, prompt_id, chosen_id, rejected_id, label_source, rm_id, strategy, params,
                           score_chosen, score_rejected, margin, run_id, created_at)
        SELECT pair_id, prompt_id, chosen_id, rejected_id, 'rm', $rm, $strategy, $spec, score_chosen,
               score_rejected, margin, $run, current_timestamp
        FROM found_pairs f WHERE NOT EXISTS (SELECT 1 FROM pairs t WHERE t.pair_id = f.pair_id)""",
                   {"rm": params["rm_id"], "strategy": strategy, "spec": spec, "run": run_id})
    con.execute("DROP TABLE found_pairs")
    return int(found), new


def responses_missing_tokens(con, rm_id: str, source: str | None, run: str | None) -> pa.Table:
    return con.sql("""
        SELECT r.response_id, r.text FROM responses r
        JOIN scores s ON s.response_id = r.response_id AND s.rm_id = $rm
        JOIN prompts p ON p.prompt_id = r.prompt_id
        WHERE r.n_tokens IS NULL AND ($source IS NULL OR p.source = $source) AND ($run IS NULL OR r.run_id = $run)
    """, params={"rm": rm_id, "source": source, "run": run}).to_arrow_table()


def set_token_counts(con, table: pa.Table) -> int:
    con.register("token_counts", table)
    try:
        return _changed(con, """
            UPDATE responses SET n_tokens = t.n_tokens FROM token_counts t
            WHERE responses.response_id = t.response_id""")
    finally:
        con.unregister("token_counts")


# --- export ----------------------------------------------------------------------------

# One row per distinct (prompt, chosen text, rejected text): when several pairs say the same
# thing, the one with the largest margin (then the lowest pair id) represents them.
_EXPORT_SELECTED = """
WITH selected AS (
    SELECT pr.pair_id, pr.prompt_id, pr.chosen_id, pr.rejected_id, pr.label_source, pr.strategy,
           pr.score_chosen, pr.score_rejected, pr.margin, pr.run_id,
           p.messages, p.source, c.text AS chosen_text, r.text AS rejected_text,
           coalesce(m.name || '@' || m.version, 'human') AS labeler
    FROM pairs pr
    JOIN prompts p ON p.prompt_id = pr.prompt_id
    JOIN responses c ON c.response_id = pr.chosen_id
    JOIN responses r ON r.response_id = pr.rejected_id
    LEFT JOIN reward_models m ON m.rm_id = pr.rm_id
    WHERE ($source IS NULL OR p.source = $source)
      -- an old store may hold non-finite scores (refused at entry since): such pairs are never exported
      AND coalesce(isfinite(pr.score_chosen), true) AND coalesce(isfinite(pr.score_rejected), true)
      AND coalesce(isfinite(pr.margin), true)
      AND ($min_margin IS NULL OR pr.margin >= $min_margin)
      AND ($label IS NULL OR pr.label_source = $label)
      AND ($rm IS NULL OR pr.rm_id = $rm)
      AND ($strategy IS NULL OR pr.strategy = $strategy)
      AND ($tag IS NULL OR list_contains(p.tags, $tag))
      AND ($min_score IS NULL OR least(pr.score_chosen, pr.score_rejected) >= $min_score)
      AND ($max_score IS NULL OR greatest(pr.score_chosen, pr.score_rejected) <= $max_score)
      AND ($min_chars IS NULL OR least(c.n_chars, r.n_chars) >= $min_chars)
      AND ($max_chars IS NULL OR greatest(c.n_chars, r.n_chars) <= $max_chars)
      AND (NOT $exclude_flagged OR NOT (
            coalesce(c.flag_truncated, false) OR coalesce(c.flag_repetition, false)
            OR coalesce(r.flag_truncated, false) OR coalesce(r.flag_repetition, false)))
    -- the 64-bit hash first: partitions split on it, and the texts only break its (rare) collisions
    QUALIFY row_number() OVER (PARTITION BY hash(pr.prompt_id, c.text, r.text), pr.prompt_id, c.text, r.text
                               ORDER BY pr.margin DESC NULLS LAST, pr.pair_id) = 1
)
"""

# Output columns by schema. `messages` is stored as [{"content": ..., "role": ...}, ...].
_MESSAGES = "CAST(messages AS STRUCT(role VARCHAR, content VARCHAR)[])"
_REPLY = "[{{'role': 'assistant', 'content': {0}}}]"
_TRANSCRIPT = """CASE WHEN len({m}) = 1 AND {m}[1].role = 'user' THEN {m}[1].content
    ELSE array_to_string(list_transform({m}, lambda x: chr(10) || chr(10)
        || CASE x.role WHEN 'user' THEN 'Human' WHEN 'assistant' THEN 'Assistant' ELSE 'System' END
        || ': ' || x.content), '') || chr(10) || chr(10) || 'Assistant:' END""".format(m=_MESSAGES)
_STANDARD_REPLY = "CASE WHEN len({m}) = 1 AND {m}[1].role = 'user' THEN '' ELSE ' ' END || {{0}}".format(m=_MESSAGES)
EXPORT_COLUMNS = {
    "conversational": [("prompt", _MESSAGES), ("chosen", _REPLY.format("chosen_text")),
                       ("rejected", _REPLY.format("rejected_text"))],
    "standard": [("prompt", _TRANSCRIPT), ("chosen", _STANDARD_REPLY.format("chosen_text")),
                 ("rejected", _STANDARD_REPLY.format("rejected_text"))],
    "scores": [("score_chosen", "score_chosen"), ("score_rejected", "score_rejected"), ("margin", "margin")],
    "provenance": [(c, c) for c in ("pair_id", "prompt_id", "chosen_id", "rejected_id", "labeler", "strategy",
                                    "source", "run_id")],
}


def export_filter_params(spec: dict) -> dict:
    keys = ("source", "min_margin", "label", "rm", "strategy", "tag", "min_score", "max_score", "min_chars",
            "max_chars")
    params = {k: spec.get(k) for k in keys}
    params["exclude_flagged"] = bool(spec.get("exclude_flagged", False))
    return params


def export_rows_sql(column_sets: list[str], limit: int | None, with_labeler: bool = False) -> str:
    """The export query: its typed columns (and the labeler, for counting), ordered by pair id."""
    columns = [(name, expr) for key in column_sets for name, expr in EXPORT_COLUMNS[key]]
    select = ", ".join(f"{expr} AS {name}" for name, expr in columns)
    if with_labeler:
        select += ", labeler AS export_labeler"
    sql = _EXPORT_SELECTED + f"SELECT {select} FROM selected ORDER BY pair_id"
    if limit is not None:
        sql += " LIMIT $limit"
    return sql


def _export_params(spec: dict, limit: int | None) -> dict:
    params = export_filter_params(spec)
    if limit is not None:
        params["limit"] = int(limit)
    return params


def export_reader(con, spec: dict, column_sets: list[str], limit: int | None, batch_rows: int = 16384):
    """The export's rows as Arrow record batches."""
    return con.sql(export_rows_sql(column_sets, limit), params=_export_params(spec, limit)).to_arrow_reader(batch_rows)


def stage_export(con, spec: dict, column_sets: list[str], limit: int | None) -> dict:
    """Run the export query once into the temporary table `export_rows`; rows per labeler."""
    con.execute("CREATE OR REPLACE TEMP TABLE export_rows AS " + export_rows_sql(column_sets, limit, True),
                _export_params(spec, limit))
    return dict(rows(con, "SELECT export_labeler, count(*) FROM export_rows GROUP BY 1 ORDER BY 1"))


def write_staged_export_jsonl(con, path: str) -> None:
    """`export_rows` as JSON Lines (DuckDB's writer: compact, keys in column order), in pair-id order."""
    con.execute("COPY (SELECT * EXCLUDE (export_labeler) FROM export_rows) TO $path (FORMAT json)", {"path": path})


def staged_export_table(con) -> pa.Table:
    return con.sql("SELECT * EXCLUDE (export_labeler) FROM export_rows").to_arrow_table()


def count_export_pairs(con, spec: dict) -> int:
    return value(con, _EXPORT_SELECTED + "SELECT count(*) FROM selected", export_filter_params(spec))


def insert_export(con, export_id: str, run_id: str, path: str, fmt: str, schema: str, spec: dict,
                  row_count: int, content_hash: str, store_hash: str) -> None:
    con.execute(
        "INSERT OR REPLACE INTO exports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
        [export_id, run_id, path, fmt, schema, json.dumps(spec), row_count, content_hash, store_hash],
    ).fetchall()


def store_fingerprint_rows(con) -> list[tuple]:
    """What the store's content hash covers: completed data runs and table sizes."""
    runs_ = rows(con, "SELECT run_id, kind, status FROM runs WHERE kind <> 'export' ORDER BY run_id")
    counts = rows(con, """
        SELECT 'prompts', count(*) FROM prompts UNION ALL SELECT 'responses', count(*) FROM responses
        UNION ALL SELECT 'scores', count(*) FROM scores UNION ALL SELECT 'pairs', count(*) FROM pairs
        UNION ALL SELECT 'reward_models', count(*) FROM reward_models""")
    return runs_ + sorted(counts)


# --- statistics ------------------------------------------------------------------------

def table_counts(con) -> dict:
    return dict(rows(con, """
        SELECT 'prompts', count(*) FROM prompts UNION ALL SELECT 'responses', count(*) FROM responses
        UNION ALL SELECT 'pairs', count(*) FROM pairs UNION ALL SELECT 'exports', count(*) FROM exports
        UNION ALL SELECT 'runs', count(*) FROM runs UNION ALL SELECT 'reward_models', count(*) FROM reward_models"""))


def scores_by_reward_model(con) -> dict:
    return dict(rows(con, """
        SELECT m.name || '@' || m.version, count(s.response_id)
        FROM reward_models m LEFT JOIN scores s ON s.rm_id = m.rm_id GROUP BY 1 ORDER BY 1"""))


def pairs_by_labeler(con) -> dict:
    return dict(rows(con, """
        SELECT coalesce(m.name || '@' || m.version, 'human') || ' ' || pr.strategy, count(*)
        FROM pairs pr LEFT JOIN reward_models m ON m.rm_id = pr.rm_id GROUP BY 1 ORDER BY 1"""))


def responses_by_origin(con) -> dict:
    return dict(rows(con, "SELECT origin, count(*) FROM responses GROUP BY 1 ORDER BY 1"))


def import_summaries(con) -> list[dict]:
    return dicts(con, """
        SELECT run_id, started_at, summary FROM runs WHERE kind = 'import' AND status = 'completed'
        ORDER BY started_at""")


# --- prompt and response selection -----------------------------------------------------

_PROMPT_FILTER = """
    ($source IS NULL OR p.source = $source)
    AND ($tag IS NULL OR list_contains(p.tags, $tag))
    AND ($search IS NULL OR p.text ILIKE '%' || $search || '%')
    AND ($ids IS NULL OR list_contains($ids, p.prompt_id))
"""


def _selection_params(selection: dict) -> dict:
    return {"source": selection.get("source"), "tag": selection.get("tag"), "search": selection.get("search"),
            "ids": selection.get("prompt_ids")}


def select_prompts(con, selection: dict) -> list[tuple[str, str]]:
    """(prompt_id, messages JSON) of the selected prompts, by id (a stable order)."""
    params = _selection_params(selection)
    sql = f"SELECT p.prompt_id, p.messages FROM prompts p WHERE {_PROMPT_FILTER} ORDER BY p.prompt_id"
    if selection.get("limit") is not None:
        sql += " LIMIT $limit"
        params["limit"] = int(selection["limit"])
    return rows(con, sql, params)


def generated_samples(con, run_id: str) -> list[tuple[str, int]]:
    return rows(con, "SELECT prompt_id, sample_index FROM responses WHERE run_id = ?", [run_id])


def run_samples(con, run_id: str) -> pa.Table:
    return con.sql("""
        SELECT response_id, prompt_id, sample_index, text, finish_reason FROM responses
        WHERE run_id = $run ORDER BY prompt_id, sample_index""", params={"run": run_id}).to_arrow_table()


def set_response_flags(con, flags: pa.Table) -> int:
    con.register("flags", flags)
    try:
        return _changed(con, """
            UPDATE responses SET flag_near_duplicate_of = f.near_duplicate_of, flag_truncated = f.truncated,
                                 flag_repetition = f.repetition
            FROM flags f WHERE responses.response_id = f.response_id""")
    finally:
        con.unregister("flags")


def responses_to_score(con, rm_id: str, selection: dict, generation_run: str | None, shard: tuple[int, int],
                       limit: int | None) -> pa.Table:
    """Responses of the selected prompts that this reward model has not scored, in this shard."""
    params = _selection_params(selection) | {"rm": rm_id, "run": generation_run, "rank": shard[0],
                                             "world": shard[1]}
    sql = f"""
        SELECT r.response_id, r.prompt_id, r.text, p.messages FROM responses r
        JOIN prompts p ON p.prompt_id = r.prompt_id
        WHERE {_PROMPT_FILTER} AND ($run IS NULL OR r.run_id = $run)
          AND ('0x' || substr(r.response_id, 1, 15))::UBIGINT % $world = $rank  -- stable shard by id
          AND NOT EXISTS (SELECT 1 FROM scores s WHERE s.response_id = r.response_id AND s.rm_id = $rm)
        ORDER BY r.response_id"""
    if limit is not None:
        sql += " LIMIT $limit"
        params["limit"] = int(limit)
    return con.sql(sql, params=params).to_arrow_table()


def count_scored(con, rm_id: str, selection: dict, generation_run: str | None) -> tuple[int, int]:
    """(responses selected, of which scored by this reward model)."""
    params = _selection_params(selection) | {"rm": rm_id, "run": generation_run}
    return rows(con, f"""
        SELECT count(*), count(s.response_id) FROM responses r
        JOIN prompts p ON p.prompt_id = r.prompt_id
        LEFT JOIN scores s ON s.response_id = r.response_id AND s.rm_id = $rm
        WHERE {_PROMPT_FILTER} AND ($run IS NULL OR r.run_id = $run)""", params)[0]


def insert_bon_picks(con, rm_id: str, run_id: str) -> int:
    """For each prompt of a generation run, its best sample by this reward model (ties: lower index)."""
    return _changed(con, """
        INSERT INTO bon_picks (prompt_id, rm_id, run_id, response_id, score, created_at)
        SELECT r.prompt_id, $rm, $run, r.response_id, s.score, current_timestamp
        FROM responses r JOIN scores s ON s.response_id = r.response_id AND s.rm_id = $rm
        WHERE r.run_id = $run AND isfinite(s.score)
          AND NOT EXISTS (SELECT 1 FROM bon_picks b WHERE b.prompt_id = r.prompt_id AND b.rm_id = $rm
                          AND b.run_id = $run)
        QUALIFY row_number() OVER (PARTITION BY r.prompt_id ORDER BY s.score DESC, r.sample_index) = 1""",
        {"rm": rm_id, "run": run_id})


def selected_pairs(con, spec: dict) -> list[tuple]:
    """(pair_id, prompt_id, messages JSON, chosen text, rejected text) of the pairs an export would write."""
    return rows(con, _EXPORT_SELECTED + """
        SELECT pair_id, prompt_id, messages, chosen_text, rejected_text FROM selected ORDER BY pair_id""",
                export_filter_params(spec))
