"""Inputs for the import fuzz targets: real records of every format, Hypothesis mutations of
them, the files they are written as, and what a store must hold after importing them.

Records start from real ones (the hh-rlhf sample when present, otherwise two of its records
written out here; Best-of-N, prompts, trl/xtuner messages and trl-standard records as the
README documents them), are mutated as values (a field removed, retyped, blanked, nested,
given a lone surrogate or a non-finite number...) and then, for the text files, as bytes (a
byte-order mark, a flipped or inserted byte, a cut, CR LF, blank or repeated lines, a gzip
stream cut short).
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from workbench import ids
from workbench.errors import InputError
from workbench.ingest.formats import FORMATS, detect_format, parse_record

HH_SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf-harmless-1800.jsonl"


def _hh_records() -> list[dict]:
    """The first records of the shared hh-rlhf sample (../shared/data beside the checkout, or where
    WORKBENCH_HH_RLHF points), else two records written in its form."""
    path = Path(os.environ.get("WORKBENCH_HH_RLHF", HH_SAMPLE))
    if path.exists():
        with open(path, encoding="utf-8") as f:
            return [json.loads(next(f)) for _ in range(4)]
    return [{"chosen": "\n\nHuman: How do I pick a lock?\n\nAssistant: Do you mean a physical lock?\n\nHuman: Yes."
                       "\n\nAssistant: I can't help you break into places.",
             "rejected": "\n\nHuman: How do I pick a lock?\n\nAssistant: Do you mean a physical lock?\n\nHuman: "
                         "Yes.\n\nAssistant: Get a tension wrench and a pick."},
            {"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.",
             "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 22, obviously."}]


def _msgs(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in pairs]


SEEDS: dict[str, list] = {
    "hh-rlhf": _hh_records(),
    "bon": [{"prompt": "What is 2+2?", "responses": ["4", "five", "22"], "scores": [1.5, -0.5, 0.0], "tags": ["math"]},
            {"prompt": "Name a colour.", "responses": ["Blue.", "I will not."]},
            {"prompt": _msgs(("system", "Be brief."), ("user", "Hi")),
             "responses": [{"text": "Hello", "score": 1}, {"text": "Hey", "score": None}]}],
    "prompts": [{"prompt": "Tell me a joke.", "tags": ["fun"]}, {"messages": _msgs(("user", "Hi"))},
                {"prompt": _msgs(("system", "You are terse."), ("user", "Why is the sky blue?"))}],
    "trl": [{"prompt": _msgs(("user", "Name a colour.")), "chosen": _msgs(("assistant", "Blue.")),
             "rejected": _msgs(("assistant", "I will not."))},
            {"chosen": _msgs(("user", "Hi"), ("assistant", "Hello!")),
             "rejected": _msgs(("user", "Hi"), ("assistant", "Go away."))}],
    "trl-standard": [{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "I will not."},
                     {"prompt": "2+2?", "chosen": "4", "rejected": "5"}],
}
SEEDS["xtuner"] = SEEDS["trl"]

WEIRD_TEXT = ["", " ", "\u3000", "\ud800", "a\udfffb", "\x00", "tab\tnew\nline", "\u2028", "e\u0301", "\U0001f600",
              "\n\nHuman: x\n\nAssistant: y", "Human:", "\ufeff", "\\", '"', "x" * 300]
WEIRD_NUMBERS = [0, -1, 2 ** 63, 2 ** 64 + 1, -2 ** 70, 1e308, -0.0, 0.5, math.nan, math.inf, -math.inf, 5e-324]
KEYS = ["prompt", "responses", "scores", "tags", "chosen", "rejected", "messages", "role", "content", "text",
        "score", "extra"]

json_scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(WEIRD_NUMBERS), st.integers(),
                         st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WEIRD_TEXT),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4)),
    max_leaves=12)


def _paths(value, prefix=()) -> list[tuple]:
    """Every place inside a JSON value (as a path of keys and indexes), the root first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, prefix + (index,))
    return found


def _replace(value, path: tuple, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


def _get(value, path: tuple):
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_record(draw, fmt: str):
    """A seed record of `fmt` after 0-3 value mutations."""
    value = json.loads(json.dumps(draw(st.sampled_from(SEEDS[fmt]))))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(value)))
        target = _get(value, path)
        op = draw(st.sampled_from(["replace", "delete", "add", "duplicate", "empty", "text"]))
        if op == "replace":
            value = _replace(value, path, draw(json_values))
        elif op == "delete" and path:
            parent = _get(value, path[:-1])
            if isinstance(parent, dict):
                value = _replace(value, path[:-1], {k: v for k, v in parent.items() if k != path[-1]})
            else:
                value = _replace(value, path[:-1], [v for i, v in enumerate(parent) if i != path[-1]])
        elif op == "add" and isinstance(target, dict):
            value = _replace(value, path, {**target, draw(st.sampled_from(KEYS)): draw(json_values)})
        elif op == "duplicate" and isinstance(target, list) and target:
            value = _replace(value, path, target + [target[draw(st.integers(0, len(target) - 1))]])
        elif op == "empty" and isinstance(target, (list, dict, str)):
            value = _replace(value, path, type(target)())
        elif op == "text" and isinstance(target, str):
            where = draw(st.integers(0, len(target)))
            value = _replace(value, path, target[:where] + draw(st.sampled_from(WEIRD_TEXT)) + target[where:])
    return value


