"""Runs under torchrun for the distributed tests: `worker.py SPEC.json` runs SPEC's jobs in order.

Several jobs share one launch because starting processes is most of the cost on a small machine.

    ["sp_grads", OUT, MODEL_DIR]     one packed batch through SequenceParallelScorer (SP group = the
                                     world): scores, loss and this rank's gradients -> OUT/rank{R}.pt
    ["workbench", ARGS, CRASH_AT]    the workbench CLI with ARGS; with CRASH_AT, training dies with an
                                     exception right after writing the checkpoint of that step
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import engine.training
from engine.distributed import compute_init
from engine.losses import reward_loss
from engine.packing import pack_pairs
from engine.sequence_parallel import SequenceParallelScorer, parallel_layout
from tests.distributed.common import sp_case
from cli import load_commands


class SimulatedCrash(Exception):
    pass


def sp_grads(out: str, model_dir: str) -> None:
    ctx = compute_init("cpu")
    rm, pairs = sp_case(model_dir)
    layout = parallel_layout(ctx, ctx.world_size)
    scorer = SequenceParallelScorer(rm.decoder, rm.value_head, layout.sp_group)
    batch = pack_pairs(pairs, pad_to_multiple_of=layout.sp_size, pad_token_id=rm.tokenizer.pad_token_id)
    scores = scorer(batch)
    loss = reward_loss(scores).total
    loss.backward()
    grads = {n: p.grad for n, p in rm.model.named_parameters() if p.grad is not None}
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.save({"scores": scores.detach(), "loss": loss.detach(), "grads": grads, "length": batch.input_ids.shape[1],
                "n_tokens": batch.n_tokens, "reward_positions": batch.reward_positions},
               Path(out) / f"rank{ctx.rank}.pt")


def workbench(args: list[str], crash_at: int | None) -> None:
    original = engine.training.save_checkpoint

    def save_then_crash(*a, **kw):
        path = original(*a, **kw)
        if a[1] == crash_at:
            raise SimulatedCrash(f"stopped after the checkpoint of step {crash_at}")
        return path

    engine.training.save_checkpoint = save_then_crash
    try:
        load_commands().main(args=args, prog_name="workbench", standalone_mode=False)
    except SimulatedCrash:
        pass
    finally:
        engine.training.save_checkpoint = original


if __name__ == "__main__":
    for kind, *params in json.loads(Path(sys.argv[1]).read_text()):
        started = time.perf_counter()
        {"sp_grads": sp_grads, "workbench": workbench}[kind](*params)
        print(f"job {kind} {params[0] if kind == 'sp_grads' else params[0][params[0].index('--out') + 1]}: "
              f"{time.perf_counter() - started:.1f} s", flush=True)
