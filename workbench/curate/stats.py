"""What the store holds, as one dictionary (`workbench stats --json`)."""

from __future__ import annotations

import json

from workbench.store import Store, queries


def store_stats(store: Store) -> dict:
    """Counts of prompts, responses (by origin), pairs (by labeler), scores (by model), runs, exports and imports."""
    with store.connect() as con:
        counts = queries.table_counts(con)
        imports = []
        for row in queries.import_summaries(con):
            summary = json.loads(row["summary"]) if row["summary"] else {}
            imports.append({"run_id": row["run_id"], "files": summary.get("files"),
                            "records": summary.get("records"), "valid": summary.get("valid"),
                            "rejected": summary.get("rejected")})
        return {
            "store": str(store.path),
            "prompts": counts["prompts"],
            "responses": counts["responses"],
            "responses_by_origin": queries.responses_by_origin(con),
            "pairs": counts["pairs"],
            "pairs_by_labeler": queries.pairs_by_labeler(con),
            "scores": queries.scores_by_reward_model(con),
            "reward_models": counts["reward_models"],
            "runs": counts["runs"],
            "exports": counts["exports"],
            "imports": imports,
        }
