"""Full training state on disk, written atomically, so a killed run resumes exactly.

A checkpoint directory `checkpoints/step-000040/` holds the trainable weights, the optimizer and
scheduler states, one RNG file per rank, and `state.json` (step, world size, config). It is
written under a temporary name and renamed when complete: a SIGKILL mid-save leaves the previous
checkpoint as the latest.

Every `.pt` file holds only tensors and plain containers, and is read back with
`torch.load(weights_only=True)`: a checkpoint cannot run code on resume. A file that needs full
unpickling (a tampered one, or one from a format that pickled objects) is refused unless the caller
passes `allow_pickle` (`rm train --resume --allow-pickle`), for checkpoints the user trusts.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path

import torch

from engine.distributed import barrier
from engine.errors import EngineError
from engine.reward_model import RewardModel
from engine.run_dir import CHECKPOINTS

PREFIX = "step-"
FORMAT = 2  # 2: every .pt file loads with weights_only=True (recorded in state.json)


def checkpoint_root(out_dir: str | Path) -> Path:
    """The directory that holds a run's checkpoints."""
    return Path(out_dir) / CHECKPOINTS


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory of a run, or None."""
    root = checkpoint_root(out_dir)
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
                  and (p / "state.json").is_file())
    return done[-1] if done else None


def rng_state() -> dict:
    """This process's Python, torch (and CUDA) random states, for a checkpoint."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the random states `rng_state` saved."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: str | Path, step: int, *, rank: int, world_size: int, trainable: dict,
                    optimizer: dict, scheduler: dict, extra: dict, keep: int) -> Path:
    """Collective: every rank calls it; rank 0 writes the shared state, each rank its RNG.

    `trainable`, `optimizer` and `scheduler` are rank 0's state dicts (in full: under FSDP the
    caller gathers them first); other ranks may pass empty ones.
    """
    root = checkpoint_root(out_dir)
    final = root / f"{PREFIX}{step:06d}"
    tmp = root / f".{final.name}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    if rank == 0:
        torch.save(trainable, tmp / "trainable.pt")
        torch.save(optimizer, tmp / "optimizer.pt")
        torch.save(scheduler, tmp / "scheduler.pt")
    barrier()
    if rank == 0:
        (tmp / "state.json").write_text(json.dumps({"step": step, "world_size": world_size, "format": FORMAT,
                                                    **extra}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(p for p in root.iterdir() if p.name.startswith(PREFIX))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(path: Path, *, rank: int, world_size: int, allow_pickle: bool = False) -> dict:
    """A checkpoint's trainable weights, optimizer, scheduler, this rank's RNG and its state.json;
    never unpickles objects unless `allow_pickle`."""
    state = json.loads((path / "state.json").read_text())
    if state["world_size"] != world_size:
        raise EngineError(f"{path} was saved by {state['world_size']} rank(s); resume it with the same number "
                          f"of processes (got {world_size})")
    return {
        "state": state,
        "trainable": _load(path / "trainable.pt", allow_pickle),
        "optimizer": _load(path / "optimizer.pt", allow_pickle),
        "scheduler": _load(path / "scheduler.pt", allow_pickle),
        "rng": _load(path / f"rng-rank{rank}.pt", allow_pickle),
    }


def trainable_state(rm: RewardModel) -> dict[str, torch.Tensor]:
    """The trainable tensors in full, on CPU. FSDP shards are gathered: then every rank must call it."""
    from torch.distributed.tensor import DTensor

    state = {}
    for name, p in rm.model.named_parameters():
        if p.requires_grad:
            value = p.detach()
            state[name] = (value.full_tensor() if isinstance(value, DTensor) else value).cpu().clone()
    return state


def load_trainable_state(rm: RewardModel, state: dict[str, torch.Tensor]) -> None:
    """Copy a checkpoint's trainable tensors into the model (under FSDP, each rank keeps its shard)."""
    params = dict(rm.model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise EngineError(f"the checkpoint lacks {len(missing)} trainable tensors (e.g. {missing[0]}): "
                          "it was written with another configuration")
    from torch.distributed.tensor import DTensor, distribute_tensor

    with torch.no_grad():
        for name, value in state.items():
            param = params[name]
            if isinstance(param, DTensor):  # FSDP: every rank read the full tensor; keep this rank's shard
                value = distribute_tensor(value.to(param.device), param.device_mesh, param.placements,
                                          src_data_rank=None)
            param.copy_(value)
def _load(file: Path, allow_pickle: bool):
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not allow_pickle:
            raise EngineError(f"{file} holds pickled objects, and unpickling can run arbitrary code: if you "
                              "trust this checkpoint (e.g. an older workbench wrote it), resume with "
                              "--allow-pickle") from None
    return torch.load(file, map_location="cpu", weights_only=False)
