"""SQL behind the app's views: overview numbers, the prompt browser, the curation index.

Every value typed in the browser arrives as a bound parameter ($name). The only text spliced
into a statement is a sort order or a histogram source, and both are picked from the constant
tables below by key (`PROMPT_SORTS`, `HISTOGRAM_SOURCES`); an unknown key raises KeyError.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from workbench.errors import NotFound
from workbench.store.queries import dicts, lookup_reward_model, rows, value

# --- overview ------------------------------------------------------------------------------

def rm_id_for(con, ref: str) -> str:
    """The id of a reward model given as id, NAME (newest version) or NAME@VERSION, in one connection."""
    found = lookup_reward_model(con, ref)
    if found is None:
        raise NotFound(f"reward model '{ref}' not found")
    return found["rm_id"]


def overview_counts(con) -> dict:
    return dict(rows(con, """
        SELECT 'prompts', count(*) FROM prompts UNION ALL SELECT 'responses', count(*) FROM responses
        UNION ALL SELECT 'scores', count(*) FROM scores UNION ALL SELECT 'pairs', count(*) FROM pairs
        UNION ALL SELECT 'reward_models', count(*) FROM reward_models"""))


def reward_models_with_counts(con) -> list[dict]:
    """Every reward model with its label (NAME@VERSION), weights path and number of scores."""
    return dicts(con, """
        SELECT m.rm_id, m.name || '@' || m.version AS label, m.path, m.created_at, count(s.response_id) AS n_scores
        FROM reward_models m LEFT JOIN scores s ON s.rm_id = m.rm_id
        GROUP BY m.rm_id, m.name, m.version, m.path, m.created_at ORDER BY m.name, m.version""")


HISTOGRAM_SOURCES = {
    "scores": "SELECT score AS v FROM scores WHERE rm_id = $rm",
    "margins": "SELECT margin AS v FROM pairs WHERE margin IS NOT NULL AND rm_id = $rm",
}


def histogram(con, source: str, rm_id: str, bins: int) -> tuple[float | None, float | None, list[tuple[int, int]]]:
    """(low, high, [(bin, count), ...]) of `source` values for one reward model, in `bins` equal bins."""
    found = rows(con, f"""
        WITH v AS ({HISTOGRAM_SOURCES[source]}), b AS (SELECT min(v) AS lo, max(v) AS hi FROM v)
        SELECT b.lo, b.hi,
               coalesce(least(floor((v.v - b.lo) / nullif(b.hi - b.lo, 0) * $bins), $bins - 1), 0)::INTEGER AS bin,
               count(*) AS n
        FROM v, b GROUP BY ALL ORDER BY bin""", {"rm": rm_id, "bins": bins})
    if not found:
        return None, None, []
    return found[0][0], found[0][1], [(r[2], r[3]) for r in found]


def length_score_correlation(con, rm_id: str) -> tuple[float | None, int]:
    """Pearson correlation of score with reply length (characters), and how many scores it covers."""
    return tuple(rows(con, """
        SELECT corr(s.score, r.n_chars), count(*) FROM scores s
        JOIN responses r ON r.response_id = s.response_id WHERE s.rm_id = $rm""", {"rm": rm_id})[0])


def length_score_sample(con, rm_id: str, n: int) -> pa.Table:
    """At most `n` (n_chars, score) points of one reward model: a repeatable pseudo-random sample
    (the rows with the smallest hash of their response id)."""
    return con.sql("""
        SELECT r.n_chars, s.score FROM scores s JOIN responses r ON r.response_id = s.response_id
        WHERE s.rm_id = $rm ORDER BY hash(s.response_id) LIMIT $n""", params={"rm": rm_id, "n": n}).to_arrow_table()


def all_tie_prompts(con, rm_id: str, limit: int) -> tuple[int, list[dict]]:
    """Prompts with at least two replies scored by this reward model, all with the same score."""
    found = dicts(con, """
        WITH g AS (
            SELECT r.prompt_id, count(*) AS n, min(s.score) AS score FROM responses r
            JOIN scores s ON s.response_id = r.response_id AND s.rm_id = $rm
            GROUP BY 1 HAVING count(*) >= 2 AND min(s.score) = max(s.score))
        SELECT (SELECT count(*) FROM g) AS total, g.prompt_id, p.text, p.source, g.n, g.score
        FROM g JOIN prompts p ON p.prompt_id = g.prompt_id ORDER BY g.prompt_id LIMIT $limit""",
        {"rm": rm_id, "limit": limit})
    total = found[0].pop("total") if found else 0
    for row in found[1:]:
        row.pop("total")
    return total, found


# --- browse ----------------------------------------------------------------------------------

_PROMPT_WHERE = """
    ($source IS NULL OR p.source = $source)
    AND ($tag IS NULL OR list_contains(p.tags, $tag))
    AND ($search IS NULL OR p.text ILIKE '%' || $search || '%')
