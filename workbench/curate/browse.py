"""Browse the store: a page of prompts (server-side search, filter, sort, paging) and one
prompt's responses with their scores, Best-of-N picks, finish reasons and curation flags.

Only one page is ever read: a page of prompts is one indexed-order query over `prompts` plus a
lookup of those prompts' responses, so it stays fast at a million responses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from workbench.errors import NotFound, WorkbenchError
from workbench.store import Store, queries

SORTS = tuple(queries.PROMPT_SORTS)
PAGE_SIZE = 20
TEXT_SHOWN = 160
PAGE_COLUMNS = ["prompt", "source", "tags", "responses", "BoN picks", "pairs", "prompt_id"]


@dataclass
class PromptQuery:
    """Which prompts, in which order, which page (1-based). Every field is a bound parameter."""

    search: str | None = None
    source: str | None = None
    tag: str | None = None
    sort: str = "newest"
    page: int = 1
    page_size: int = PAGE_SIZE

    def validate(self) -> None:
        """Refuse a page size or sort order the browser does not offer."""
        if self.sort not in queries.PROMPT_SORTS:
            raise WorkbenchError(f"unknown sort '{self.sort}'; choose one of {', '.join(SORTS)}")
        if self.page < 1 or not 1 <= self.page_size <= 500:
            raise WorkbenchError("page must be >= 1 and page size between 1 and 500")

    def filters(self) -> dict:
        """The query's prompt filter (source, tag, search) for the store."""
        return {"search": (self.search or "").strip() or None, "source": self.source or None,
                "tag": self.tag or None}


@dataclass
class PromptPage:
    rows: pd.DataFrame
    total: int
    page: int
    pages: int

    def caption(self) -> str:
        """'Page P of N · T prompts', or that none match."""
        if not self.total:
            return "No prompts match."
        return f"Page {self.page} of {self.pages} · {self.total:,} prompt{'s' if self.total != 1 else ''}"


def shorten(text: str, limit: int = TEXT_SHOWN) -> str:
    """One line of at most `limit` characters (whitespace collapsed, an ellipsis where cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def prompt_page(store: Store, query: PromptQuery) -> PromptPage:
    """One page of prompts with per-prompt counts; a page past the end shows the last page."""
    query.validate()
    filters = query.filters()
    with store.connect() as con:
        total = queries.count_prompts(con, filters)
        pages = max(1, -(-total // query.page_size))
        page = min(query.page, pages)
        found = queries.prompt_page(con, filters, query.sort, query.page_size, (page - 1) * query.page_size)
        stats = queries.prompt_page_stats(con, [r["prompt_id"] for r in found]) if found else {}
    records = []
    for row in found:
        s = stats.get(row["prompt_id"], {})
        records.append([shorten(row["text"]), row["source"], ", ".join(row["tags"]), s.get("n_responses", 0),
                        s.get("n_picks", 0), s.get("n_pairs", 0), row["prompt_id"]])
    return PromptPage(pd.DataFrame(records, columns=PAGE_COLUMNS), total, page, pages)


def prompt_detail(store: Store, prompt_id: str) -> dict:
    """A prompt and all its responses, each with scores by reward model, picks, pair roles and flags.

    Returns {"prompt": {...,"messages": [...]}, "responses": [{..., "scores": {rm: score},
    "bon_pick_by": [rm, ...], "chosen": k, "rejected": k, "flags": [...]}, ...], "reward_models": [...]}.
    """
    prompt_id = (prompt_id or "").strip()
    if not prompt_id:
        raise WorkbenchError("pick a prompt in the table first")
    with store.connect() as con:
        prompt = queries.prompt_row(con, prompt_id)
        if prompt is None:
            raise NotFound(f"prompt {prompt_id} is not in the store")
        responses = queries.prompt_responses(con, prompt_id)
        scores = queries.prompt_scores(con, prompt_id)
        picks = queries.prompt_bon_picks(con, prompt_id)
        roles = {rid: (c, r) for rid, c, r in queries.prompt_pair_roles(con, prompt_id)}
    prompt["messages"] = json.loads(prompt["messages"])
    by_response: dict[str, dict[str, float]] = {}
    for rid, rm, score in scores:
        by_response.setdefault(rid, {})[rm] = score
    picked: dict[str, list[str]] = {}
    for rid, rm in picks:
        picked.setdefault(rid, []).append(rm)
    index_of = {r["response_id"]: i for i, r in enumerate(responses)}
    for r in responses:
        r["scores"] = by_response.get(r["response_id"], {})
        r["bon_pick_by"] = picked.get(r["response_id"], [])
        r["chosen"], r["rejected"] = roles.get(r["response_id"], (0, 0))
        r["flags"] = _flags(r, index_of)
    return {"prompt": prompt, "responses": responses, "reward_models": sorted({rm for _, rm, _ in scores})}


def _flags(response: dict, index_of: dict[str, int]) -> list[str]:
    flags = []
    duplicate_of = response["flag_near_duplicate_of"]
    if duplicate_of:
        flags.append(f"near-duplicate of #{index_of[duplicate_of]}" if duplicate_of in index_of
                     else "near-duplicate")
    if response["flag_truncated"]:
        flags.append("truncated")
    if response["flag_repetition"]:
        flags.append("repetition")
    return flags


def filter_choices(store: Store) -> dict:
    """Sources and tags present in the store, for the filter dropdowns."""
    with store.connect() as con:
        sources, tags = queries.sources_and_tags(con)
    return {"sources": sources, "tags": tags}