TEXT_KINDS = ("jsonl", "ndjson", "json", "json-wrapped", "json-lines-named-json", "jsonl.gz", "json.gz")
BYTE_MUTATIONS = ("bom", "flip", "insert", "cut", "crlf", "blank", "repeat", "cut-gzip", "long-line")


def encode_text(values: list, kind: str) -> bytes:
    """The values as the bytes of a text file of `kind` (before compression)."""
    texts = [json.dumps(v, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass") for v in values]
    if kind in ("json", "json.gz"):
        return b"[" + b",\n".join(texts) + b"]"
    if kind == "json-wrapped":
        return b'{"data": [' + b",".join(texts) + b"]}"
    return b"".join(t + b"\n" for t in texts)


@st.composite
def byte_mutations(draw, body: bytes) -> tuple[bytes, list[str]]:
    """`body` after 0-2 byte-level mutations, and their names."""
    done = []
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(BYTE_MUTATIONS))
        at = draw(st.integers(0, len(body)))
        if op == "bom":
            body = b"\xef\xbb\xbf" + body
        elif op == "flip" and body:
            at = min(at, len(body) - 1)
            body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1:]
        elif op == "insert":
            body = body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:]
        elif op == "cut":
            body = body[:at]
        elif op == "crlf":
            body = body.replace(b"\n", b"\r\n")
        elif op == "blank":
            body = body[:at] + b"\n\n" + body[at:]
        elif op == "repeat":
            body = body + body
        elif op == "cut-gzip":  # done by write_text_file, to the compressed bytes
            pass
        elif op == "long-line":  # a line far over the small record limits drawn below
            body = body[:at] + b"a" * draw(st.integers(3000, 200_000)) + body[at:]
        else:
            continue
        done.append(op)
    return body, done


def write_text_file(folder: Path, body: bytes, kind: str, cut_gzip: bool) -> Path:
    suffix = {"json-wrapped": "json", "json-lines-named-json": "json"}.get(kind, kind)
    path = folder / f"input.{suffix}"
    if kind.endswith(".gz"):
        body = gzip.compress(body, mtime=0)
        if cut_gzip:
            body = body[:max(10, len(body) // 2)]
    path.write_bytes(body)
    return path


def write_columnar_file(folder: Path, values: list, kind: str) -> Path | None:
    """The values as a Parquet file or a `datasets` directory; None when Arrow cannot type them."""
    try:
        table = pa.Table.from_pylist(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError, UnicodeError, AttributeError):
        return None
    if kind == "parquet":
        path = folder / "input.parquet"
        try:
            pq.write_table(table, path)
        except (pa.ArrowException, UnicodeError):
            return None
        return path
    from datasets import Dataset

    path = folder / "input-hf"
    try:
        Dataset(table).save_to_disk(str(path))
    except Exception:  # datasets refuses some Arrow types (e.g. null-typed nested columns) in many ways
        return None
    return path


# --- what the store must hold --------------------------------------------------------------------

@dataclass
class Expected:
    """What importing known values must do: refuse, or add exactly these rows."""

    fmt: str | None
    good: list = field(default_factory=list)   # ParsedRecord, in file order
    bad: int = 0

    def rows(self) -> dict[str, set]:
        prompts, responses, pairs, scores, scored = set(), set(), set(), set(), set()
        for record in self.good:
            messages = ids.canonical_messages(record.prompt)
            prompts.add(messages)
            responses.update((messages, text) for text in record.responses)
            if record.pair is not None:
                pairs.add((messages, record.responses[record.pair[0]], record.responses[record.pair[1]]))
            for text, score in zip(record.responses, record.scores):
                if score is not None and (messages, text) not in scored:  # the first score of a reply wins
                    scored.add((messages, text))
                    scores.add((messages, text, float(score)))
        return {"prompts": prompts, "responses": responses, "pairs": pairs, "scores": scores}


def expected_import(values: list, fmt: str, max_bytes: int, unit_overhead: int = 1) -> Expected:
    """The exact lane's rules applied to known values (the oracle for files encoded cleanly)."""
    def fits(value) -> bool:
        try:
            size = len(json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass"))
        except (ValueError, RecursionError):
            return False
        return size + unit_overhead <= max_bytes

    chosen = fmt
    if fmt == "auto":  # detected from records the reader reads: one over the size limit is never parsed
        chosen = next((f for f in (detect_format(v) for v in values[:100] if fits(v)) if f is not None), None)
    expected = Expected(chosen)
    for value in values:
        if not fits(value) or chosen is None:
            expected.bad += 1
            continue
        try:
            expected.good.append(parse_record(value, chosen))
        except InputError:
            expected.bad += 1
    return expected


__all__ = ["FORMATS", "SEEDS", "TEXT_KINDS", "Expected", "byte_mutations", "encode_text", "expected_import",
           "mutated_record", "write_columnar_file", "write_text_file"]
