"""`workbench review export` / `review import`: queues and their labels as JSON Lines, so labelling can
happen in another tool and come back.

One line per item:
    {"store_id", "queue", "item_id", "source", "pair_id", "prompt_id", "prompt", "overlap",
     "first": {"response_id", "text"}, "second": {"response_id", "text"},
     "labels": [{"annotator", "verdict", "preferred_id", "left_id", "right_id", "note", "labeled_at"}]}
`verdict` is better | tie | both-bad | skip; with better, `preferred_id` names the better reply.

An import is all or nothing: every line is checked (it came from this store, its pair is stored and
has those two replies, each label is well formed) before one transaction stores the items and
labels; a label replaces that annotator's label on that item. Any error leaves the store unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench import ids
from workbench.errors import InputError, WorkbenchError
from workbench.review.queue import MAX_NOTE_CHARS, check_annotator, check_queue_name
from workbench.store import Store, queries

VERDICTS = ("better", "tie", "both-bad", "skip")


@dataclass
class ReviewTransferResult:
    path: str
    items: int
    labels: int
    new_items: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def export_review(store: Store, out: str | os.PathLike, queue: str | None = None) -> ReviewTransferResult:
    """Write the queue's items (or every queue's) and their labels to `out` as JSON Lines."""
    out = Path(out)
    with store.connect() as con:
        store_id = queries.store_identity(con)
        rows = queries.review_export_rows(con, queue)
    if queue is not None and not rows:
        raise WorkbenchError(f"queue '{queue}' has no items; fill it first (`workbench review queue`)")
    lines = []
    for row in rows:
        lines.append(json.dumps({
            "store_id": store_id, "queue": row["queue"], "item_id": row["item_id"], "source": row["source"],
            "pair_id": row["pair_id"], "prompt_id": row["prompt_id"], "prompt": row["prompt"],
            "overlap": row["overlap"], "first": {"response_id": row["first_id"], "text": row["first_text"]},
            "second": {"response_id": row["second_id"], "text": row["second_text"]}, "labels": row["labels"],
        }, ensure_ascii=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return ReviewTransferResult(str(out), len(rows), sum(len(r["labels"]) for r in rows))


def _read_lines(path: Path) -> list[tuple[int, dict]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise WorkbenchError(f"cannot read {path}: {error}") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"not JSON: {error.msg}", file=str(path), line=number) from None
        if not isinstance(record, dict):
            raise InputError("expected a JSON object", file=str(path), line=number)
        records.append((number, record))
    return records


def _check_label(label, first: str, second: str) -> dict:
    """The label as a row; ValueError (with the field) when it is malformed."""
    if not isinstance(label, dict):
        raise ValueError("labels: each label is an object")
    verdict = label.get("verdict")
    if verdict not in VERDICTS:
        raise ValueError(f"labels.verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    preferred = label.get("preferred_id")
    if (verdict == "better") != (preferred is not None) or preferred not in (None, first, second):
        raise ValueError("labels.preferred_id: with verdict 'better' it names one of the item's two replies, "
                         "otherwise it is null")
    left, right = label.get("left_id"), label.get("right_id")
    if {left, right} != {first, second} or left == right:
        raise ValueError("labels.left_id/right_id: the shown order names the item's two replies")
    note = label.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
        raise ValueError(f"labels.note: text of at most {MAX_NOTE_CHARS} characters, or null")
    try:
        annotator = check_annotator(label.get("annotator") if isinstance(label.get("annotator"), str) else "")
    except WorkbenchError as error:
        raise ValueError(f"labels.annotator: {error}") from None
    return {"annotator": annotator, "verdict": verdict, "preferred_id": preferred, "left_id": left,
            "right_id": right, "note": note, "labeled_at": label.get("labeled_at")}


def _check_record(record: dict, store_id: str, known: dict) -> tuple[dict, list[dict]]:
    """(item row, label rows) of one line; ValueError when it cannot be imported here."""
    if record.get("store_id") != store_id:
        raise ValueError(f"store_id: exported from another store ({record.get('store_id')!r}, this store is "
                         f"{store_id!r}); review labels come back only into the store they were exported from")
    pair_id = record.get("pair_id")
    if pair_id not in known:
        raise ValueError(f"pair_id: no pair {pair_id!r} in this store (a label for an unknown pair)")
    prompt_id, first, second = known[pair_id]
    given = (record.get("first") or {}).get("response_id"), (record.get("second") or {}).get("response_id")
    if sorted(r for r in given if r is not None) != [first, second]:
        raise ValueError(f"first/second: pair {pair_id} has replies {first} and {second}, not {list(given)}")
    try:
        queue = check_queue_name(record.get("queue") if isinstance(record.get("queue"), str) else "")
    except WorkbenchError as error:
        raise ValueError(f"queue: {error}") from None
    overlap = record.get("overlap", 1)
    if not isinstance(overlap, int) or overlap < 1:
        raise ValueError("overlap: a whole number of annotators, at least 1")
    item_id = ids.digest("review-item", queue, prompt_id, first, second)
    item = {"item_id": item_id, "queue": queue, "source": str(record.get("source") or "imported"),
            "pair_id": pair_id, "prompt_id": prompt_id, "first_id": first, "second_id": second, "overlap": overlap}
    labels = [_check_label(label, first, second) | {"item_id": item_id} for label in record.get("labels") or []]
    return item, labels


def import_review(store: Store, path: str | os.PathLike) -> ReviewTransferResult:
    """Store the items and labels of a review export (see the module docstring); all or nothing."""
    import pyarrow as pa

    path = Path(path)
    records = _read_lines(path)

    def write(con) -> ReviewTransferResult:
        store_id = queries.store_identity(con)
        known = queries.known_pairs(con, [r.get("pair_id") for _, r in records if isinstance(r.get("pair_id"), str)])
        items, labels, seen = [], [], set()
        for number, record in records:
            try:
                item, item_labels = _check_record(record, store_id, known)
            except ValueError as error:
                raise InputError(str(error), file=str(path), line=number) from None
            names = [label["annotator"] for label in item_labels]
            if len(set(names)) < len(names) or item["item_id"] in seen:
                raise InputError("an item appears once, and each annotator once in its labels", file=str(path),
                                 line=number)
            seen.add(item["item_id"])
            items.append(item)
            labels += item_labels
        new_items = queries.insert_review_items(con, pa.Table.from_pylist(items, schema=_item_schema(pa))) \
            if items else 0
        if labels:
            queries.replace_review_labels(con, pa.Table.from_pylist(labels, schema=_label_schema(pa)))
        return ReviewTransferResult(str(path), len(items), len(labels), new_items)

    return store.write(write)


def _item_schema(pa):
    return pa.schema([(n, pa.string()) for n in ("item_id", "queue", "source", "pair_id", "prompt_id",
                                                   "first_id", "second_id")] + [("overlap", pa.int32())])


def _label_schema(pa):
    return pa.schema([(n, pa.string()) for n in ("item_id", "annotator", "verdict", "preferred_id", "left_id",
                                                   "right_id", "note", "labeled_at")])
