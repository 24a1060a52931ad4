"""Review queues: fill a named queue from a source, show an annotator the next item (its two replies
in a random left/right order drawn per annotator), and store the annotator's label.

Sources (`SOURCES`), over any registered labeler (reward model, combination, LLM judge):
- `lowest-margin`: reward-model pairs with the smallest |margin| first;
- `rm-disagreement`: pairs one reward model made that another (not a judge) orders the other way;
- `judge-vs-rm`: pairs where an LLM judge and a reward model order the replies differently;
- `judge-inconsistent`: pairs a judge judged differently when the replies swapped places;
- `random-audit`: a uniform random sample of the stored pairs. Only this source's error rate is an
  unbiased estimate of a labeler's error rate: every other source picks the pairs where labels are
  most likely wrong.

`overlap` k: each item is labelled by up to k annotators, never twice by one (the table's key is
(item, annotator)). A skip is stored, so that annotator does not see the item again, but it is no vote.

    fill_queue(store, "audit", "random-audit", size=100, overlap=2)
    item = next_item(store, "audit", "alice")          # None when alice has nothing left there
    record_label(store, item.item_id, "alice", "left", item.left_id, item.right_id)
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

from workbench import ids
from workbench.errors import NotFound, WorkbenchError
from workbench.models.reward_models import resolve_reward_model
from workbench.store import Store, queries

SOURCES = ("lowest-margin", "rm-disagreement", "judge-vs-rm", "judge-inconsistent", "random-audit")
UNBIASED_SOURCE = "random-audit"
UNBIASED_NOTE = ("Only the random-audit source gives an unbiased estimate of a labeler's error rate: the other "
                 "sources pick the pairs where labels are most likely wrong.")
# What the annotator pressed -> the stored verdict. left/right become 'better' with the reply's id.
KEYS = ("left", "right", "tie", "both-bad", "skip")
MAX_QUEUE_FILL = 100_000
MAX_NOTE_CHARS = 2_000
DEFAULT_QUEUE = "default"


@dataclass
class QueueFillResult:
    queue: str
    source: str
    added: int
    overlap: int
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReviewItem:
    """An item as one annotator sees it: the prompt and the two replies in that annotator's order."""

    item_id: str
    queue: str
    source: str
    pair_id: str
    prompt_id: str
    prompt: str
    messages: str
    left_id: str
    right_id: str
    left_text: str
    right_text: str
    remaining: int  # items of the queue this annotator can still label, this one included
    scores: list = field(default_factory=list)  # (labeler, score left, score right)


def check_queue_name(queue: str) -> str:
    name = (queue or "").strip()
    if not name or len(name) > 100:
        raise WorkbenchError("give the queue a name of 1 to 100 characters, e.g. --queue audit")
    return name


def fill_queue(store: Store, queue: str, source: str, *, size: int, overlap: int = 1, seed: int = 0,
               labelers: list[str] | None = None) -> QueueFillResult:
    """Add up to `size` pairs from `source` to the queue (pairs already there are not added again)."""
    queue = check_queue_name(queue)
    if source not in SOURCES:
        raise WorkbenchError(f"unknown queue source '{source}'; choose one of {', '.join(SOURCES)}")
    if not 1 <= size <= MAX_QUEUE_FILL:
        raise WorkbenchError(f"--size must be between 1 and {MAX_QUEUE_FILL}")
    if overlap < 1:
        raise WorkbenchError("--overlap must be at least 1 (annotators per item)")
    rm_ids = [resolve_reward_model(store, name).rm_id for name in labelers] if labelers else None
    with store.connect() as con:
        empty = _empty_source_note(con, source)
    if empty:
        return QueueFillResult(queue, source, 0, overlap, empty)

    import pyarrow as pa  # here: the CLI reads SOURCES without loading pyarrow

    def write(con) -> int:
        found = queries.proposed_pairs(con, source, queue, size, seed, rm_ids)
        item_ids = [ids.digest("review-item", queue, p, a, b) for p, a, b in
                    zip(*(found[c].to_pylist() for c in ("prompt_id", "first_id", "second_id")))]
        n = found.num_rows
        items = found.append_column("item_id", pa.array(item_ids, pa.string())) \
            .append_column("queue", pa.array([queue] * n, pa.string())) \
            .append_column("source", pa.array([source] * n, pa.string())) \
            .append_column("overlap", pa.array([overlap] * n, pa.int32()))
        return queries.insert_review_items(con, items)

    added = store.write(write)
    note = "" if added else f"{source} proposed no pair that is not already in queue '{queue}'."
    return QueueFillResult(queue, source, added, overlap, note)


