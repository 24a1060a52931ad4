"""The Overview's numbers for one reward model: score and margin histograms, length bias, ties.

The only text spliced into a statement is a histogram source, picked from `HISTOGRAM_SOURCES`
by key; an unknown key raises KeyError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.fetch import fetch_dicts, fetch_rows

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa

HISTOGRAM_SOURCES = {
    "scores": "SELECT score AS v FROM scores WHERE rm_id = $rm",
    "margins": "SELECT margin AS v FROM pairs WHERE margin IS NOT NULL AND rm_id = $rm",
}


def histogram(con, source: str, rm_id: str, bins: int) -> tuple[float | None, float | None, list[tuple[int, int]]]:
    """(low, high, [(bin, count), ...]) of `source` values for one reward model, in `bins` equal bins."""
    found = fetch_rows(con, f"""
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
    return tuple(fetch_rows(con, """
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
    found = fetch_dicts(con, """
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
