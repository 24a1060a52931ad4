"""Train a reward model whose backbone is frozen from cached features alone (`--head-only`).

With every decoder layer and the embeddings frozen, only the final norm and the value head
learn, and both act on each conversation's reward-token state on its own. So the backbone runs
once per conversation (engine.feature_cache keeps the states on disk, keyed by the backbone and
the token ids), and the head probe, every epoch, the held-out evaluation and every later retrain
on overlapping pairs read the cache instead of running it again:

    result = train_head_only(TrainConfig(base="smollm2", out_dir="runs/rm", head_only=True), train, heldout)

The optimizer, schedule, losses, data order and metrics are the full trainer's (engine.training),
so `--head-only` trains what `--freeze-layers` = every layer trains, without the backbone's cost.
The saved model is the same standard HF directory, and scoring it the usual way gives the scores
the head gives on the cached features (tested). A run takes seconds once the features exist, so
`--resume` simply trains again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from engine.data import PreferencePair
from engine.errors import EngineError
from engine.evaluation import evaluate_pairs
from engine.feature_cache import FeatureCache, FrozenFeatures, final_norm
from engine.losses import reward_loss
from engine.precision import describe_cpu, resolve_precision
from engine.progress import epoch_label, phase, progress_bar
from engine.train_config import TrainConfig
from engine.run_dir import RunDirectory
from engine.train_guards import stop_if_not_finite
from engine.train_schedule import lr_lambda, step_pair_indices, steps_per_epoch, total_steps
from engine.training import TrainResult, build_reward_model


@dataclass
class HeadOnlyResult(TrainResult):
    features: dict = field(default_factory=dict)  # backbone_forwards, cache_hits, seconds


def frozen_backbone(config: TrainConfig, world_size: int = 1) -> bool:
    """Whether nothing below the final norm trains: --head-only, or (in one process) --freeze-layers
    covering every decoder layer the model keeps."""
    if config.head_only:
        return True
    if config.lora or not config.freeze_layers or world_size > 1:
        return False
    from transformers import AutoConfig

    from engine.backbone import resolve_model_path

    depth = config.num_layers or AutoConfig.from_pretrained(resolve_model_path(config.base)).num_hidden_layers
    return config.freeze_layers >= depth


class HeadScorer:
    """Scores from cached features through the live final norm and value head (an engine.scoring-like scorer)."""

    def __init__(self, rm, features: FrozenFeatures, max_length: int):
        self.rm, self.features, self.encoder = rm, features, rm.encoder(max_length)

    def head_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) scores of (N, H) pre-norm features."""
        norm, head = final_norm(self.rm), self.rm.value_head
        return head(norm(x.to(head.weight.dtype))).squeeze(-1)

    @torch.no_grad()
    def score(self, items, progress=None, **_) -> list[float]:
        return self.head_scores(self.features.compute(self.encoder.encode_many(items), "held-out features")).tolist()


