"""Train a reward model on preference pairs: packed batches, focal ranking + log-barrier loss,
AdamW with warm-up then cosine decay, gradient accumulation, clipping, resumable checkpoints.

    result = train_reward_model(TrainConfig(base="smollm2", out_dir="runs/rm"), train_pairs, eval_pairs)

Each optimizer step takes `pairs_per_step` pairs (shuffled per epoch with the seed, last partial
chunk dropped), splits them over data-parallel ranks, packs each rank's share into micro-batches
of at most `max_packed_length` tokens, and accumulates gradients over them. The loss is summed over
pairs and divided by the step's total pair count, so a step's gradient does not depend on how its
pairs were split into micro-batches or ranks. Under torchrun the model is wrapped in DDP (or FSDP).

Multi-process layout: world = dp_size x sp_size. Ranks are grouped into sequence-parallel (SP)
groups of `sp_size` consecutive ranks (engine.sequence_parallel); a step's pairs are split over
the dp_size groups only, and the ranks of one SP group share each packed row. Gradient math: each
rank backpropagates its micro-batches' summed loss times world_size / step_pairs. The SP ranks
of a group hold partial gradients of the same rows whose sum is the rows' full gradient (see
engine.sequence_parallel), so the world-wide mean that DDP (or FSDP's reduce-scatter) takes is

    (1/W) * sum_groups sum_sp (W/N) * g_partial = (1/N) * sum over the step's N pairs of grad loss_pair,

the global-batch gradient, exactly as on one process. With `fsdp` (engine.fsdp) every rank must
run the same number of forward/backward passes, so data-parallel groups with fewer micro-batches
run extra ones whose loss is multiplied by zero.

The state after every `checkpoint_every` steps (weights, optimizer, scheduler, RNG, step) lets
`resume=True` continue a killed run to the same final loss. Per-step metrics go to
`OUT/metrics.jsonl`; the trained model is saved as a standard HF directory in OUT (LoRA merged;
the adapter with its value head also in OUT/adapter).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from engine import fsdp
from engine.backbone import resolve_model_path
from engine.checkpoint import (latest_checkpoint, load_checkpoint, load_trainable_state, save_checkpoint,
                               set_rng_state, trainable_state)
from engine.data import PreferencePair
from engine.distributed import DistContext, all_reduce_sum, barrier, compute_init
from engine.errors import EngineError
from engine.train_guards import stop_if_not_finite
from engine.losses import reward_loss
from engine.packing import group_pairs, pack_pairs
from engine.precision import autocast, describe_cpu, resolve_precision
from engine.progress import epoch_label, phase, progress_bar
from engine.reward_model import LoraSettings, RewardModel
from engine.run_dir import RunDirectory
from engine.sequence_parallel import SequenceParallelScorer, parallel_layout
from engine.train_config import TrainConfig
from engine.train_schedule import lr_lambda, step_pair_indices, steps_per_epoch, total_steps



@dataclass
class TrainResult:
    out_dir: str
    steps: int
    final_loss: float | None
    final_accuracy: float | None
    eval: dict | None
    seconds: float
    tokens_per_s: float
    resumed_from: int | None
    precision: str = "fp32"  # what `config.precision` resolved to on this machine

    def as_dict(self) -> dict:
        return asdict(self)


def build_reward_model(config: TrainConfig, device: torch.device) -> RewardModel:
    """The reward model a config describes: backbone, reward token, LoRA/QLoRA, frozen layers and
    gradient checkpointing."""
    lora = LoraSettings(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout) if config.lora else None
    rm = RewardModel.from_base(resolve_model_path(config.base), reward_token=config.reward_token,
                               reward_token_id=config.reward_token_id, lora=lora, qlora=config.qlora, device=device,
                               num_layers=config.num_layers)
    if config.freeze_layers:
        layers = getattr(rm.decoder, "layers", None)
        if layers is None or config.freeze_layers > len(layers):
            raise EngineError(f"freeze_layers={config.freeze_layers}: the backbone has "
                              f"{0 if layers is None else len(layers)} decoder layers")
        rm.decoder.get_input_embeddings().requires_grad_(False)
        for layer in layers[:config.freeze_layers]:
            layer.requires_grad_(False)
    if config.gradient_checkpointing:
        rm.enable_gradient_checkpointing()
    return rm


class _Trainer:
    def __init__(self, config: TrainConfig, ctx: DistContext, train_pairs, eval_pairs, progress: bool):
        self.config, self.ctx, self.progress = config, ctx, progress
        self.rm = build_reward_model(config, ctx.device)
        encoder = self.rm.encoder(config.max_length)
        with phase(f"tokenizing {len(train_pairs)} pairs", progress and ctx.is_main):
            self.train = encoder.encode_pairs(train_pairs)
        self.eval_pairs = list(eval_pairs or [])
        self.steps = total_steps(config, len(self.train))
        self.layout = parallel_layout(ctx, config.sp_size)
        if config.pairs_per_step < self.layout.dp_size:
            raise EngineError(f"pairs_per_step ({config.pairs_per_step}) must be at least the number of "
                              f"data-parallel groups ({self.layout.dp_size} = processes / sp_size)")
        self.sp_scorer = None
        if self.layout.sp_size > 1:
            self.sp_scorer = SequenceParallelScorer(self.rm.decoder, self.rm.value_head, self.layout.sp_group)
        self.module = self._wrap(self.sp_scorer or self.rm.batch_scorer)
        # a pair's prompt is computed once for both replies where the kernel reads that layout
        self.share_prefix = (not config.pack_whole_pairs and self.layout.sp_size == 1
                             and self.rm.reads_shared_prefixes)
        self.params = self.rm.trainable_parameters()  # after wrapping: FSDP replaces them with shards
        # Matrices decay, vectors do not; the value head starts from random weights and may learn
        # faster than the backbone (head_lr_multiplier).
        head = {id(p) for p in self.rm.value_head.parameters()}
        groups = [{"params": [p for p in self.params if (id(p) in head) == is_head and (p.ndim >= 2) == matrix],
                   "weight_decay": config.weight_decay if matrix else 0.0,
                   "lr": config.lr * (config.head_lr_multiplier if is_head else 1.0)}
                  for is_head in (False, True) for matrix in (True, False)]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config, self.steps))
        self.losses = config.loss_settings()
        self.precision = resolve_precision(config.precision, ctx.device)

    @property
    def sharded(self) -> bool:
        return self.config.fsdp and self.ctx.is_distributed

    def _wrap(self, module):
        if not self.ctx.is_distributed:
            return module
        if self.config.fsdp:
            if self.config.qlora:
                raise EngineError("FSDP cannot shard 4-bit (QLoRA) weights: drop --fsdp (DDP) or use --lora")
            return fsdp.shard(module, getattr(self.rm.decoder, "layers", None), self.ctx.device.type)
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def _gradient_sync(self, sync: bool):
        """Reduce gradients over ranks only on a step's last micro-batch (accumulate locally before)."""
        if self.sharded:
            self.module.set_requires_gradient_sync(sync)
            return contextlib.nullcontext()
        no_sync = getattr(self.module, "no_sync", None)
        return contextlib.nullcontext() if sync or no_sync is None else no_sync()

    def _micro_batches(self, indices: list[int]) -> tuple[list, list[list[int]], list[float]]:
        """This data-parallel group's pairs, their micro-batches, and each micro-batch's loss weight."""
        dp_rank, dp_size = self.layout.dp_rank, self.layout.dp_size
        local = [self.train[i] for i in indices[dp_rank::dp_size]]
        groups = group_pairs(local, self.config.max_packed_length, self.share_prefix)
        weights = [1.0] * len(groups)
        if self.sharded and dp_size > 1:
            # FSDP gathers parameters in every forward and backward: every rank runs as many as the busiest
            most = max(len(group_pairs([self.train[i] for i in indices[d::dp_size]], self.config.max_packed_length,
                                       self.share_prefix))
                       for d in range(dp_size))
            extra = most - len(groups)
            groups, weights = groups + groups[:1] * extra, weights + [0.0] * extra
        return local, groups, weights

    def _autocast(self):
        return autocast(self.precision, self.ctx.device)

    def run_step(self, step: int) -> dict:
        """One optimizer step over the step's pairs (packed micro-batches, accumulated); its metrics."""
        config, ctx = self.config, self.ctx
        indices = step_pair_indices(len(self.train), config.pairs_per_step, config.seed, step)
        local, groups, weights = self._micro_batches(indices)
        # DDP (and FSDP) average gradients over all ranks; scaling by the world size makes the result
        # the sum over all the step's pairs divided by their count, however the pairs were split
        # (over micro-batches, data-parallel groups, or the ranks of an SP group: module docstring).
        scale = ctx.world_size / len(indices)
        # the ranks of an SP group compute the same loss: only the first one counts it in the metrics
        counted = 1.0 if self.layout.sp_rank == 0 else 0.0
        sums = [0.0] * 8  # total, ranking, penalty, correct, chosen score, rejected score, tokens, computed
        for i, (group, weight) in enumerate(zip(groups, weights)):
            batch = pack_pairs([local[j] for j in group], pad_to_multiple_of=self.layout.sp_size,
                               pad_token_id=self.rm.tokenizer.pad_token_id, share_prefix=self.share_prefix)
            batch = batch.to(ctx.device)
            with self._gradient_sync(i == len(groups) - 1), self._autocast():
                scores = self.module(batch)  # (2 * pairs,): chosen, rejected, ...
                loss = reward_loss(scores, self.losses)
            (loss.total * (scale * weight)).backward()
            scores = scores.detach().float()
            for k, v in enumerate((loss.total.item(), loss.ranking.item(), loss.penalty.item(),
                                   loss.correct.item(), scores[0::2].sum().item(), scores[1::2].sum().item(),
                                   batch.n_tokens, batch.input_ids.shape[1])):
                sums[k] += v * weight * counted
        total, ranking, penalty, correct, chosen, rejected, tokens, computed = all_reduce_sum(sums, ctx.device)
        stop_if_not_finite("loss", total / len(indices), step, config.lr)  # every rank sees the same sum
        grad_norm = None
        if config.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP: a DTensor
            stop_if_not_finite("gradient norm", grad_norm, step, config.lr)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        n = len(indices)
        return {"step": step + 1, "epoch": round((step + 1) / steps_per_epoch(len(self.train), config.pairs_per_step), 4),
                "loss": total / n, "ranking_loss": ranking / n, "penalty": penalty / n, "accuracy": correct / n,
                "chosen_score": chosen / n, "rejected_score": rejected / n, "lr": lr, "grad_norm": grad_norm,
                "tokens": int(tokens), "computed_tokens": int(computed), "pairs": n}

    def plain_model(self) -> RewardModel | None:
        """The model with its current weights, unsharded, on rank 0 (None elsewhere).

        Collective under FSDP: the full weights are gathered into a fresh copy built on rank 0's
        CPU; otherwise the live model itself.
        """
        if not self.sharded:
            return self.rm if self.ctx.is_main else None
        state = fsdp.full_model_state(self.module)
        if not self.ctx.is_main:
            return None
        with torch.random.fork_rng(devices=[]):  # building the copy must not move the training RNG
            copy = build_reward_model(self.config, torch.device("cpu"))
        copy.batch_scorer.load_state_dict(state)
        return copy

    def optimizer_state(self) -> dict:
        """The optimizer state to checkpoint (rank 0's); FSDP gathers it in full (collective)."""
        if not self.sharded:
            return self.optimizer.state_dict() if self.ctx.is_main else {}
        return fsdp.full_optimizer_state(self.module, self.optimizer)

    def load_optimizer_state(self, state: dict) -> None:
        """Restore the optimizer from a checkpoint (full or FSDP-sharded state)."""
        if self.sharded:
            fsdp.load_full_optimizer_state(self.module, self.optimizer, state)
        else:
            self.optimizer.load_state_dict(state)

    def evaluate(self) -> dict | None:
        """Held-out metrics on rank 0 (None elsewhere); collective under FSDP."""
        return self.evaluate_model(self.plain_model()) if self.eval_pairs else None

    def evaluate_model(self, model: RewardModel | None) -> dict | None:
        """Held-out metrics of a `plain_model()` result, computed on rank 0 (None elsewhere)."""
        if not self.eval_pairs or not self.ctx.is_main:
            return None
        from engine.evaluation import evaluate_pairs
        from engine.scoring import Scorer

        live_sp = self.sp_scorer is not None and model is self.rm
        with self.sp_scorer.own_attention() if live_sp else contextlib.nullcontext():
            bar = progress_bar(2 * len(self.eval_pairs), f"evaluating on {len(self.eval_pairs)} held-out pairs",
                               unit=" conv", enabled=self.progress)
            result = evaluate_pairs(Scorer(model, max_length=self.config.max_length, precision=self.precision),
                                    self.eval_pairs, progress=lambda done, total: bar.update(done - bar.n))
            bar.close()
        self.rm.train()
        return {k: v for k, v in result.items() if k not in ("chosen_scores", "rejected_scores")}


