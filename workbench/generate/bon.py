"""`workbench bon`: sample N responses per prompt, score them, and mark each prompt's best."""

from __future__ import annotations

from dataclasses import dataclass

from engine.data import SamplingParams
from workbench.models.reward_models import resolve_reward_model
from workbench.generate.sampling import SampleResult, sample_responses
from workbench.generate.scoring import ScoreResult, score_responses
from workbench.generate.selection import PromptSelection
from workbench.store import Store, queries


@dataclass
class BestOfNResult:
    sampling: SampleResult
    scoring: ScoreResult
    picks: int

    def as_dict(self) -> dict:
        return {"sampling": self.sampling.as_dict(), "scoring": self.scoring.as_dict(), "picks": self.picks}


def best_of_n(store: Store, policy: str, rm: str, n: int, *, params: SamplingParams | None = None,
              selection: PromptSelection | None = None, batch_size: int = 64, backend: str = "torch",
              progress: bool = True, trust_remote_code: bool = False, served=None, **score_kwargs) -> BestOfNResult:
    """Sample N replies per selected prompt, score them with the reward model and record each prompt's best.

    `trust_remote_code` lets a reward model that ships its own Python code (InternLM2) run it.
    `served` (a `workbench.endpoints.sampling.ServedModel`) samples from inference servers instead of `policy`."""
    model = resolve_reward_model(store, rm, trust_remote_code)  # fail before sampling if the reward model is unknown
    model.verified_weights()  # ... has no weights here, or they changed since registration
    if served is not None:
        from workbench.endpoints.sampling import sample_from_endpoints

        sampled = sample_from_endpoints(store, served, n, params=params, selection=selection, progress=progress)
    else:
        sampled = sample_responses(store, policy, n, params=params, selection=selection, batch_size=batch_size,
                                   backend=backend, progress=progress)
    scored = score_responses(store, model.rm_id, selection=selection, generation_run=sampled.run_id,
                             progress=progress, trust_remote_code=trust_remote_code, **score_kwargs)
    picks = store.write(lambda con: queries.insert_bon_picks(con, model.rm_id, sampled.run_id))
    return BestOfNResult(sampled, scored, picks)


