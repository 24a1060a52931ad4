"""Identifiers: the same content always gets the same id, so re-imports are no-ops.

Content ids (prompts, responses, pairs) are the MD5 (128 bits, 32 hex characters) of a *key
text* that both Python and DuckDB build the same way, so bulk work can compute them
in SQL (`workbench.store.content_ids`) and row-at-a-time code here, with identical results
(tested on adversarial text). A key is a kind word, then its fields one per line; free text
is last, or length-prefixed in bytes, so two different contents never share a key:

    prompt     "prompt" + for each message: "\\n" + role + " " + len(utf8(content)) + "\\n" + content
    response   "response\\n" + prompt_id + "\\n" + text               (imported replies)
    generated  "generated\\n" + run_id + "\\n" + prompt_id + "\\n" + sample_index
    pair       "pair\\n" + labeler + "\\n" + spec + "\\n" + chosen_id + "\\n" + rejected_id

Run, export and reward-model ids name configurations rather than content and never need SQL:
they stay BLAKE2b-128 digests of their parts (`digest`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson

ID_BYTES = 16  # 128-bit ids, 32 hex characters


def content_id(key: str) -> str:
    """MD5 of a key text; DuckDB computes the same with `md5(key)`.

    MD5 is a surrogate key here, as in most warehouses (dbt's generate_surrogate_key): it only
    has to tell contents apart, and DuckDB computes it about twice as fast as SHA-256, which a
    million-row import feels. A deliberately forged collision could at worst make the store
    treat one crafted text as a duplicate of another crafted text.
    """
    return hashlib.md5(key.encode("utf-8")).hexdigest()


def digest(*parts: str) -> str:
    """BLAKE2b-128 of the parts joined by NUL: the id of a configuration (a run, an export, a scorer)."""
    return hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=ID_BYTES).hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def canonical_messages(messages: list[dict]) -> str:
    """Compact JSON of role/content messages with sorted keys (what the store keeps)."""
    return orjson.dumps([{"role": m["role"], "content": m["content"]} for m in messages],
                        option=orjson.OPT_SORT_KEYS).decode()


def prompt_key_text(messages: list[dict]) -> str:
    """The key text of a prompt's id (see the module docstring); DuckDB builds the same text."""
    return "prompt" + "".join(f"\n{m['role']} {len(m['content'].encode('utf-8'))}\n{m['content']}"
                              for m in messages)


def prompt_id(messages: list[dict]) -> str:
    """The content id of a prompt (its messages)."""
    return content_id(prompt_key_text(messages))


def imported_response_id(prompt: str, text: str) -> str:
    """The content id of an imported reply: its prompt id and text."""
    return content_id(f"response\n{prompt}\n{text}")


def generated_response_id(run: str, prompt: str, sample_index: int) -> str:
    """The id of a generated sample: its generation run, prompt id and sample index."""
    return content_id(f"generated\n{run}\n{prompt}\n{sample_index}")


def pair_id(labeler: str, spec: str, chosen: str, rejected: str) -> str:
    """`labeler` is 'human' or a reward-model id; `spec` the canonical strategy spec (JSON, one line)."""
    return content_id(f"pair\n{labeler}\n{spec}\n{chosen}\n{rejected}")


def run_id(kind: str, config: dict) -> str:
    """The id of a run: its kind and resolved config, so the same command finds its run again."""
    return digest("run", kind, canonical_json(config))


def export_id(path: str, content_hash: str) -> str:
    """The id of an export: where it was written and what it holds."""
    return digest("export", path, content_hash)


def external_scorer_id(score_name: str) -> str:
    """The reward-model id that scores imported under `score_name` are filed under."""
    return digest("external-scorer", score_name)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            hasher.update(block)
    return hasher.hexdigest()


def tree_hash(path: Path) -> str:
    """The hash of a directory's files (relative names and contents), e.g. a `save_to_disk` dataset."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return digest(*(f"{p.relative_to(path)}:{sha256_file(p)}" for p in files))
