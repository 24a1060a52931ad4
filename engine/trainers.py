"""Train a reward model with the trainer its config needs: the one entry point callers use.

    result = train(TrainConfig(base="smollm2", out_dir="runs/rm"), train_pairs, eval_pairs)

A frozen backbone (`--head-only`, or `--freeze-layers` covering every layer in one process) trains
from cached features in seconds (`engine.head_training`, whose `--resume` simply trains again);
everything else runs the full trainer (`engine.training`: LoRA, QLoRA, full fine-tuning, torchrun).
Both write the same run directory (`engine.run_dir.RunDirectory`) and return a `TrainResult`.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.data import PreferencePair
from engine.distributed import DistContext, compute_init
from engine.train_config import TrainConfig


def train(config: TrainConfig, train_pairs: Sequence[PreferencePair],
          eval_pairs: Sequence[PreferencePair] | None = None, *, resume: bool = False, progress: bool = True,
          ctx: DistContext | None = None, allow_pickle: bool = False):
    """Train into `config.out_dir` with the head-only or the full trainer; the `TrainResult`."""
    from engine import head_training, training

    ctx = ctx or compute_init(config.device)
    if head_training.frozen_backbone(config, ctx.world_size):  # nothing to unpickle: --resume trains it again
        return head_training.train_head_only(config, train_pairs, eval_pairs, resume=resume, progress=progress)
    return training.train_reward_model(config, train_pairs, eval_pairs, resume=resume, progress=progress, ctx=ctx,
                                       allow_pickle=allow_pickle)
