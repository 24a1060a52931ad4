"""The `rounds` and `round_prompts` tables: iterative DPO, one row per round."""

from __future__ import annotations

import json

from workbench.store.queries.fetch import fetch_dicts, fetch_rows, fetch_value

_JSON_FIELDS = ("config", "evaluation")


def _decoded(rows: list[dict]) -> list[dict]:
    for row in rows:
        for name in _JSON_FIELDS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
    return rows


def list_rounds(con) -> list[dict]:
    """Every round, in order."""
    return _decoded(fetch_dicts(con, "SELECT * FROM rounds ORDER BY round"))


def get_round(con, number: int) -> dict | None:
    found = _decoded(fetch_dicts(con, "SELECT * FROM rounds WHERE round = ?", [number]))
    return found[0] if found else None


def insert_round(con, number: int, policy_in: str, reference: str, config: dict) -> None:
    con.execute("INSERT INTO rounds (round, status, phase, policy_in, reference, config, started_at) "
                "VALUES (?, 'running', 'started', ?, ?, ?, current_timestamp)",
                [number, policy_in, reference, json.dumps(config)]).fetchall()


def update_round(con, number: int, phase: str, **values) -> None:
    """Record a finished phase and what it produced (generation_run, export_hash, policy_out, evaluation)."""
    allowed = {"generation_run", "export_hash", "policy_out", "evaluation"}
    sets, params = ["phase = ?"], [phase]
    for name, value in values.items():
        if name not in allowed:
            raise ValueError(f"rounds has no column {name}")
        sets.append(f'"{name}" = ?')
        params.append(json.dumps(value) if name == "evaluation" else value)
    if phase == "evaluated":
        sets += ["status = 'completed'", "finished_at = current_timestamp"]
    con.execute(f"UPDATE rounds SET {', '.join(sets)} WHERE round = ?", [*params, number]).fetchall()


def insert_round_prompts(con, number: int, role: str, prompt_ids: list[str]) -> None:
    import pyarrow as pa

    table = pa.table({"prompt_id": pa.array(prompt_ids, pa.string())})
    con.register("round_prompt_rows", table)
    try:
        con.execute("INSERT INTO round_prompts SELECT ?, prompt_id, ? FROM round_prompt_rows "
                    "ON CONFLICT DO NOTHING", [number, role]).fetchall()
    finally:
        con.unregister("round_prompt_rows")


def round_prompt_ids(con, number: int, role: str) -> list[str]:
    return [p for (p,) in fetch_rows(con, "SELECT prompt_id FROM round_prompts WHERE round = ? AND role = ? "
                                          "ORDER BY prompt_id", [number, role])]


def used_prompt_rounds(con, prompt_ids: list[str], role: str) -> dict[str, int]:
    """Which of these prompts an earlier round used in `role` (train or eval): prompt id -> round."""
    import pyarrow as pa

    table = pa.table({"prompt_id": pa.array(prompt_ids, pa.string())})
    con.register("candidate_prompts", table)
    try:
        return dict(fetch_rows(con, "SELECT rp.prompt_id, min(rp.round) FROM round_prompts rp "
                                    "JOIN candidate_prompts c USING (prompt_id) WHERE rp.role = ? GROUP BY 1", [role]))
    finally:
        con.unregister("candidate_prompts")


def fresh_prompt_ids(con, source: str | None, tag: str | None, exclude_round_roles: bool, limit: int) -> list[str]:
    """The first `limit` prompts (by id) of a source/tag that no round has used for training or evaluation.

    A prompt `workbench dedup` flagged as repeating an earlier one is never fresh, and neither is the
    prompt that a prompt a round used repeats: the two are one prompt to a round (`prompt_duplicates`
    names, for each flagged prompt, the earlier one it repeats)."""
    return [p for (p,) in fetch_rows(con, """
        SELECT prompt_id FROM prompts p
        WHERE ($source IS NULL OR source = $source) AND ($tag IS NULL OR list_contains(tags, $tag))
          AND NOT ($exclude AND EXISTS (SELECT 1 FROM round_prompts rp WHERE rp.prompt_id = p.prompt_id))
          AND NOT EXISTS (SELECT 1 FROM prompt_duplicates d WHERE d.prompt_id = p.prompt_id)
          AND NOT ($exclude AND EXISTS (SELECT 1 FROM prompt_duplicates d JOIN round_prompts rp USING (prompt_id)
                                        WHERE d.duplicate_of = p.prompt_id))
        ORDER BY prompt_id LIMIT $limit""",
        {"source": source, "tag": tag, "exclude": exclude_round_roles, "limit": limit})]


