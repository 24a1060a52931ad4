"""Duplicate prompts across sources and rounds, in DuckDB: exact (the same normalised words) and
near (MinHash-LSH over word 3-grams, candidates verified by their exact Jaccard similarity).

MinHash in SQL: each prompt's signature is, for every seed, the least `hash(shingle, seed)` over
its shingles (list functions per prompt: memory stays flat at a million prompts); signatures are cut into bands of `rows` seeds, and two prompts whose band hashes agree
in any band are candidates. With 16 bands of 4 rows a pair at similarity 0.8 is a candidate with
probability 1 - (1 - 0.8^4)^16 > 0.999; at 0.5 about 0.64, and candidates below the threshold are
dropped by the exact check, so the pass finds no false duplicates.
"""

from __future__ import annotations

from workbench.store.queries.contamination import PROMPT_TEXT, grams_sql, words_sql
from workbench.store.queries.fetch import fetch_dicts

SHINGLE_WORDS = 3


def stage_prompt_shingles(con) -> None:
    """Every prompt's normalised text and distinct word 3-grams (hashed) into temp tables, and its
    order (the earliest stored prompt of a group is the one the others duplicate)."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE prompt_words AS
        SELECT prompt_id, array_to_string({words_sql(PROMPT_TEXT)}, ' ') AS norm,
               row_number() OVER (ORDER BY created_at, prompt_id) AS ord
        FROM prompts""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE prompt_shingles AS
        SELECT DISTINCT prompt_id, hash(unnest({grams_sql("string_split(norm, ' ')", SHINGLE_WORDS)})) AS h
        FROM prompt_words WHERE norm <> ''""")


def stage_exact_duplicates(con) -> None:
    """`found_duplicates`: each prompt whose normalised text an earlier prompt has, with that prompt."""
    con.execute("""CREATE OR REPLACE TEMP TABLE found_duplicates AS
        SELECT prompt_id, first_value(prompt_id) OVER (PARTITION BY norm ORDER BY ord) AS duplicate_of,
               'exact' AS kind, 1.0 AS similarity, ord
        FROM prompt_words WHERE norm <> ''
        QUALIFY duplicate_of <> prompt_id""")


def stage_near_duplicates(con, threshold: float, bands: int, rows: int) -> None:
    """Add to `found_duplicates` the prompts not already exact duplicates whose Jaccard similarity to an
    earlier prompt reaches `threshold` (the most similar, then the earliest, is named)."""
    seeds = bands * rows
    con.execute(f"""CREATE OR REPLACE TEMP TABLE near_found AS
        WITH live AS (SELECT s.* FROM prompt_shingles s
                      WHERE s.prompt_id NOT IN (SELECT prompt_id FROM found_duplicates)),
        sets AS (SELECT prompt_id, list(h) AS hs FROM live GROUP BY prompt_id),
        -- per prompt, one list function (not a join of every shingle with every seed and a group by
        -- of 64 rows per prompt, which ran out of DuckDB's memory cap at 1M prompts)
        signatures AS (SELECT prompt_id, list_transform(range({seeds}),
                                  lambda seed: list_min(list_transform(hs, lambda x: hash(x, seed)))) AS sig
                       FROM sets),
        signature AS (SELECT prompt_id, band, sig[band * {rows} + 1:(band + 1) * {rows}] AS part
                      FROM signatures, range({bands}) t(band)),
        candidates AS (SELECT DISTINCT a.prompt_id AS a, b.prompt_id AS b
                       FROM signature a JOIN signature b ON a.band = b.band AND hash(a.part) = hash(b.part)
                            AND a.part = b.part AND a.prompt_id <> b.prompt_id),
        -- the shingles two candidates share, by intersecting their two lists (a join of shingles on
        -- the hash, which DuckDB may plan before the candidate filter, spilled 70 GB at 1M prompts)
        shared AS (SELECT c.a, c.b, len(list_intersect(sa.hs, sb.hs)) AS k, len(sa.hs) AS na, len(sb.hs) AS nb
                   FROM candidates c JOIN sets sa ON sa.prompt_id = c.a JOIN sets sb ON sb.prompt_id = c.b),
        scored AS (SELECT s.a, s.b, s.k / (s.na + s.nb - s.k) AS similarity, wa.ord AS ord_a, wb.ord AS ord_b
                   FROM shared s JOIN prompt_words wa ON wa.prompt_id = s.a JOIN prompt_words wb ON wb.prompt_id = s.b)
        SELECT a AS prompt_id, b AS duplicate_of, 'near' AS kind, similarity, ord_a AS ord FROM scored
        WHERE similarity >= $threshold AND ord_b < ord_a
        QUALIFY row_number() OVER (PARTITION BY a ORDER BY similarity DESC, ord_b) = 1""", {"threshold": threshold})
    con.execute("INSERT INTO found_duplicates SELECT * FROM near_found")


def replace_prompt_duplicates(con, run_id: str) -> dict:
    """Replace the store's duplicate flags with `found_duplicates`; counts by kind."""
    con.execute("DELETE FROM prompt_duplicates")
    con.execute("""INSERT INTO prompt_duplicates
        SELECT prompt_id, duplicate_of, kind, similarity, ?, current_timestamp FROM found_duplicates""", [run_id])
    row = fetch_dicts(con, """SELECT count(*) FILTER (WHERE kind = 'exact') AS exact,
                                     count(*) FILTER (WHERE kind = 'near') AS near,
                                     (SELECT count(*) FROM prompts) AS prompts FROM prompt_duplicates""")[0]
    return {k: int(v) for k, v in row.items()}


def duplicate_examples(con, limit: int = 5) -> list[dict]:
    """A few flagged prompts beside the prompt each repeats, near ones first."""
    return fetch_dicts(con, """
        SELECT d.kind, round(d.similarity, 3) AS similarity, d.prompt_id, p.source, p.text,
               d.duplicate_of, o.source AS original_source, o.text AS original_text
        FROM prompt_duplicates d JOIN prompts p ON p.prompt_id = d.prompt_id JOIN prompts o ON o.prompt_id = d.duplicate_of
        ORDER BY d.kind DESC, d.similarity, d.prompt_id LIMIT ?""", [limit])
