"""`workbench.ids`' content ids as DuckDB expressions, for work done in bulk inside the store.

Each function takes SQL expressions (column names or `$parameters`, never user text) and returns
the expression of the id; `tests/workbench/test_bulk_import.py` checks every one against its
Python twin on adversarial text (newlines, NUL, combining marks, astral characters).
"""

from __future__ import annotations


def content_id(key: str) -> str:
    """md5 of a key expression (what `ids.content_id` computes in Python)."""
    return f"md5({key})"


def prompt_id_of_user_text(text: str) -> str:
    """The id of a prompt that is one user message."""
    return content_id(f"'prompt' || chr(10) || 'user ' || strlen({text}) || chr(10) || {text}")


def prompt_id_of_messages(messages: str) -> str:
    """The id of a prompt given as STRUCT(role VARCHAR, content VARCHAR)[]."""
    each = "lambda m: chr(10) || m.role || ' ' || strlen(m.content) || chr(10) || m.content"
    return content_id(f"'prompt' || array_to_string(list_transform({messages}, {each}), '')")


def imported_response_id(prompt_id: str, text: str) -> str:
    """The id of an imported reply, from its prompt id and text expressions."""
    return content_id(f"'response' || chr(10) || {prompt_id} || chr(10) || {text}")


def generated_response_id(run_id: str, prompt_id: str, sample_index: str) -> str:
    """The id of a generated sample, from its run id, prompt id and sample index expressions."""
    return content_id(f"'generated' || chr(10) || {run_id} || chr(10) || {prompt_id} || chr(10) || {sample_index}")


def pair_id(labeler: str, spec: str, chosen: str, rejected: str) -> str:
    """The id of a pair, from its labeler, spec and reply id expressions."""
    return content_id(f"'pair' || chr(10) || {labeler} || chr(10) || {spec} || chr(10) || {chosen} "
                      f"|| chr(10) || {rejected}")