def train_reward_model(config: TrainConfig, train_pairs: Sequence[PreferencePair],
                       eval_pairs: Sequence[PreferencePair] | None = None, *, resume: bool = False,
                       progress: bool = True, on_step: Callable[[dict], None] | None = None,
                       ctx: DistContext | None = None, allow_pickle: bool = False) -> TrainResult:
    """Train, checkpointing as it goes; with `resume`, continue from the latest checkpoint in out_dir.

    `allow_pickle` lets resume read a checkpoint file that needs full unpickling (trusted ones only).
    """
    ctx = ctx or compute_init(config.device)
    out = RunDirectory(config.out_dir)
    if ctx.is_main:
        out.check_fresh(resume)
        out.path.mkdir(parents=True, exist_ok=True)
        resolve_model_path(config.base)  # converts a GGUF once, before the other ranks look for it
    barrier()
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    trainer = _Trainer(config, ctx, train_pairs, eval_pairs, progress)
    resumed_from = _resume(trainer, out, allow_pickle) if resume else None
    if resumed_from is None and config.head_init == "probe":
        _probe_head(trainer, out)
    start = resumed_from or 0
    if ctx.is_main:
        out.start_metrics(start)
        out.write_config(config)
        out.write_precision(config.precision, trainer.precision, describe_cpu())
    last, tokens_done, seconds = _train_loop(trainer, out, start, progress, on_step)
    return _finish(trainer, out, last, tokens_done, seconds, resumed_from)