# A prompt's duplicate group: the earlier prompt it repeats (flagged by `workbench dedup`), else itself.
_DUPLICATE_GROUP = "coalesce((SELECT d.duplicate_of FROM prompt_duplicates d WHERE d.prompt_id = {0}), {0})"


def duplicated_round_prompts(con, prompt_ids: list[str], role: str) -> dict[str, str]:
    """Which of these prompts repeat, or are repeated by, a prompt a round used in `role` (the same
    duplicate group, by `prompt_duplicates`), the prompt itself excepted: prompt id -> that prompt."""
    import pyarrow as pa

    table = pa.table({"prompt_id": pa.array(prompt_ids, pa.string())})
    con.register("candidate_prompts", table)
    try:
        return dict(fetch_rows(con, f"""
            WITH candidate AS (SELECT prompt_id, {_DUPLICATE_GROUP.format("c.prompt_id")} AS grp
                               FROM candidate_prompts c),
                 used AS (SELECT prompt_id, {_DUPLICATE_GROUP.format("rp.prompt_id")} AS grp
                          FROM round_prompts rp WHERE rp.role = ?)
            SELECT c.prompt_id, min(u.prompt_id) FROM candidate c JOIN used u
                ON u.grp IN (c.grp, c.prompt_id) OR c.grp = u.prompt_id
            WHERE u.prompt_id <> c.prompt_id GROUP BY 1""", [role]))
    finally:
        con.unregister("candidate_prompts")


def next_round_number(con) -> int:
    return fetch_value(con, "SELECT coalesce(max(round), 0) + 1 FROM rounds")


def round_score_summary(con, generation_run: str, rm_id: str) -> dict:
    """Scores of a round's samples by its labeler: quantiles for the app's distribution view."""
    rows = fetch_dicts(con, """
        SELECT count(*) AS n, avg(s.score) AS mean, quantile_cont(s.score, [0.1, 0.25, 0.5, 0.75, 0.9]) AS q,
               avg(r.n_chars) AS mean_chars
        FROM responses r JOIN scores s ON s.response_id = r.response_id AND s.rm_id = ?
        WHERE r.run_id = ?""", [rm_id, generation_run])
    return rows[0] if rows else {}


def generation_scores(con, generation_run: str, rm_id: str) -> list[tuple[float, int]]:
    """(score, characters) of every sample of a generation run scored by one reward model."""
    return fetch_rows(con, "SELECT s.score, r.n_chars FROM responses r JOIN scores s ON s.response_id = r.response_id "
                           "AND s.rm_id = ? WHERE r.run_id = ? ORDER BY r.response_id", [rm_id, generation_run])


def export_path_by_hash(con, content_hash: str) -> str | None:
    return fetch_value(con, "SELECT path FROM exports WHERE content_hash = ? ORDER BY created_at DESC LIMIT 1",
                       [content_hash])


def run_summary(con, run_id: str) -> dict:
    value = fetch_value(con, "SELECT summary FROM runs WHERE run_id = ?", [run_id])
    return json.loads(value) if value else {}


def ablation_reports(con) -> list[dict]:
    """Stored evaluations that compare the arms of an ablation (policies named ablate-*), newest first."""
    rows = fetch_dicts(con, "SELECT policy_a, policy_b, report, created_at FROM policy_evals "
                            "WHERE policy_a LIKE 'ablate-%' ORDER BY created_at DESC")
    for row in rows:
        row["report"] = json.loads(row["report"])
    return rows
