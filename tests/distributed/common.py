"""Shared by the distributed tests and the worker they launch: data, the SP case, and a torchrun launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from engine.data import PreferencePair
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]

# 32 pairs -> 4 steps of 8; a 320-token budget gives 2-4 micro-batches per rank and step, and in
# some steps the two data-parallel halves get different numbers of them (FSDP must even them out).
TRAIN_ARGS = ["--pairs-per-step", "8", "--epochs", "1", "--lr", "1e-3", "--max-length", "96",
              "--max-packed-length", "320", "--eval-fraction", "0", "--warmup-ratio", "0",
              "--checkpoint-every", "2", "--keep-checkpoints", "4", "--precision", "fp32",
              "--freeze-layers", "0"]  # full fine-tuning in 1 process too (not the head-only default)


def make_pairs(n: int) -> list[PreferencePair]:
    """Pairs of varied lengths, so packed rows and micro-batch counts differ."""
    prompts = [f"Question {i}: what is {i} times three?" + " Please." * (i % 3) for i in range(n)]
    return [PreferencePair([{"role": "user", "content": prompts[i]}], f"It is {3 * i}.",
                           "Hmm, no idea. " * (1 + 3 * (i % 4))) for i in range(n)]


def write_pairs(path: Path, pairs: list[PreferencePair]) -> Path:
    from workbench.models.training import write_pairs as write

    write(pairs, path)
    return path


def sp_case(model_dir: str | Path):
    """The sequence-parallel check: a reward model with an O(1) value head and three encoded pairs."""
    from engine.reward_model import RewardModel

    torch.manual_seed(0)
    rm = RewardModel.from_base(model_dir)
    with torch.no_grad():
        for p in rm.value_head.parameters():
            p.normal_(0.0, 1.0)
    return rm, rm.encoder(96).encode_pairs(make_pairs(5)[2:])  # 487 tokens: padded for 2 and 4 ranks


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300) -> str:
    """Run `torchrun --nproc_per_node=N ARGS` on this machine (gloo on CPU); returns its output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    return result.stdout


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
