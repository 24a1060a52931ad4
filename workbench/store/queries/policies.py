"""The `policies` table (policies trained here by DPO) and the `policy_evals` reports."""

from __future__ import annotations

import json

from workbench.store.queries.fetch import fetch_dicts, fetch_rows

_COLUMNS = "policy_id, name, path, base, reference, export_hash, hyper_parameters, run_id, created_at"


def get_policy(con, ref: str) -> dict | None:
    """A policy by name or id; None if there is none."""
    found = fetch_dicts(con, f"SELECT {_COLUMNS} FROM policies WHERE name = ? OR policy_id = ? "
                             "ORDER BY name = ? DESC LIMIT 1", [ref, ref, ref])
    return found[0] if found else None


def list_policies(con) -> list[dict]:
    """Every registered policy, oldest first."""
    return fetch_dicts(con, f"SELECT {_COLUMNS} FROM policies ORDER BY created_at, name")


def insert_policy(con, policy_id: str, name: str, path: str, base: str, reference: str, export_hash: str,
                  hyper_parameters: dict, run_id: str) -> None:
    con.execute(f"INSERT INTO policies ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
                [policy_id, name, path, base, reference, export_hash, json.dumps(hyper_parameters), run_id]).fetchall()


def registered_policy_paths(con) -> list[str]:
    return [path for (path,) in fetch_rows(con, "SELECT path FROM policies ORDER BY created_at DESC")]


def get_policy_eval(con, eval_id: str) -> dict | None:
    found = fetch_dicts(con, "SELECT * FROM policy_evals WHERE eval_id = ?", [eval_id])
    return found[0] if found else None


def upsert_policy_eval(con, eval_id: str, policy_a: str, policy_b: str, config: dict, report: dict) -> None:
    con.execute("DELETE FROM policy_evals WHERE eval_id = ?", [eval_id]).fetchall()
    con.execute("INSERT INTO policy_evals VALUES (?, ?, ?, ?, ?, current_timestamp)",
                [eval_id, policy_a, policy_b, json.dumps(config), json.dumps(report)]).fetchall()


def paired_eval_scores(con, run_a: str, run_b: str, rm_id: str) -> list[dict]:
    """Per prompt and sample index: both policies' replies' scores by one reward model and lengths."""
    return fetch_dicts(con, """
        SELECT a.prompt_id, a.sample_index, sa.score AS score_a, sb.score AS score_b,
               a.n_tokens AS tokens_a, b.n_tokens AS tokens_b, a.n_chars AS chars_a, b.n_chars AS chars_b
        FROM responses a
        JOIN responses b ON b.prompt_id = a.prompt_id AND b.sample_index = a.sample_index AND b.run_id = $run_b
        JOIN scores sa ON sa.response_id = a.response_id AND sa.rm_id = $rm
        JOIN scores sb ON sb.response_id = b.response_id AND sb.rm_id = $rm
        WHERE a.run_id = $run_a
        ORDER BY a.prompt_id, a.sample_index""", {"run_a": run_a, "run_b": run_b, "rm": rm_id})
