"""Pair building: each strategy's SQL over one reward model's scored candidates, and the insert."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store import content_ids
from workbench.store.queries.fetch import count_changed, fetch_value

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa

# Candidates: one prompt's replies scored by the reward model, identical texts collapsed to one
# (the lowest id). Two imported replies of a prompt never share a text (their id is a hash of
# prompt and text), so only prompts with a generated reply can hold duplicates; there a 64-bit
# hash finds the replies that may repeat a text, and only those are compared in full.
CANDIDATES = """
WITH scored AS (
    SELECT r.prompt_id, r.response_id, r.n_chars, r.n_tokens, s.score, r.origin
    FROM responses r
    JOIN {scores} s ON s.response_id = r.response_id AND s.rm_id = $rm
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
BEST_KEY = "{'s': -score, 'c': n_chars, 'i': response_id}"
_WORST_KEY = "{'s': score, 'c': -n_chars, 'i': response_id}"

_MARGIN_OK = """margin > 0 AND isfinite(margin) AND margin >= $min_margin
    AND ($ratio IS NULL OR greatest(chosen_tokens, rejected_tokens) <= $ratio * least(chosen_tokens, rejected_tokens))"""

# best-vs-worst: one aggregate per prompt (no window, no self-join).
_BEST_VS_WORST = f"""
, ends AS (
    SELECT prompt_id, arg_min({{'id': response_id, 'score': score, 'tokens': n_tokens}}, {BEST_KEY}) AS b,
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


def _pairs_sql(strategy: str, params: dict, scores: str = "scores") -> tuple[str, dict]:
    where = [f for f, key in ((_SOURCE, "source"), (_RUN, "run")) if params.get(key) is not None] or ["true"]
    sql = CANDIDATES.format(where=" AND ".join(where), scores=scores) + PAIR_STRATEGY_SQL[strategy]
    named = {"rm": params["rm_id"], "min_margin": params.get("min_margin", 0.0),
             "ratio": params.get("max_length_ratio")}
    named.update({k: params[k] for k in ("source", "run") if params.get(k) is not None})
    if "$k" in sql:
        named["k"] = params["k"]
    if "$seed" in sql:
        named["seed"] = str(params["seed"])
    return sql, named


def candidate_pairs(con, strategy: str, params: dict, scores: str = "scores") -> pa.Table:
    """The pairs a strategy finds: prompt_id, chosen_id, rejected_id, both scores, margin.
    `scores` names the table of (response_id, rm_id, score) to rank by (a constant, never user text)."""
    sql, named = _pairs_sql(strategy, params, scores)
    return con.sql(sql + " ORDER BY 1, 2, 3", params=named).to_arrow_table()


def insert_pairs(con, strategy: str, params: dict, *, spec: str, run_id: str) -> tuple[int, int]:
    """Build the strategy's pairs and store the new ones, ids computed here; (found, new)."""
    sql, named = _pairs_sql(strategy, params)
    pair_id = content_ids.pair_id("$rm", "$spec", "chosen_id", "rejected_id")
    con.execute(f"CREATE OR REPLACE TEMP TABLE found_pairs AS SELECT {pair_id} AS pair_id, * FROM ({sql})",
                named | {"spec": spec})
    found = fetch_value(con, "SELECT count(*) FROM found_pairs")
    new = insert_found_pairs(con, "found_pairs", params["rm_id"], strategy, spec=spec, run_id=run_id)
    con.execute("DROP TABLE found_pairs")
    return int(found), new


def insert_found_pairs(con, table: str, rm_id: str, strategy: str, *, spec: str, run_id: str) -> int:
    """Store the pairs of `table` (pair_id, prompt_id, chosen_id, rejected_id, scores, margin) that are
    not stored yet, labelled by the reward model; returns how many were new."""
    return count_changed(con, f"""
        INSERT INTO pairs (pair_id, prompt_id, chosen_id, rejected_id, label_source, rm_id, strategy, params,
                           score_chosen, score_rejected, margin, run_id, created_at)
        SELECT pair_id, prompt_id, chosen_id, rejected_id, 'rm', $rm, $strategy, $spec, score_chosen,
               score_rejected, margin, $run, current_timestamp
        FROM {table} f WHERE NOT EXISTS (SELECT 1 FROM pairs t WHERE t.pair_id = f.pair_id)""",
                         {"rm": rm_id, "strategy": strategy, "spec": spec, "run": run_id})