def _resume(trainer: _Trainer, out: RunDirectory, allow_pickle: bool) -> int | None:
    """Load the latest checkpoint in `out` (weights, optimizer, scheduler, RNG); its step, or None."""
    ctx = trainer.ctx
    checkpoint = latest_checkpoint(out.path)
    if checkpoint is None:
        return None
    saved = load_checkpoint(checkpoint, rank=ctx.rank, world_size=ctx.world_size, allow_pickle=allow_pickle)
    saved_sharded = bool(saved["state"]["config"].get("fsdp")) and saved["state"]["world_size"] > 1
    if saved_sharded != trainer.sharded:  # the optimizer state is stored differently
        raise EngineError(f"{checkpoint} was saved {'with' if not trainer.sharded else 'without'} FSDP; "
                          "resume it with the same --fsdp setting and number of processes")
    load_trainable_state(trainer.rm, saved["trainable"])
    trainer.load_optimizer_state(saved["optimizer"])
    trainer.scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])
    return saved["state"]["step"]


def _probe_head(trainer: _Trainer, out: RunDirectory) -> None:
    """LP-FT: fit the value head on the frozen backbone first; what it found goes to head_probe.json."""
    from engine.head_probe import probe_cache, probe_value_head

    ctx = trainer.ctx
    probe = probe_value_head(trainer.rm, trainer.train, trainer.config.max_packed_length, trainer.precision,
                             ctx.rank, ctx.world_size, trainer.progress,
                             cache=probe_cache(trainer.config, ctx.world_size), losses=trainer.losses)
    if ctx.is_main:
        out.write_head_probe(probe)


