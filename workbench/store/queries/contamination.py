"""Benchmark prompts found in the store: word n-gram overlap computed in DuckDB.

Both sides go through the same SQL normalisation (`_WORDS`: accents stripped, lower case, every
run of characters that are not letters or digits a word break), so the store's prompts and the
benchmark's are compared as the same kind of word list. N-grams are hashed (64-bit) on the store
side; the benchmark side, small, keeps each n-gram's text to report the matching span.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.fetch import fetch_dicts, fetch_rows

if TYPE_CHECKING:
    import pyarrow as pa


def words_sql(text: str) -> str:
    """SQL: the normalised word list of a text expression (shared with prompt deduplication)."""
    return ("list_filter(regexp_split_to_array(regexp_replace(strip_accents(lower(" + text + ")), "
            r"'[^\pL\pN]+', ' ', 'g'), ' '), lambda w: w <> '')")


def grams_sql(words: str, n: int) -> str:
    """The word n-grams of a word list (a list of one whole text when it has fewer than n words)."""
    return (f"CASE WHEN len({words}) >= {n} THEN list_transform(range(1, len({words}) - {n} + 2), "
            f"lambda i: array_to_string({words}[i:i + {n} - 1], ' ')) "
            f"WHEN len({words}) > 0 THEN [array_to_string({words}, ' ')] ELSE [] END")


# What a prompt's text is for matching: every message's content, in order.
PROMPT_TEXT = ("array_to_string(list_transform(CAST(messages AS STRUCT(role VARCHAR, content VARCHAR)[]), "
                "lambda x: x.content), ' ')")


def load_benchmark(con, table: pa.Table, n: int) -> int:
    """Register the benchmark's prompts (`line`, `text`) as the temp table `bench_grams`: one row per
    distinct n-gram of each prompt with its first position and the prompt's n-gram count; returns the prompts that have words."""
    con.register("bench_text", table)
    try:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE bench_grams AS
            WITH listed AS (SELECT line, {grams_sql('w', n)} AS g, len(w) < {n} AS whole
                            FROM (SELECT line, {words_sql('text')} AS w FROM bench_text)),
            grams AS (SELECT line, gram, min(pos) AS pos, any_value(whole) AS whole
                      FROM (SELECT line, unnest(g) AS gram, generate_subscripts(g, 1) AS pos, whole FROM listed)
                      GROUP BY line, gram)
            SELECT line, gram, pos, hash(gram) AS h, whole, count(*) OVER (PARTITION BY line) AS total FROM grams""")
    finally:
        con.unregister("bench_text")
    return fetch_rows(con, "SELECT count(DISTINCT line) FROM bench_grams")[0][0]


def _matches_sql(source: str, key: str, text: str, n: int) -> str:
    """Per item of `source` and benchmark prompt: the distinct matching n-grams. A benchmark prompt
    shorter than n words matches only an item whose whole normalised text equals it."""
    return f"""
        WITH items AS (SELECT {key} AS item, prompt_id, {words_sql(text)} AS w FROM {source}),
        grams AS (SELECT item, prompt_id, len(w) < {n} AS whole, hash(unnest({grams_sql('w', n)})) AS h FROM items),
        hits AS (SELECT g.item, any_value(g.prompt_id) AS prompt_id, b.line, count(DISTINCT b.h) AS matches,
                        arg_min(b.gram, b.pos) AS span, any_value(b.total) AS total
                 FROM grams g JOIN bench_grams b ON g.h = b.h AND (NOT b.whole OR g.whole)
                 GROUP BY g.item, b.line)
        SELECT item, prompt_id, line, matches, span, matches / total AS score FROM hits
        QUALIFY row_number() OVER (PARTITION BY item ORDER BY matches / total DESC, matches DESC, line) = 1"""


def stage_matches(con, n: int, replies: bool) -> None:
    """Find the store's prompts (and replies) that share an n-gram with the benchmark in `bench_grams`
    into the temp table `found` (prompt_id, response_id, match, span, matches, score, line)."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE found AS
        SELECT prompt_id, NULL::VARCHAR AS response_id, 'ngram' AS match, span, matches, score, line
        FROM ({_matches_sql('prompts', 'prompt_id', PROMPT_TEXT, n)})""")
    if replies:
        con.execute(f"""INSERT INTO found
            SELECT prompt_id, item, 'ngram', span, matches, score, line
            FROM ({_matches_sql('responses', 'response_id', 'text', n)})""")


def stage_near_matches(con, near_n: int, threshold: float) -> None:
    """The second pass: prompts not matched at n whose share of the benchmark prompt's `near_n`-grams
    reaches `threshold` (the benchmark is in `bench_grams` at `near_n` now)."""
    con.execute(f"""INSERT INTO found
        SELECT prompt_id, NULL, 'near', span, matches, score, line
        FROM ({_matches_sql('prompts', 'prompt_id', PROMPT_TEXT, near_n)})
        WHERE score >= $threshold AND prompt_id NOT IN (SELECT prompt_id FROM found WHERE response_id IS NULL)""",
                {"threshold": threshold})


def replace_contamination(con, benchmark: str, run_id: str) -> dict:
    """Replace the benchmark's flags with those in `found`; counts of what is flagged now."""
    con.execute("DELETE FROM contamination WHERE benchmark = ?", [benchmark])
    con.execute("""INSERT INTO contamination
        SELECT ?, prompt_id, response_id, match, span, matches, score, line, ?, current_timestamp FROM found""",
                [benchmark, run_id])
    row = fetch_dicts(con, """SELECT count(DISTINCT prompt_id) FILTER (WHERE response_id IS NULL) AS flagged_prompts,
                                     count(DISTINCT prompt_id) FILTER (WHERE response_id IS NULL AND match = 'near')
                                         AS near_prompts,
                                     count(DISTINCT response_id) AS flagged_replies
                              FROM contamination WHERE benchmark = ?""", [benchmark])[0]
    return {k: int(v) for k, v in row.items()}


def contamination_examples(con, benchmark: str, limit: int = 5) -> list[dict]:
    """A few flagged prompts of a benchmark with their matching span, strongest first."""
    return fetch_dicts(con, """
        SELECT k.prompt_id, k.response_id, k.match, k.span, k.matches, round(k.score, 3) AS score,
               k.benchmark_line, p.text AS prompt
        FROM contamination k JOIN prompts p ON p.prompt_id = k.prompt_id
        WHERE k.benchmark = ? ORDER BY k.score DESC, k.prompt_id LIMIT ?""", [benchmark, limit])


def contamination_of(con, prompt_id: str, response_ids: list[str]) -> list[dict]:
    """The flags on a prompt or on any of the given replies."""
    return fetch_dicts(con, """
        SELECT benchmark, response_id, match, span, round(score, 3) AS score, benchmark_line, run_id
        FROM contamination WHERE (prompt_id = ? AND response_id IS NULL) OR list_contains(?, response_id)
        ORDER BY benchmark, response_id NULLS FIRST""", [prompt_id, response_ids])
