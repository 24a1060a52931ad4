"""`workbench eval policy A --against B`: both policies answer the same held-out prompts, a reward
model scores both, and the report gives A's win rate over B (ties half) with a 95% bootstrap CI
over prompts, the mean reward and length of each, and the length-controlled win rate
(`workbench.dpo.win_rates`). With a held-out reward model (one that played no part in training), a
win under the training RM that the held-out RM does not confirm is flagged as reward hacking.

Everything goes through the store: each policy's replies are an ordinary generation run (same
seed and sampling parameters for both, so a prompt's sample i is drawn with the same seed by A
and B) and the scores ordinary scores, so an interrupted evaluation resumes where it stopped and
a repeated one costs nothing. Prompts that a round trained on are refused: evaluating on
training prompts would measure memory, not the policy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from engine.data import SamplingParams
from workbench import ids
from workbench.errors import WorkbenchError
from workbench.models.reward_models import resolve_reward_model
from workbench.generate.selection import PromptSelection
from workbench.store import Store, queries
from workbench.dpo.win_rates import head_to_head, reward_hacking


@dataclass
class PolicyEvalReport:
    policy_a: str
    policy_b: str
    prompts: int
    samples_per_prompt: int
    rm: str
    training_rm: dict
    heldout_rm: str | None = None
    heldout: dict | None = None
    reward_hacking: bool | None = None
    runs: dict = field(default_factory=dict)
    methods: dict = field(default_factory=lambda: {
        "win_rate": "share of prompts A's reply scores higher (ties 1/2, a prompt's samples averaged)",
        "ci": "95% percentile bootstrap over prompts (1000 resamples, seed 0)",
        "length_controlled": "AlpacaEval-2 style: logistic regression of the outcome on tanh(dlen/sd(dlen)), "
                             "dlen = A's tokens - B's, read at dlen = 0"})

    def as_dict(self) -> dict:
        return asdict(self)


def check_heldout_prompts(store: Store, prompt_ids: list[str]) -> None:
    """Refuse evaluation prompts that a round trained on."""
    with store.connect() as con:
        used = queries.used_prompt_rounds(con, prompt_ids, "train")
    if used:
        first = min(used.values())
        raise WorkbenchError(f"{len(used)} of the evaluation prompts were training prompts of round {first}: "
                             "evaluate on prompts no round trained on (e.g. another --source or the rounds' eval set)")


def evaluate_policies(store: Store, policy_a: str, policy_b: str, rm: str, *, heldout_rm: str | None = None,
                      selection: PromptSelection | None = None, n: int = 1, params: SamplingParams | None = None,
                      batch_size: int = 64, progress: bool = True) -> PolicyEvalReport:
    """Sample both policies on the selected prompts, score, compare; the report is stored too."""
    from workbench.generate.sampling import sample_responses

    selection = selection or PromptSelection()
    params = params or SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=128, seed=1234)
    with store.connect() as con:
        prompt_ids = [p for p, _ in queries.select_prompts(con, selection.as_dict())]
    if not prompt_ids:
        raise WorkbenchError("no prompts match the evaluation selection")
    check_heldout_prompts(store, prompt_ids)
    models = [resolve_reward_model(store, ref) for ref in (rm, heldout_rm) if ref]
    fixed = PromptSelection(prompt_ids=prompt_ids)
    runs = {}
    for label, spec in (("a", policy_a), ("b", policy_b)):
        runs[label] = sample_responses(store, spec, n, params=params, selection=fixed, batch_size=batch_size,
                                       progress=progress).run_id
    reports = [_compare(store, runs, model, progress) for model in models]
    report = PolicyEvalReport(policy_a, policy_b, reports[0].prompts, n, models[0].label, reports[0].as_dict(),
                              runs=runs)
    if heldout_rm:
        report.heldout_rm, report.heldout = models[1].label, reports[1].as_dict()
        report.reward_hacking = reward_hacking(reports[0], reports[1])
    config = {"a": policy_a, "b": policy_b, "runs": runs, "rms": [m.rm_id for m in models],
              "params": asdict(params), "n": n}
    store.write(lambda con: queries.upsert_policy_eval(con, ids.run_id("policy-eval", config), policy_a, policy_b,
                                                        config, report.as_dict()))
    return report


def _compare(store: Store, runs: dict, model: dict, progress: bool):
    from workbench.generate.scoring import score_responses

    for run in runs.values():
        score_responses(store, model.rm_id, generation_run=run, progress=progress)
    with store.connect() as con:
        rows = queries.paired_eval_scores(con, runs["a"], runs["b"], model.rm_id)
    return head_to_head(rows)


def describe_report(report: PolicyEvalReport) -> list[str]:
    """The report as a few lines for people."""
    lines = [f"{report.policy_a} vs {report.policy_b} on {report.prompts} held-out prompts "
             f"x {report.samples_per_prompt} samples:"]
    for label, name, h in (("training RM", report.rm, report.training_rm),
                           ("held-out RM", report.heldout_rm, report.heldout)):
        if h is None:
            continue
        lines.append(
            f"  {label} {name}: win rate {h['win_rate']:.3f} [95% CI {h['win_rate_ci'][0]:.3f}, "
            f"{h['win_rate_ci'][1]:.3f}], length-controlled {h['lc_win_rate']:.3f} [{h['lc_win_rate_ci'][0]:.3f}, "
            f"{h['lc_win_rate_ci'][1]:.3f}]; mean reward {h['mean_reward_a']:.3f} vs {h['mean_reward_b']:.3f}; "
            f"mean tokens {h['mean_tokens_a']:.1f} vs {h['mean_tokens_b']:.1f}")
    if report.reward_hacking:
        lines.append("  REWARD HACKING: the win under the training RM vanishes under the held-out RM.")
    return lines
