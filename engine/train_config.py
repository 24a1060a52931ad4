"""Everything a reward-model training run is configured by; the CLI options are generated from it.

No torch here: the CLI builds its options from these dataclasses without loading the engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from engine.errors import EngineError
from engine.precision import PRECISIONS


@dataclass
class LossSettings:
    """Which ranking loss and score penalty to train with."""

    ranking: str = field(default="focal", metadata={"help": "ranking loss: 'focal' (InternLM2) or 'bradley_terry'"})
    focal_gamma: float = field(default=2.0, metadata={"help": "difficulty-decay exponent of the focal ranking loss"})
    penalty: str = field(default="log_barrier", metadata={"help": "score penalty: 'log_barrier', 'l2' or 'none'"})
    penalty_weight: float = field(default=0.01, metadata={"help": "lambda: weight of the penalty in the total loss"})
    barrier_bound: float = field(default=5.0, metadata={"help": "the log barrier keeps scores inside (-bound, bound)"})

    def __post_init__(self):
        if self.ranking not in ("focal", "bradley_terry"):
            raise EngineError(f"unknown ranking loss {self.ranking!r}: use 'focal' or 'bradley_terry'")
        if self.penalty not in ("log_barrier", "l2", "none"):
            raise EngineError(f"unknown penalty {self.penalty!r}: use 'log_barrier', 'l2' or 'none'")
        if self.barrier_bound <= 0:
            raise EngineError(f"barrier_bound must be positive, got {self.barrier_bound}")
        if self.focal_gamma < 0 or self.penalty_weight < 0:
            raise EngineError("focal_gamma and penalty_weight must be non-negative")


@dataclass
class TrainConfig:
    base: str = field(default="smollm2", metadata={"help": "backbone: HF directory, .gguf file, or smollm2"})
    out_dir: str = field(default="runs/rm", metadata={"help": "where the model, checkpoints and metrics go"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (all linear layers) + the value head"})
    qlora: bool = field(default=False, metadata={"help": "LoRA over a 4-bit NF4 backbone (bitsandbytes)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training pairs (fractions allowed)"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate (default 2e-5 full, 2e-4 LoRA)"})
    head_lr_multiplier: float = field(default=1.0, metadata={
        "help": "learning rate of the (freshly initialised) value head, as a multiple of lr"})
    min_lr_ratio: float = field(default=0.0, metadata={"help": "cosine decays to lr * this"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of steps with linear warm-up"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (matrices only)"})
    pairs_per_step: int = field(default=16, metadata={"help": "pairs per optimizer step, over all ranks"})
    max_packed_length: int = field(default=4096, metadata={
        "help": "token budget of one packed micro-batch; a step's pairs are split into as many micro-batches "
                "as this needs (gradient accumulation)"})
    pack_whole_pairs: bool = field(default=False, metadata={
        "help": "pack each pair's chosen and rejected conversations whole (the InternLM2 layout) instead of "
                "computing their shared prompt once for both (same scores and gradients, more compute)"})
    max_length: int = field(default=1024, metadata={"help": "tokens per conversation; longer ones keep their end"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 disables)"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation and data order"})
    precision: str = field(default="auto", metadata={
        "help": "auto, fp32 or bf16 (autocast); auto = bf16 on GPUs and CPUs with AVX512-BF16/AMX, else fp32"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations: less memory"})
    num_layers: int | None = field(default=None, metadata={
        "help": "keep only the lowest N decoder layers of the backbone (a shallower, faster reward model)"})
    freeze_layers: int = field(default=0, metadata={
        "help": "full fine-tuning: freeze the embeddings and the lowest N decoder layers (faster on CPU)"})
    head_init: str = field(default="random", metadata={
        "help": "random, or probe: fit the value head on the frozen backbone before fine-tuning (LP-FT)"})
    head_only: bool = field(default=False, metadata={
        "help": "frozen backbone: train only the final norm and value head, from backbone features computed "
                "once per conversation and cached on disk (seconds per retrain once cached)"})
    feature_cache: str | None = field(default=None, metadata={
        "help": "directory of the frozen-backbone feature cache (default $WORKBENCH_FEATURE_CACHE, else "
                "$WORKBENCH_HOME/features)"})
    feature_cache_gb: float = field(default=2.0, metadata={
        "help": "size bound of the feature cache; least recently used features are dropped beyond it"})
    checkpoint_every: int = field(default=50, metadata={"help": "save the full training state every N steps"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many recent checkpoints to keep"})
    eval_every: int = field(default=0, metadata={"help": "evaluate on held-out pairs every N steps (0: at the end)"})
    ranking_loss: str = field(default="focal", metadata={"help": "focal (InternLM2) or bradley_terry"})
    focal_gamma: float = field(default=2.0, metadata={"help": "focal loss difficulty-decay exponent"})
    penalty: str = field(default="log_barrier", metadata={"help": "log_barrier, l2 or none"})
    penalty_weight: float = field(default=0.01, metadata={"help": "lambda: weight of the score penalty"})
    barrier_bound: float = field(default=5.0, metadata={"help": "the log barrier keeps scores in (-bound, bound)"})
    reward_token: str = field(default="<|reward|>", metadata={"help": "special token appended to each conversation"})
    reward_token_id: int | None = field(default=None, metadata={
        "help": "use this existing token id as the reward token (for backbones that reserve one)"})
    sp_size: int = field(default=1, metadata={"help": "sequence-parallel group size (ranks sharing one sequence)"})
    fsdp: bool = field(default=False, metadata={"help": "shard parameters with FSDP instead of DDP"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})

    def __post_init__(self):
        if self.qlora:
            self.lora = True
        if self.lr is None:
            self.lr = 2e-4 if self.lora else 2e-5
        checks = [
            (self.pairs_per_step >= 1, "pairs_per_step must be >= 1"),
            (self.epochs > 0 or self.max_steps, "epochs must be > 0 (or give max_steps)"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.head_lr_multiplier > 0, "head_lr_multiplier must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]"),
            (self.max_length >= 2, "max_length must be >= 2"),
            (self.max_packed_length >= 2 * self.max_length,
             "max_packed_length must hold a whole pair: at least 2 * max_length"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
            (self.sp_size >= 1, "sp_size must be >= 1"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.head_init in ("random", "probe"), "head_init must be random or probe"),
            (self.num_layers is None or self.num_layers >= 1, "num_layers must be >= 1"),
            (self.head_init == "random" or (self.sp_size == 1 and not self.fsdp),
             "head_init=probe needs every rank to hold whole conversations and weights: not with sp_size > 1 or fsdp"),
            (not (self.head_only and self.lora), "head_only trains on a frozen backbone: not with lora or qlora"),
            (self.feature_cache_gb > 0, "feature_cache_gb must be > 0"),
            (self.freeze_layers >= 0 and not (self.freeze_layers and self.lora),
             "freeze_layers applies to full fine-tuning only (LoRA already freezes the backbone)"),
        ]
        for ok, message in checks:
            if not ok:
                raise EngineError(f"invalid training config: {message}")
        self.loss_settings()  # validates the loss fields

    def loss_settings(self) -> LossSettings:
        """The loss options of this config as `engine.losses` takes them."""
        return LossSettings(ranking=self.ranking_loss, focal_gamma=self.focal_gamma, penalty=self.penalty,
                            penalty_weight=self.penalty_weight, barrier_bound=self.barrier_bound)

    def as_dict(self) -> dict:
        """Every field by name (what a run records)."""
        return asdict(self)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """The help text of each field, by name."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
