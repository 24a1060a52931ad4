"""The pair filter in SQL, written once: the export query and the app's in-memory pair index
both select `PAIR_COLUMNS` and apply `PAIR_FILTER` to them; the SFT export applies it to
`REPLY_AS_PAIR` (each reply as a pair with itself).

Each condition is `($name IS NULL OR ...)`, so a filter field left empty binds NULL and
selects everything; `workbench.curate.pair_filter.PairFilter` has one field per entry of
`PAIR_CONDITIONS` (plus `limit`, which the export applies as LIMIT).
"""

from __future__ import annotations

# The tables a pair's filter columns come from.
PAIR_JOINS = """
FROM pairs pr
JOIN prompts p ON p.prompt_id = pr.prompt_id
JOIN responses c ON c.response_id = pr.chosen_id
JOIN responses r ON r.response_id = pr.rejected_id
LEFT JOIN reward_models m ON m.rm_id = pr.rm_id
"""

# One row per stored pair with everything a filter looks at (and what an export writes about it).
PAIR_COLUMNS = """
    pr.pair_id, pr.prompt_id, pr.chosen_id, pr.rejected_id, pr.label_source, pr.rm_id, pr.strategy,
    pr.score_chosen, pr.score_rejected, pr.margin, pr.run_id, p.source, p.tags,
    c.n_chars AS chosen_chars, r.n_chars AS rejected_chars, c.run_id AS chosen_run, r.run_id AS rejected_run,
    coalesce(m.name || '@' || m.version, 'human') AS labeler,
    (coalesce(c.flag_truncated, false) OR coalesce(c.flag_repetition, false)
     OR coalesce(r.flag_truncated, false) OR coalesce(r.flag_repetition, false)) AS flagged,
    (pr.prompt_id IN (SELECT prompt_id FROM contamination WHERE response_id IS NULL)
     OR pr.chosen_id IN (SELECT response_id FROM contamination WHERE response_id IS NOT NULL)
     OR pr.rejected_id IN (SELECT response_id FROM contamination WHERE response_id IS NOT NULL)) AS contaminated
"""

# Filter field -> its condition over PAIR_COLUMNS. Score and length bounds hold for both replies.
PAIR_CONDITIONS = {
    "source": "source = $source",
    "min_margin": "margin >= $min_margin",
    "label": "label_source = $label",
    "rm": "rm_id = $rm",
    "strategy": "strategy = $strategy",
    "tag": "list_contains(tags, $tag)",
    "min_score": "least(score_chosen, score_rejected) >= $min_score",
    "max_score": "greatest(score_chosen, score_rejected) <= $max_score",
    "min_chars": "least(chosen_chars, rejected_chars) >= $min_chars",
    "max_chars": "greatest(chosen_chars, rejected_chars) <= $max_chars",
    "exclude_flagged": "NOT flagged",
    "exclude_contaminated": "NOT contaminated",
    "generation_run": "chosen_run = $generation_run AND rejected_run = $generation_run",
}
# Fields that are flags: off binds NULL (selects everything), like a field left empty.
FLAG_FIELDS = ("exclude_flagged", "exclude_contaminated")
# An old store may hold non-finite scores (refused at entry since): such pairs never pass a filter.
FINITE_SCORES = ("coalesce(isfinite(score_chosen), true) AND coalesce(isfinite(score_rejected), true)"
                 " AND coalesce(isfinite(margin), true)")
# Each field's condition as it is applied: true for every pair when the field is not set.
FIELD_CONDITIONS = {name: f"(${name} IS NULL OR {condition})" for name, condition in PAIR_CONDITIONS.items()}
PAIR_FILTER = "\n    AND ".join([FINITE_SCORES, *FIELD_CONDITIONS.values()])


# One reply seen as a pair of itself with itself, in PAIR_COLUMNS' names, so that PAIR_FILTER selects
# replies too (the SFT export's candidates): a reply passes when that pair would. The pair-only
# columns (margin, label, strategy) are NULL; their fields are refused for replies.
REPLY_AS_PAIR = """
SELECT r.response_id, p.source, p.tags, s.rm_id, s.score AS score_chosen, s.score AS score_rejected,
       NULL::DOUBLE AS margin, NULL::VARCHAR AS label_source, NULL::VARCHAR AS strategy,
       r.n_chars AS chosen_chars, r.n_chars AS rejected_chars, r.run_id AS chosen_run, r.run_id AS rejected_run,
       (coalesce(r.flag_truncated, false) OR coalesce(r.flag_repetition, false)) AS flagged,
       (r.prompt_id IN (SELECT prompt_id FROM contamination WHERE response_id IS NULL)
        OR r.response_id IN (SELECT response_id FROM contamination WHERE response_id IS NOT NULL)) AS contaminated
FROM responses r JOIN prompts p ON p.prompt_id = r.prompt_id JOIN scores s ON s.response_id = r.response_id
"""


def pair_filter_params(values: dict) -> dict:
    """`PAIR_FILTER`'s bound parameters from a filter's values (`rm` already an id); a flag that
    is off binds NULL, like any field left empty."""
    return {name: values.get(name) or None if name in FLAG_FIELDS else values.get(name)
            for name in PAIR_CONDITIONS}
