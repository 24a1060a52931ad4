"""Named training recipes: the measured alternatives, instead of long flag lists.

    config = TrainConfig(base="smollm2", out_dir="runs/rm", **recipe_settings("lora", {"epochs": 2}))

`head-only` is the default: on CPU it is the best reward model the quality benchmark measured
(docs/reward-models.md, "Quality on real human labels": the frozen backbone with a probed, then trained, value
head) and, once the backbone's features are cached, it retrains in seconds. Explicit settings
always override the recipe's. Without a recipe name, settings that pick a training mode
themselves (--lora, --qlora, --freeze-layers N, even 0, --head-only) mean "no recipe": the trainer's
plain defaults plus those flags, as before recipes existed. So does a run of several processes
(torchrun): head-only runs in one process, and a cluster run trains the backbone.
"""

from __future__ import annotations

from engine.errors import EngineError

RECIPES: dict[str, dict] = {
    # frozen backbone, value head probed (LP) then trained with the focal loss: 0.652 held-out on hh-rlhf
    "head-only": {"head_only": True, "head_init": "probe", "lr": 1e-4, "head_lr_multiplier": 1.0, "epochs": 1.0},
    # LoRA r 16 on every linear layer, no dropout (its masks cost 20% of a CPU step), head probed first: 0.647
    "lora": {"lora": True, "lora_r": 16, "lora_dropout": 0.0, "head_init": "probe", "lr": 2e-4, "epochs": 1.0},
    # full fine-tune after a head probe (LP-FT): 0.638
    "full": {"head_init": "probe", "lr": 5e-6, "epochs": 1.0},
    # LoRA over a 4-bit NF4 backbone (bitsandbytes), else as lora
    "qlora": {"qlora": True, "lora": True, "lora_r": 16, "lora_dropout": 0.0, "head_init": "probe", "lr": 2e-4,
              "epochs": 1.0},
}
DEFAULT_RECIPE = "head-only"
MODE_SETTINGS = ("lora", "qlora", "freeze_layers", "head_only")


def recipe_settings(name: str | None, explicit: dict, world_size: int = 1) -> dict:
    """TrainConfig settings: the recipe's (default: head-only unless a mode flag is given or
    `world_size` > 1), then `explicit`."""
    if name is None:
        if world_size > 1 or any(explicit.get(k) is not None and explicit.get(k) is not False for k in MODE_SETTINGS):
            return dict(explicit)
        name = DEFAULT_RECIPE
    if name not in RECIPES:
        raise EngineError(f"unknown recipe {name!r}: use one of {', '.join(RECIPES)}")
    return {**RECIPES[name], **explicit}