def _empty_source_note(con, source: str) -> str:
    """Why a judge source has nothing to propose in this store, or ''."""
    if source in ("judge-vs-rm", "judge-inconsistent") and not queries.judge_count(con):
        return (f"{source}: the store has no LLM judge, so there is nothing to propose; "
                "label pairs with `workbench judge` first.")
    if source == "judge-inconsistent" and not queries.has_judge_positions(con):
        return "judge-inconsistent: no judge has recorded position consistency in this store yet."
    return ""


def shown_order(item_id: str, annotator: str, first_id: str, second_id: str) -> tuple[str, str]:
    """(left, right) for this annotator: a fair coin drawn from a hash of item and annotator, so the
    same annotator sees the same order again after a reload, and annotators differ independently."""
    coin = hashlib.sha256(f"{item_id}\x00{annotator}".encode()).digest()[0] & 1
    return (first_id, second_id) if coin else (second_id, first_id)


def next_item(store: Store, queue: str, annotator: str, *, with_scores: bool = False) -> ReviewItem | None:
    """The next item of the queue for this annotator, or None when nothing is left for them."""
    return next_item_and_progress(store, queue, annotator, with_scores=with_scores)[0]


def next_item_and_progress(store: Store, queue: str, annotator: str, *,
                           with_scores: bool = False) -> tuple[ReviewItem | None, int]:
    """(the annotator's next item or None, how many items of the queue they labelled or skipped), read in
    one connection: the app calls this on every key press."""
    annotator = check_annotator(annotator)
    with store.connect() as con:
        done = queries.labels_by_annotator(con, annotator, queue)
        row = queries.next_review_item(con, queue, annotator)
        if row is None:
            return None, done
        remaining = queries.open_item_count(con, queue, annotator)
        scores = queries.reply_scores(con, [row["first_id"], row["second_id"]]) if with_scores else []
    left, right = shown_order(row["item_id"], annotator, row["first_id"], row["second_id"])
    text = {row["first_id"]: row["first_text"], row["second_id"]: row["second_text"]}
    by_labeler: dict[str, dict] = {}
    for labeler, response_id, score in scores:
        by_labeler.setdefault(labeler, {})[response_id] = score
    item = ReviewItem(row["item_id"], row["queue"], row["source"], row["pair_id"], row["prompt_id"],
                      row["prompt_text"], row["messages"], left, right, text[left], text[right], remaining,
                      [(name, s.get(left), s.get(right)) for name, s in sorted(by_labeler.items())])
    return item, done


def check_annotator(annotator: str) -> str:
    name = (annotator or "").strip()
    if not name or len(name) > 100 or any(c in name for c in ":\n\r\t"):
        raise WorkbenchError("an annotator name is 1 to 100 characters without ':', tabs or line breaks")
    return name


def record_label(store: Store, item_id: str, annotator: str, key: str, left_id: str, right_id: str,
                 note: str = "") -> dict:
    """Store the annotator's label on the item, shown as (left_id, right_id); refused if the item is
    unknown, the annotator labelled it already, or it has all the labels its overlap asks for."""
    annotator = check_annotator(annotator)
    if key not in KEYS:
        raise WorkbenchError(f"unknown verdict '{key}'; choose one of {', '.join(KEYS)}")
    if len(note or "") > MAX_NOTE_CHARS:
        raise WorkbenchError(f"the note is longer than {MAX_NOTE_CHARS} characters")
    label = {"item_id": item_id, "annotator": annotator, "left_id": left_id, "right_id": right_id,
             "verdict": "better" if key in ("left", "right") else key,
             "preferred_id": left_id if key == "left" else right_id if key == "right" else None,
             "note": (note or "").strip() or None, "labeled_at": None}

    def write(con) -> dict:
        item = queries.get_review_item(con, item_id)
        if item is None:
            raise NotFound(f"no review item '{item_id}' in this store")
        if {left_id, right_id} != {item["first_id"], item["second_id"]} or left_id == right_id:
            raise WorkbenchError("the replies shown are not this item's two replies; reload the item")
        if queries.annotator_has_labelled(con, item_id, annotator):
            raise WorkbenchError(f"{annotator} has already labelled this item; go on to the next one")
        if key != "skip" and queries.item_vote_count(con, item_id) >= item["overlap"]:
            raise WorkbenchError(f"this item already has the {item['overlap']} label(s) its overlap asks for; "
                                 "go on to the next one")
        queries.insert_review_label(con, label)
        return label

    return store.write(write)