def _trainable(rm) -> list[torch.nn.Parameter]:
    rm.model.requires_grad_(False)
    params = [*final_norm(rm).parameters(), *rm.value_head.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def _optimizer(config: TrainConfig, rm, params):
    head = {id(p) for p in rm.value_head.parameters()}
    groups = [{"params": [p for p in params if (id(p) in head) == is_head and (p.ndim >= 2) == matrix],
               "weight_decay": config.weight_decay if matrix else 0.0,
               "lr": config.lr * (config.head_lr_multiplier if is_head else 1.0)}
              for is_head in (False, True) for matrix in (True, False)]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def _check_config(config: TrainConfig) -> torch.device:
    from engine.distributed import compute_init

    if config.lora:
        raise EngineError("--head-only trains the value head on a frozen backbone: drop --lora/--qlora")
    ctx = compute_init(config.device)
    if ctx.world_size > 1:
        raise EngineError("--head-only runs in one process (it takes seconds once the features are cached): "
                          "run it without torchrun")
    return ctx.device


def train_head_only(config: TrainConfig, train_pairs: Sequence[PreferencePair],
                    eval_pairs: Sequence[PreferencePair] | None = None, *, progress: bool = True,
                    resume: bool = False, cache: FeatureCache | None = None) -> HeadOnlyResult:
    """Train the final norm and value head on cached backbone features; save a standard HF directory."""

    device = _check_config(config)
    out = RunDirectory(config.out_dir)
    out.check_fresh(resume)  # a head-only run is cheap to repeat: --resume trains it again
    out.path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    with phase("loading backbone", progress):
        rm = build_reward_model(config, device)
    precision = resolve_precision(config.precision, device)
    cache = cache if cache is not None else FeatureCache.open(config.feature_cache, config.feature_cache_gb)
    encoder = rm.encoder(config.max_length)
    with phase(f"tokenizing {len(train_pairs)} pairs", progress):
        encoded = encoder.encode_pairs(train_pairs)
    features = FrozenFeatures(rm, precision, cache, source=str(config.base), progress=progress)
    started = time.perf_counter()
    x = features.compute([s for pair in encoded for s in pair], "backbone features (train)")  # (2N, H)
    feature_seconds = time.perf_counter() - started
    params = _trainable(rm)
    norm = final_norm(rm)
    if config.head_init == "probe":
        from engine.head_probe import probe_from_states

        with phase("head probe: fitting", progress), torch.no_grad():
            normed = norm(x).float()
            probe = probe_from_states(rm, normed[0::2], normed[1::2], losses=config.loss_settings())
        out.write_head_probe(probe)
    steps = total_steps(config, len(encoded))
    optimizer = _optimizer(config, rm, params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, steps))
    losses = config.loss_settings()
    scorer = HeadScorer(rm, features, config.max_length)
    lengths = torch.tensor([len(s) for pair in encoded for s in pair])
    per_epoch = steps_per_epoch(len(encoded), config.pairs_per_step)
    out.start_metrics()
    out.write_config(config)
    out.write_precision(config.precision, precision, describe_cpu())
    rm.train()
    train_started = time.perf_counter()
    last, tokens_done, bar = None, 0, None
    for step in range(steps):
        if bar is None or step % per_epoch == 0:
            if bar is not None:
                bar.close()
            bar = progress_bar(min(per_epoch, steps - step), epoch_label(step, steps, per_epoch), unit=" steps",
                               enabled=progress)
        last = _step(config, step, len(encoded), x, lengths, scorer, losses, params, optimizer, scheduler)
        last["epoch"] = round((step + 1) / per_epoch, 4)
        last["elapsed_s"] = round(time.perf_counter() - train_started, 2)
        tokens_done += last["tokens"]
        out.append_metrics(last)
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.4f}", acc=f"{last['accuracy']:.2f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - train_started
    rm.eval()
    evaluation = None
    if eval_pairs:
        with phase(f"evaluating on {len(eval_pairs)} held-out pairs", progress):
            result = evaluate_pairs(scorer, list(eval_pairs))
        evaluation = {k: v for k, v in result.items() if k not in ("chosen_scores", "rejected_scores")}
        out.write_eval(evaluation)
    with phase(f"saving the model to {out.path}", progress):
        rm.save(out.path)
    stats = {"backbone_forwards": features.backbone_forwards, "cache_hits": features.cache_hits,
             "feature_seconds": round(feature_seconds, 2), "fingerprint": features.fingerprint,
             "cache_dir": str(cache.directory)}
    out.write_features(stats)
    result = HeadOnlyResult(str(out.path), steps, last["loss"], last["accuracy"], evaluation, round(seconds, 2),
                            round(tokens_done / seconds, 1) if seconds > 0 else 0.0, None, precision, stats)
    out.mark_complete(result.as_dict())
    return result


def _step(config, step, n_pairs, x, lengths, scorer, losses, params, optimizer, scheduler) -> dict:
    indices = step_pair_indices(n_pairs, config.pairs_per_step, config.seed, step)
    rows = torch.tensor([2 * i + k for i in indices for k in (0, 1)])  # chosen, rejected, chosen, ...
    scores = scorer.head_scores(x[rows])
    loss = reward_loss(scores, losses)
    n = len(indices)
    stop_if_not_finite("loss", loss.total.item() / n, step, config.lr)  # as the full trainer: no NaN weights
    (loss.total / n).backward()
    grad_norm = None
    if config.max_grad_norm > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        stop_if_not_finite("gradient norm", grad_norm, step, config.lr)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    scores = scores.detach().float()
    return {"step": step + 1, "loss": loss.total.item() / n, "ranking_loss": loss.ranking.item() / n,
            "penalty": loss.penalty.item() / n, "accuracy": loss.correct.item() / n,
            "chosen_score": scores[0::2].sum().item() / n, "rejected_score": scores[1::2].sum().item() / n,
            "lr": lr, "grad_norm": grad_norm, "tokens": int(lengths[rows].sum()), "pairs": n}
