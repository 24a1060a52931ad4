"""Turn any training artefact into a standard HF reward-model directory.

Accepted sources: a finished training output (already a full directory: copied as is), a LoRA
adapter directory (merged into its backbone), or a checkpoint `OUT/checkpoints/step-N` (the model
is rebuilt from OUT/train_config.json and the checkpoint's trainable weights, then saved).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine import run_dir
from engine.errors import EngineError
from engine.reward_model import RewardModel



def export_reward_model(source: str | Path, out: str | Path) -> Path:
    """Write a standard HF sequence-classification directory (LoRA merged) from a training output,
    checkpoint or adapter; returns its path."""
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise EngineError("--out must differ from the source directory")
    if (source / "state.json").is_file() and (source / "trainable.pt").is_file():
        return _from_checkpoint(source, out)
    if (source / "adapter_config.json").is_file():
        return RewardModel.load(source).save(out)
    if (source / "config.json").is_file():
        config = json.loads((source / "config.json").read_text())
        if config.get("reward_token_id") is None:
            raise EngineError(f"{source} is not a reward model (no reward_token_id in config.json)")
        out.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            if item.name not in run_dir.RECORDS and item.is_file():  # the model, not the run's records
                shutil.copy2(item, out / item.name)
        return out
    raise EngineError(f"{source} is neither a reward model, a LoRA adapter nor a training checkpoint")


def _from_checkpoint(checkpoint: Path, out: Path) -> Path:
    import torch

    from engine.checkpoint import load_trainable_state
    from engine.train_config import TrainConfig
    from engine.training import build_reward_model

    state = json.loads((checkpoint / "state.json").read_text())
    config = TrainConfig(**state["config"])
    config.qlora = False  # merge onto a full-precision backbone
    rm = build_reward_model(config, torch.device("cpu"))
    load_trainable_state(rm, torch.load(checkpoint / "trainable.pt", map_location="cpu", weights_only=True))
    return rm.save(out)