def _train_loop(trainer: _Trainer, out: RunDirectory, start: int, progress: bool,
                on_step: Callable[[dict], None] | None) -> tuple[dict | None, int, float]:
    """Steps `start`.. to the end, logging metrics and checkpointing; (last metrics, tokens, seconds)."""
    config, ctx = trainer.config, trainer.ctx
    bar = None
    if progress and ctx.is_main:
        bar = progress_bar(trainer.steps, "training reward model", unit=" steps", initial=start)
    trainer.rm.train()
    started = time.perf_counter()
    tokens_done, last = 0, None
    for step in range(start, trainer.steps):
        if bar is not None:
            per_epoch = steps_per_epoch(len(trainer.train), config.pairs_per_step)
            bar.set_description(epoch_label(step, trainer.steps, per_epoch), refresh=False)
        t0 = time.perf_counter()
        metrics = trainer.run_step(step)
        metrics["tokens_per_s"] = round(metrics["tokens"] / (time.perf_counter() - t0), 1)
        metrics["elapsed_s"] = round(time.perf_counter() - started, 2)
        tokens_done += metrics["tokens"]
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < trainer.steps:
            evaluation = trainer.evaluate()
            if evaluation:
                metrics["eval_accuracy"] = evaluation["accuracy"]
        if ctx.is_main:
            out.append_metrics(metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.2f}",
                                tok_s=f"{metrics['tokens_per_s']:.0f}")
        if on_step is not None:
            on_step(metrics)
        last = metrics
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == trainer.steps:
            save_checkpoint(out.path, step + 1, rank=ctx.rank, world_size=ctx.world_size,
                            trainable=trainer_state(trainer), optimizer=trainer.optimizer_state(),
                            scheduler=trainer.scheduler.state_dict(), extra={"config": config.as_dict()},
                            keep=config.keep_checkpoints)
    if bar is not None:
        bar.close()
    return last, tokens_done, time.perf_counter() - started


