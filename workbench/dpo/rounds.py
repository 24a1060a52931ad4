"""`workbench round`: one round of iterative on-policy DPO, a first-class object of the store.

    sample N replies per fresh prompt from the current policy -> score them with the labeler RM
    -> pair them (strategy + filter) -> DPO from the current policy (reference: the first policy,
    as RLHFlow does, or the current one) -> evaluate the new policy against the first one on the
    held-out evaluation prompts.

Prompts: the evaluation set is fixed by round 1 (the first `eval_prompts` prompts of the pool, by
id); each round trains on the next `prompts` prompts of the pool that no round has used for
training or evaluation, so training and evaluation prompts never overlap (and `eval policy`
refuses prompts any round trained on). After `workbench dedup`, a prompt flagged as repeating an
earlier one is never picked, nor the prompt a used one repeats: a near duplicate of an evaluation
prompt never becomes a training prompt (`claim_prompts` refuses one, should it get through).

Resuming: the round's row, its prompt slice and its config are written before any work; every
phase is idempotent on the store (sampling generates only missing samples, scoring only unscored
replies, pair building inserts only new pairs, DPO resumes from its checkpoint and registers its
policy once, the evaluation reuses stored replies and scores), so rerunning the same command after
a kill at any phase finishes the round with no duplicate sample, score, pair or policy.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.data import SamplingParams
from engine.dpo import DPOTrainConfig
from workbench.errors import WorkbenchError
from workbench.curate.pair_filter import PairFilter
from workbench.generate.selection import PromptSelection
from workbench.store import Store, queries

REFERENCES = ("first", "previous")
PHASES = ("started", "sampled", "scored", "paired", "trained", "evaluated")


def _option(help_text: str, default=None, **extra):
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass
class RoundConfig:
    """What a round is configured by besides the DPO hyper-parameters and the pair filter."""

    rm: str = _option("Labeler: the reward model that scores the samples and picks the pairs.")
    policy: str = _option("Policy of round 1 (later rounds start from the previous round's policy).", "smollm2")
    source: str | None = _option("Prompt pool: only prompts from this source.")
    tag: str | None = _option("Prompt pool: only prompts with this tag.")
    prompts: int = _option("Fresh training prompts per round.", 200)
    eval_prompts: int = _option("Held-out evaluation prompts (fixed by round 1).", 200)
    n: int = _option("Samples per prompt.", 4)
    temperature: float = _option("Sampling temperature.", 0.8)
    top_p: float = _option("Nucleus sampling.", 0.95)
    max_new_tokens: int = _option("Tokens per sample.", 128)
    sample_seed: int = _option("Run seed of the samples.", 0)
    strategy: str = _option("Pair strategy (workbench pairs build).", "best-vs-worst")
    pair_margin: float = _option("Minimum score margin when pairs are built.", 0.0)
    reference: str = _option("DPO reference: first (the first round's policy) or previous (this round's start).",
                             "first", choices=REFERENCES)
    heldout_rm: str | None = _option("Held-out reward model for the evaluation (played no part in training).")
    eval_n: int = _option("Evaluation replies per prompt and policy.", 1)
    eval_seed: int = _option("Run seed of the evaluation replies.", 1234)
    out_root: str = _option("Directory under which each round's DPO run goes (round-K).", "runs/rounds")
    sample_batch_size: int = _option("Sample rows per forward pass.", 64)

    def validate(self) -> None:
        if not self.rm:
            raise WorkbenchError("--rm is required: the reward model that labels the round's pairs")
        if self.reference not in REFERENCES:
            raise WorkbenchError(f"--reference must be one of {', '.join(REFERENCES)}")
        for name in ("prompts", "eval_prompts", "n", "eval_n"):
            if getattr(self, name) < 1:
                raise WorkbenchError(f"--{name.replace('_', '-')} must be >= 1")

    def sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.max_new_tokens, self.sample_seed)

    def eval_sampling(self) -> SamplingParams:
        return SamplingParams(0.7, 0.95, self.max_new_tokens, self.eval_seed)


@dataclass
class RoundResult:
    round: int
    policy_in: str
    policy_out: str
    reference: str
    train_prompts: int
    generation_run: str
    pairs: int
    export_hash: str
    evaluation: dict
    phase_seconds: dict

    def as_dict(self) -> dict:
        return asdict(self)


def run_rounds(store: Store, config: RoundConfig, rounds: int = 1, *, dpo_settings: dict | None = None,
               pair_filter: PairFilter | None = None, progress: bool = True) -> list[RoundResult]:
    """Run (or finish) `rounds` rounds one after the other."""
    return [run_round(store, config, dpo_settings=dpo_settings, pair_filter=pair_filter, progress=progress)
            for _ in range(rounds)]


def run_round(store: Store, config: RoundConfig, *, dpo_settings: dict | None = None,
              pair_filter: PairFilter | None = None, progress: bool = True) -> RoundResult:
    """Finish the unfinished round, or start the next one, and run every phase (each idempotent)."""
    from workbench.dpo.dpo_training import train_policy
    from workbench.curate.pairs import build_pairs
    from workbench.dpo.policy_eval import evaluate_policies
    from workbench.generate.sampling import sample_responses
    from workbench.generate.scoring import score_responses

    config.validate()
    extra = pair_filter or PairFilter()
    extra.validate()
    dpo_settings = dict(dpo_settings or {})
    DPOTrainConfig(**dpo_settings)  # refuse bad hyper-parameters before the store changes
    number, row = open_round(store, config, dpo_settings, extra)
    train_ids, eval_ids = _round_prompts(store, number)
    times: dict[str, float] = {}

    def timed(phase, work):
        started = time.perf_counter()
        value = work()
        times[phase] = round(time.perf_counter() - started, 1)
        return value

    run = timed("sample", lambda: sample_responses(
        store, row["policy_in"], config.n, params=config.sampling(), selection=PromptSelection(prompt_ids=train_ids),
        batch_size=config.sample_batch_size, progress=progress).run_id)
    _phase(store, number, "sampled", generation_run=run)
    timed("score", lambda: score_responses(store, config.rm, generation_run=run, progress=progress))
    _phase(store, number, "scored")
    timed("pairs", lambda: build_pairs(store, config.rm, config.strategy, min_margin=config.pair_margin,
                                       seed=config.sample_seed, generation_run=run, progress=progress))
    _phase(store, number, "paired")
    selection = PairFilter(**{**extra.as_dict(), "rm": config.rm, "strategy": config.strategy, "generation_run": run})
    reference = None if row["reference"] == row["policy_in"] else row["reference"]
    dpo = DPOTrainConfig(**{**dpo_settings, "policy": row["policy_in"], "reference": reference,
                            "out_dir": str(Path(config.out_root) / f"round-{number}")})
    trained = timed("dpo", lambda: train_policy(store, dpo, f"round-{number}", pair_filter=selection,
                                                progress=progress))
    _phase(store, number, "trained", policy_out=trained.name, export_hash=trained.export_hash)
    first = _first_policy(store)
    report = timed("eval", lambda: evaluate_policies(
        store, trained.name, first, config.rm, heldout_rm=config.heldout_rm,
        selection=PromptSelection(prompt_ids=eval_ids), n=config.eval_n, params=config.eval_sampling(),
        batch_size=config.sample_batch_size, progress=progress))
    evaluation = report.as_dict() | {"phase_seconds": times}
    _phase(store, number, "evaluated", evaluation=evaluation)
    return RoundResult(number, row["policy_in"], trained.name, row["reference"], len(train_ids), run,
                       _pair_count(trained), trained.export_hash, evaluation, times)


def _pair_count(trained) -> int:
    return trained.pairs if trained.pairs >= 0 else -1


def _phase(store: Store, number: int, phase: str, **values) -> None:
    store.write(lambda con: queries.update_round(con, number, phase, **values))


def _first_policy(store: Store) -> str:
    with store.connect() as con:
        return queries.get_round(con, 1)["policy_in"]


def open_round(store: Store, config: RoundConfig, dpo_settings: dict, extra: PairFilter) -> tuple[int, dict]:
    """The unfinished round (its command must be the same), or a new one with its prompts claimed."""
    recorded = {"round": asdict(config), "dpo": dpo_settings, "filter": extra.as_dict()}

    def work(con) -> tuple[int, dict]:
        rounds = queries.list_rounds(con)
        if rounds and rounds[-1]["status"] != "completed":
            last = rounds[-1]
            if last["config"] != recorded:
                raise WorkbenchError(f"round {last['round']} is unfinished (phase {last['phase']}) and was started "
                                     "with other options: rerun its own command to finish it first")
            return last["round"], last
        number = len(rounds) + 1
        policy_in = rounds[-1]["policy_out"] if rounds else config.policy
        first = rounds[0]["policy_in"] if rounds else config.policy
        reference = first if config.reference == "first" else policy_in
        claim_prompts(con, number, config, rounds)
        queries.insert_round(con, number, policy_in, reference, recorded)
        return number, queries.get_round(con, number)

    return store.write(work)


def claim_prompts(con, number: int, config: RoundConfig, rounds: list[dict]) -> None:
    """Round 1 fixes the evaluation set; every round takes fresh training prompts after it (none that
    a round used, nor one `workbench dedup` flagged as a repeat, nor the prompt a used one repeats)."""
    if not rounds:
        eval_ids = queries.fresh_prompt_ids(con, config.source, config.tag, True, config.eval_prompts)
        if len(eval_ids) < config.eval_prompts:
            raise WorkbenchError(f"the prompt pool has {len(eval_ids)} prompts (not counting those `workbench dedup` "
                                 f"flagged as repeats), fewer than --eval-prompts {config.eval_prompts}: import more "
                                 "or lower it")
        queries.insert_round_prompts(con, number, "eval", eval_ids)
    train_ids = queries.fresh_prompt_ids(con, config.source, config.tag, True, config.prompts)
    if len(train_ids) < config.prompts:
        raise WorkbenchError(f"only {len(train_ids)} prompts of the pool are fresh (never used by a round nor in the "
                             "evaluation set, and not flagged by `workbench dedup` as repeating another prompt), "
                             f"fewer than --prompts {config.prompts}: import more or lower it")
    # fresh_prompt_ids excludes both; a refusal, never a silent overlap, if that ever breaks
    overlap = queries.used_prompt_rounds(con, train_ids, "eval")
    if overlap:
        raise WorkbenchError(f"{len(overlap)} training prompts of round {number} are in the evaluation set")
    repeats = queries.duplicated_round_prompts(con, train_ids, "eval")
    if repeats:
        prompt, evaluated = next(iter(sorted(repeats.items())))
        raise WorkbenchError(f"{len(repeats)} training prompts of round {number} repeat evaluation prompts "
                             f"(flagged by `workbench dedup`; e.g. {prompt[:12]} repeats {evaluated[:12]})")
    queries.insert_round_prompts(con, number, "train", train_ids)


def _round_prompts(store: Store, number: int) -> tuple[list[str], list[str]]:
    with store.connect() as con:
        return queries.round_prompt_ids(con, number, "train"), queries.round_prompt_ids(con, 1, "eval")


def list_rounds(store: Store) -> list[dict]:
    """Every round with its phase, policies, prompt counts and evaluation."""
    with store.connect() as con:
        rounds = queries.list_rounds(con)
        for r in rounds:
            r["train_prompts"] = len(queries.round_prompt_ids(con, r["round"], "train"))
    return rounds