"""

# Sort orders by key. "responses" needs each prompt's response count, the others only prompts.
PROMPT_SORTS = {
    "newest": "p.created_at DESC, p.source_line, p.prompt_id",
    "oldest": "p.created_at, p.source_line, p.prompt_id",
    "text": "p.text, p.prompt_id",
    "source": "p.source, p.source_line, p.prompt_id",
    "most responses": "n_responses DESC, p.prompt_id",
    "fewest responses": "n_responses, p.prompt_id",
}
_RESPONSE_COUNTS = "LEFT JOIN (SELECT prompt_id, count(*) AS n_responses FROM responses GROUP BY 1) c " \
                   "ON c.prompt_id = p.prompt_id"


def count_prompts(con, filters: dict) -> int:
    return value(con, f"SELECT count(*) FROM prompts p WHERE {_PROMPT_WHERE}", filters)


def prompt_page(con, filters: dict, sort: str, limit: int, offset: int) -> list[dict]:
    """One page of prompts (id, text, source, tags, created_at) in the order `sort` names."""
    order = PROMPT_SORTS[sort]
    join = _RESPONSE_COUNTS if "n_responses" in order else ""
    return dicts(con, f"""
        SELECT p.prompt_id, p.text, p.source, p.tags, p.created_at FROM prompts p {join}
        WHERE {_PROMPT_WHERE} ORDER BY {order} LIMIT $limit OFFSET $offset""",
        filters | {"limit": limit, "offset": offset})


def prompt_page_stats(con, prompt_ids: list[str]) -> dict[str, dict]:
    """Per prompt of a page: responses, Best-of-N picks and pairs (scores are left to the detail
    view: counting them means scanning every score, 100 ms at a million)."""
    found = dicts(con, """
        WITH ids AS (SELECT unnest($ids) AS prompt_id),
        r AS (SELECT prompt_id, count(*) AS n FROM responses WHERE prompt_id IN (SELECT prompt_id FROM ids) GROUP BY 1),
        b AS (SELECT prompt_id, count(*) AS n FROM bon_picks WHERE prompt_id IN (SELECT prompt_id FROM ids) GROUP BY 1),
        x AS (SELECT prompt_id, count(*) AS n FROM pairs WHERE prompt_id IN (SELECT prompt_id FROM ids) GROUP BY 1)
        SELECT ids.prompt_id, coalesce(r.n, 0) AS n_responses, coalesce(b.n, 0) AS n_picks, coalesce(x.n, 0) AS n_pairs
        FROM ids LEFT JOIN r USING (prompt_id) LEFT JOIN b USING (prompt_id) LEFT JOIN x USING (prompt_id)""",
        {"ids": prompt_ids})
    return {row.pop("prompt_id"): row for row in found}


def prompt_row(con, prompt_id: str) -> dict | None:
    found = dicts(con, "SELECT prompt_id, messages, text, source, tags, created_at FROM prompts "
                       "WHERE prompt_id = $id", {"id": prompt_id})
    return found[0] if found else None


def prompt_responses(con, prompt_id: str) -> list[dict]:
    return dicts(con, """
        SELECT response_id, text, origin, run_id, sample_index, n_chars, n_tokens, finish_reason,
               flag_near_duplicate_of, flag_truncated, flag_repetition
        FROM responses WHERE prompt_id = $id
        ORDER BY origin, run_id, sample_index NULLS LAST, response_id""", {"id": prompt_id})


def prompt_scores(con, prompt_id: str) -> list[tuple[str, str, float]]:
    """(response_id, NAME@VERSION, score) for every score of the prompt's responses."""
    return rows(con, """
        SELECT s.response_id, m.name || '@' || m.version, s.score FROM scores s
        JOIN reward_models m ON m.rm_id = s.rm_id
        WHERE s.response_id IN (SELECT response_id FROM responses WHERE prompt_id = $id)
        ORDER BY m.name, m.version""", {"id": prompt_id})