def _finish(trainer: _Trainer, out: RunDirectory, last: dict | None, tokens_done: int, seconds: float,
            resumed_from: int | None) -> TrainResult:
    """Evaluate and save the final model, and mark the run complete."""
    ctx = trainer.ctx
    final = trainer.plain_model()  # collective under FSDP
    evaluation = trainer.evaluate_model(final)
    if ctx.is_main:
        with phase(f"saving the model to {out.path}", trainer.progress):
            _save_model(final, out)
        if evaluation is not None:
            out.write_eval(evaluation)
    result = TrainResult(str(out.path), trainer.steps, last and last["loss"], last and last["accuracy"], evaluation,
                         round(seconds, 2), round(tokens_done / seconds, 1) if seconds > 0 else 0.0, resumed_from,
                         trainer.precision)
    if ctx.is_main:
        out.mark_complete(result.as_dict())
    barrier()
    return result


def trainer_state(trainer: _Trainer) -> dict:
    """Rank 0's trainable weights for a checkpoint; under FSDP every rank takes part in the gather."""
    state = trainable_state(trainer.rm) if trainer.ctx.is_main or trainer.sharded else {}
    return state if trainer.ctx.is_main else {}


def _save_model(rm: RewardModel, out: RunDirectory) -> None:
    rm.save(out.path)
    if rm.lora is not None:
        rm.save_adapter(out.adapter)
