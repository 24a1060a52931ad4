"""A tiny store for DPO and round tests: a tiny policy, a tiny reward model, prompts (nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

TINY_DPO = ["--max-steps", "2", "--batch-size", "2", "--micro-batch-size", "2", "--max-length", "64",
            "--checkpoint-every", "1"]


def make_round_store(root: Path, prompts: int = 12):
    """(store, policy dir, rm name) with `prompts` prompts from source 'pool'."""
    from engine.reward_model import RewardModel
    from tests.tiny import make_tiny_model_dir
    from workbench.ingest.importer import import_files
    from workbench.models.reward_models import register_reward_model
    from workbench.store import Store

    root.mkdir(parents=True, exist_ok=True)
    policy = make_tiny_model_dir(root / "policy")
    store = Store(root / "store.duckdb")
    register_reward_model(store, RewardModel.from_base(policy).save(root / "rm"), name="tiny-rm")
    path = root / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {i}: what now?"}) + "\n" for i in range(prompts)))
    import_files(store, [path], fmt="prompts", source="pool", progress=False)
    return store, policy, "tiny-rm"


def scored_pairs(store, policy: Path, rm: str, limit: int = 4) -> str:
    """Sample 3 replies for `limit` prompts, score them, build best-vs-worst pairs; the generation run."""
    from engine.data import SamplingParams
    from workbench.curate.pairs import build_pairs
    from workbench.generate.sampling import sample_responses
    from workbench.generate.scoring import score_responses
    from workbench.generate.selection import PromptSelection

    run = sample_responses(store, str(policy), 3, params=SamplingParams(max_new_tokens=6),
                           selection=PromptSelection(limit=limit), progress=False).run_id
    score_responses(store, rm, generation_run=run, progress=False)
    build_pairs(store, rm, "best-vs-worst", generation_run=run, progress=False)
    return run