def prompt_bon_picks(con, prompt_id: str) -> list[tuple[str, str]]:
    """(response_id, NAME@VERSION) of the Best-of-N picks made for this prompt."""
    return rows(con, """
        SELECT b.response_id, m.name || '@' || m.version FROM bon_picks b
        JOIN reward_models m ON m.rm_id = b.rm_id WHERE b.prompt_id = $id ORDER BY 2""", {"id": prompt_id})


def prompt_pair_roles(con, prompt_id: str) -> list[tuple[str, int, int]]:
    """(response_id, times chosen, times rejected) over the prompt's pairs."""
    return rows(con, """
        SELECT id, count(*) FILTER (WHERE role = 'chosen'), count(*) FILTER (WHERE role = 'rejected') FROM (
            SELECT chosen_id AS id, 'chosen' AS role FROM pairs WHERE prompt_id = $id
            UNION ALL SELECT rejected_id, 'rejected' FROM pairs WHERE prompt_id = $id) GROUP BY id""",
        {"id": prompt_id})


def sources_and_tags(con) -> tuple[list[str], list[str]]:
    sources = [r[0] for r in rows(con, "SELECT DISTINCT source FROM prompts ORDER BY 1")]
    tags = [r[0] for r in rows(con, "SELECT DISTINCT unnest(tags) FROM prompts ORDER BY 1")]
    return sources, tags


# --- curation index --------------------------------------------------------------------------

def store_version(con) -> tuple:
    """Changes whenever pairs, prompts, responses, reward models or data runs change (cheap counts).

    Responses' curation flags are updated inside a generation run just before the run is marked
    finished, so `finished_at` moves after them. Exports change no pair: they are left out.
    """
    return rows(con, """
        WITH data_runs AS (SELECT * FROM runs WHERE kind <> 'export')
        SELECT (SELECT count(*) FROM pairs), (SELECT count(*) FROM prompts), (SELECT count(*) FROM responses),
               (SELECT count(*) FROM reward_models), (SELECT count(*) FROM data_runs),
               (SELECT max(coalesce(finished_at, started_at)) FROM data_runs),
               (SELECT count(*) FROM data_runs WHERE status = 'running')""")[0]


# One row per stored pair with everything a curation filter looks at. `text_group` numbers the
# distinct (prompt, chosen text, rejected text) triples: an export keeps one pair per triple.
# The rowids let a page fetch its texts without scanning every response id (`texts_by_row`).
PAIR_INDEX = """
SELECT pr.pair_id, pr.prompt_id, pr.chosen_id, pr.rejected_id, pr.label_source, pr.rm_id, pr.strategy,
       pr.score_chosen, pr.score_rejected, pr.margin, p.source, p.tags,
       c.n_chars AS chosen_chars, r.n_chars AS rejected_chars,
       coalesce(m.name || '@' || m.version, 'human') AS labeler,
       (coalesce(c.flag_truncated, false) OR coalesce(c.flag_repetition, false)
        OR coalesce(r.flag_truncated, false) OR coalesce(r.flag_repetition, false)) AS flagged,
       dense_rank() OVER (ORDER BY pr.prompt_id, c.text, r.text) AS text_group,
       p.rowid AS prompt_row, c.rowid AS chosen_row, r.rowid AS rejected_row
FROM pairs pr
JOIN prompts p ON p.prompt_id = pr.prompt_id
JOIN responses c ON c.response_id = pr.chosen_id
JOIN responses r ON r.response_id = pr.rejected_id
LEFT JOIN reward_models m ON m.rm_id = pr.rm_id
"""


def pair_index_rows(con) -> pa.Table:
    return con.sql(PAIR_INDEX).to_arrow_table()


