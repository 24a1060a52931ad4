"""SQL behind `workbench rm compare`: the responses two reward models have both scored."""

from __future__ import annotations

import pyarrow as pa


def common_scores(con, rm_a: str, rm_b: str, source: str | None) -> pa.Table:
    """prompt_id, response_id, n_chars, score_a, score_b of every response both models scored,
    ordered by prompt and response id."""
    return con.sql("""
        SELECT r.prompt_id, r.response_id, r.n_chars, a.score AS score_a, b.score AS score_b
        FROM scores a JOIN scores b ON b.response_id = a.response_id AND b.rm_id = $b
        JOIN responses r ON r.response_id = a.response_id
        WHERE a.rm_id = $a
          AND ($source IS NULL OR r.prompt_id IN (SELECT prompt_id FROM prompts WHERE source = $source))
        ORDER BY r.prompt_id, r.response_id""", params={"a": rm_a, "b": rm_b, "source": source}).to_arrow_table()

