"""A judge as a labeler in the store: one `reward_models` row of kind "judge" per identity.

The identity is a hash of the template's text, the judge model (the weights' content hash, or the
endpoint URLs and model name) and its settings (how the verdict is read, the labels, the input
cap or the sampling parameters). Change any of them and the judge is a new labeler: a new row
(the same name, the next version), whose verdicts and scores start empty while the old ones stay.
Its scores are ordinary `scores` rows, so `pairs build --rm`, `--combine`, `rm compare` and export
manifests treat it as any reward model.
"""

from __future__ import annotations

import re

from workbench import ids
from workbench.judges.templates import JudgeTemplate
from workbench.models.registered_model import JUDGE, RegisteredModel
from workbench.store import Store, queries


def judge_config(template: JudgeTemplate, judge, labels: list[str]) -> tuple[str, dict]:
    """(rm id, config) of the labeler this template, judge model and settings make."""
    key, record = judge.identity()
    settings = judge.settings(labels)
    rm_id = ids.digest("judge", template.mode, template.sha256, key, ids.canonical_json(settings))
    config = {"kind": JUDGE, "mode": template.mode, "template": template.as_record(), "judge": record,
              "settings": settings}
    return rm_id, config


def default_name(judge, mode: str) -> str:
    raw = f"judge-{judge.short_name()}-{mode}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def register_judge(store: Store, template: JudgeTemplate, judge, labels: list[str],
                   name: str | None = None) -> RegisteredModel:
    """The judge's labeler, registered on first use (under `name`, else judge-MODEL-MODE)."""
    rm_id, config = judge_config(template, judge, labels)

    def write(con) -> RegisteredModel:
        if queries.get_reward_model(con, rm_id) is None:
            queries.insert_reward_model(con, rm_id, name or default_name(judge, template.mode), None, config, None)
        return queries.get_reward_model(con, rm_id)

    return store.write(write)