def load_pair_index(mem: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Replace the in-memory index with `table`, adding each triple's size (1 for nearly all)."""
    mem.register("incoming_index", table)
    try:
        mem.execute("CREATE OR REPLACE TABLE pair_index AS SELECT *, "
                    "count(*) OVER (PARTITION BY text_group) AS group_size FROM incoming_index")
    finally:
        mem.unregister("incoming_index")


# Mirrors the WHERE of the export query (`queries._EXPORT_SELECTED`);
# tests/workbench/test_curation.py checks counts against `workbench.export` for many filters.
_INDEX_WHERE = """
    ($source IS NULL OR source = $source)
    AND coalesce(isfinite(score_chosen), true) AND coalesce(isfinite(score_rejected), true)
    AND coalesce(isfinite(margin), true)
    AND ($min_margin IS NULL OR margin >= $min_margin)
    AND ($label IS NULL OR label_source = $label)
    AND ($rm IS NULL OR rm_id = $rm)
    AND ($strategy IS NULL OR strategy = $strategy)
    AND ($tag IS NULL OR list_contains(tags, $tag))
    AND ($min_chars IS NULL OR least(chosen_chars, rejected_chars) >= $min_chars)
    AND ($max_chars IS NULL OR greatest(chosen_chars, rejected_chars) <= $max_chars)
    AND ($min_score IS NULL OR least(score_chosen, score_rejected) >= $min_score)
    AND ($max_score IS NULL OR greatest(score_chosen, score_rejected) <= $max_score)
    AND (NOT $exclude_flagged OR NOT flagged)
"""

# The pairs an export would write: per triple, the largest margin (then the lowest pair id).
# Singleton triples skip the window, which keeps a filter change at 125k pairs near 10 ms.
_INDEX_SELECTED = f"""
WITH f AS (SELECT * FROM pair_index WHERE {_INDEX_WHERE}),
selected AS (
    SELECT * FROM f WHERE group_size = 1
    UNION ALL
    (SELECT * FROM f WHERE group_size > 1
     QUALIFY row_number() OVER (PARTITION BY text_group ORDER BY margin DESC NULLS LAST, pair_id) = 1)
)
"""


def index_breakdown(mem, filters: dict) -> list[tuple[str, str, int]]:
    """(labeler, strategy, pairs) of the selection."""
    return rows(mem, _INDEX_SELECTED + "SELECT labeler, strategy, count(*) FROM selected GROUP BY ALL ORDER BY ALL",
                filters)


def index_page(mem, filters: dict, limit: int, offset: int) -> list[dict]:
    """The selection's rows in export order (by pair id)."""
    return dicts(mem, _INDEX_SELECTED + """
        SELECT pair_id, prompt_id, chosen_id, rejected_id, labeler, strategy, score_chosen, score_rejected,
               margin, chosen_chars, rejected_chars, flagged, prompt_row, chosen_row, rejected_row
        FROM selected ORDER BY pair_id LIMIT $limit OFFSET $offset""", filters | {"limit": limit, "offset": offset})


def texts_by_id(con, response_ids: list[str], prompt_ids: list[str]) -> tuple[dict, dict]:
    """({response_id: text}, {prompt_id: text}); scans the id columns."""
    responses = dict(rows(con, "SELECT response_id, text FROM responses WHERE response_id IN (SELECT unnest($ids))",
                          {"ids": response_ids}))
    prompts = dict(rows(con, "SELECT prompt_id, text FROM prompts WHERE prompt_id IN (SELECT unnest($ids))",
                        {"ids": prompt_ids}))
    return responses, prompts


def texts_by_row(con, response_rows: list[int], prompt_rows: list[int]) -> tuple[dict, dict]:
    """Like `texts_by_id`, by rowid (a point lookup, ~10x faster); keyed by the rows' ids, so a
    caller can check it got the rows it expected."""
    responses = dict(rows(con, "SELECT response_id, text FROM responses WHERE rowid = ANY($rows)",
                          {"rows": response_rows}))
    prompts = dict(rows(con, "SELECT prompt_id, text FROM prompts WHERE rowid = ANY($rows)", {"rows": prompt_rows}))
    return responses, prompts
