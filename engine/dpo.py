"""DPO training of a policy with TRL's `DPOTrainer` (the library's trainer, not ours), resumable.

    config = DPOTrainConfig(policy="smollm2", out_dir="runs/dpo-1", beta=0.1)
    result = train_dpo(config, pairs)   # pairs: TRL conversational rows {prompt, chosen, rejected}
    AutoModelForCausalLM.from_pretrained(result.policy_dir)   # merged weights, plain transformers

LoRA adapters (peft) by default, merged into the weights at the end; `full=True` fine-tunes every
weight. `reference` names a model other than the starting policy as DPO's reference (a later
round's reference is the first policy); without it TRL uses the policy itself (with LoRA: the
policy with its adapters switched off). On CPU the trainer runs with `use_cpu` in fp32 unless the
CPU has native bf16 (engine/precision.py); on CUDA in bf16 where supported.

Kill-safety: the trainer saves a full checkpoint every `checkpoint_every` steps under
`out_dir/checkpoints`; a callback marks a checkpoint complete once the trainer has written all of
it, and a rerun resumes from the newest complete one (a checkpoint torn by SIGKILL is deleted).
The merged policy is written to a staging directory and renamed into `out_dir/policy`, so that
directory either holds a whole model or does not exist.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.errors import EngineError

PRECISIONS = ("auto", "fp32", "bf16")  # engine.precision's, restated: this module loads without torch (CLI help)

LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
COMPLETE_MARK = "checkpoint_complete"
POLICY_DIR = "policy"


@dataclass
class DPOTrainConfig:
    """Everything a DPO run is configured by; `workbench dpo train`'s options are generated from it."""

    policy: str = field(default="smollm2", metadata={"help": "starting policy: HF directory, .gguf file or smollm2"})
    reference: str | None = field(default=None, metadata={
        "help": "DPO reference model (default: the starting policy itself)"})
    out_dir: str = field(default="runs/dpo", metadata={"help": "where checkpoints and the merged policy go"})
    full: bool = field(default=False, metadata={"help": "fine-tune every weight instead of LoRA adapters"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    loss_type: str = field(default="sigmoid", metadata={
        "help": "TRL loss type(s), comma-separated to combine: sigmoid, ipo, robust, sigmoid_norm, hinge, ..."})
    loss_weights: str | None = field(default=None, metadata={
        "help": "comma-separated weights of the loss types (default: 1 each)"})
    beta: float = field(default=0.1, metadata={"help": "DPO beta: how far the policy may move from the reference"})
    label_smoothing: float = field(default=0.0, metadata={"help": "label noise for the robust / cDPO losses"})
    ld_alpha: float | None = field(default=None, metadata={
        "help": "LD-DPO alpha in [0, 1]: weight of the tokens past the shorter reply's length (None: plain DPO)"})
    precompute_ref_log_probs: bool = field(default=True, metadata={
        "help": "compute the reference log-probs once before training (the reference leaves memory)"})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate (default 5e-5 LoRA, 5e-7 full)"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the pairs"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "pairs per optimizer step"})
    micro_batch_size: int = field(default=4, metadata={"help": "pairs per forward pass (gradient accumulation)"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps with linear warm-up"})
    max_length: int = field(default=512, metadata={"help": "tokens per prompt + reply; longer ones are cut"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation and data order"})
    precision: str = field(default="auto", metadata={
        "help": "auto, fp32 or bf16; auto = bf16 on GPUs and CPUs with AVX512-BF16/AMX, else fp32"})
    checkpoint_every: int = field(default=10, metadata={"help": "save a resumable checkpoint every N steps"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})

    def __post_init__(self):
        if self.lr is None:
            self.lr = 5e-7 if self.full else 5e-5
        unknown = [t for t in self.loss_types if t not in LOSS_TYPES]
        checks = [
            (not unknown, f"unknown loss type(s) {', '.join(unknown)}; choose from {', '.join(LOSS_TYPES)}"),
            (self.loss_weights is None or len(self.weights) == len(self.loss_types),
             "loss_weights needs one weight per loss type"),
            (self.beta > 0, "beta must be > 0"),
            (self.ld_alpha is None or 0 <= self.ld_alpha <= 1, "ld_alpha must be in [0, 1]"),
            (self.lr > 0, "lr must be > 0"),
            (self.epochs > 0 or self.max_steps, "epochs must be > 0 (or give max_steps)"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (self.batch_size >= 1 and self.micro_batch_size >= 1, "batch sizes must be >= 1"),
            (self.batch_size % self.micro_batch_size == 0, "batch_size must be a multiple of micro_batch_size"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise EngineError(message)

    @property
    def loss_types(self) -> list[str]:
        return [t.strip() for t in self.loss_type.split(",") if t.strip()]

    @property
    def weights(self) -> list[float] | None:
        return None if self.loss_weights is None else [float(w) for w in self.loss_weights.split(",")]

    def as_dict(self) -> dict:
        return asdict(self)

    def hyper_parameters(self) -> dict:
        """What decides the trained weights besides the data and the models (recorded with the policy)."""
        skip = {"policy", "reference", "out_dir", "device", "checkpoint_every"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


@dataclass
class DPOTrainResult:
    policy_dir: str
    steps: int
    resumed_from_step: int
    pairs: int
    precision: str
    device: str
    final_loss: float | None
    reward_accuracy: float | None
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def check_causal_lm(path: str | os.PathLike) -> None:
    """Refuse a model directory that is not a causal LM (e.g. a reward model or an encoder)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = AutoConfig.from_pretrained(path)
    architectures = config.architectures or []
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (
            architectures and not any(a in causal for a in architectures)):
        raise EngineError(f"{path} is not a causal language model ({', '.join(architectures) or config.model_type}):"
                          " DPO needs a policy that generates text, e.g. smollm2")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("device cuda was asked for but CUDA is not available; use --device cpu")
    return device


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    """The checkpoints the trainer finished writing, oldest first; torn ones are deleted."""
    if not checkpoints.is_dir():
        return []
    found = []
    for path in checkpoints.glob("checkpoint-*"):
        if (path / COMPLETE_MARK).is_file():
            found.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)  # SIGKILL mid-save: never resume from half a checkpoint
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def train_dpo(config: DPOTrainConfig, pairs: list[dict], *, progress: bool = True) -> DPOTrainResult:
    """Train on `pairs` (TRL conversational rows) and write the merged policy to out_dir/policy."""
    import time

    from engine.backbone import resolve_model_path
    from engine.precision import resolve_precision

    if not pairs:
        raise EngineError("no pairs to train on")
    started = time.perf_counter()
    out = Path(config.out_dir)
    policy_dir = out / POLICY_DIR
    if (policy_dir / "config.json").is_file():
        raise EngineError(f"{policy_dir} already holds a trained policy")
    policy_path = resolve_model_path(config.policy)
    check_causal_lm(policy_path)
    reference_path = resolve_model_path(config.reference) if config.reference else None
    if reference_path is not None:
        check_causal_lm(reference_path)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    # The trainer writes its log lines ({'loss': ...}) to stdout: they go to stderr with the progress
    # bars, so that stdout holds only what the command prints (its --json report).
    with contextlib.redirect_stdout(sys.stderr):
        trainer = _make_trainer(config, pairs, policy_path, reference_path, device, precision, progress)
        done = complete_checkpoints(out / "checkpoints")
        resume = str(done[-1]) if done else None
        resumed_from = int(done[-1].name.rsplit("-", 1)[1]) if done else 0
        output = trainer.train(resume_from_checkpoint=resume)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    _write_merged(trainer, policy_dir, config)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the merged policy supersedes them
    last = logs[-1] if logs else {}
    return DPOTrainResult(str(policy_dir), trainer.state.global_step, resumed_from, len(pairs), precision, device,
                          last.get("loss", output.training_loss), last.get("rewards/accuracies"),
                          round(time.perf_counter() - started, 2))


def _make_trainer(config, pairs, policy_path, reference_path, device, precision, progress):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class MarkComplete(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            # on_save runs after the trainer wrote the whole checkpoint (weights, optimizer, RNG, state)
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.is_dir():
                (path / COMPLETE_MARK).write_text(str(state.global_step))

    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(reference_path, dtype=torch.float32) \
        if reference_path is not None else None
    args = _dpo_args(DPOConfig, config, device, precision, progress)
    peft_config = None
    if not config.full:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    dataset = Dataset.from_list([{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in pairs])
    return DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=peft_config, callbacks=[MarkComplete()])


def _dpo_args(DPOConfig, config: DPOTrainConfig, device: str, precision: str, progress: bool):
    return DPOConfig(
        output_dir=str(Path(config.out_dir) / "checkpoints"), use_cpu=device == "cpu",
        bf16=precision == "bf16", seed=config.seed, data_seed=config.seed,
        learning_rate=config.lr, num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=config.batch_size // config.micro_batch_size,
        warmup_steps=config.warmup_ratio, lr_scheduler_type="cosine",
        loss_type=config.loss_types, loss_weights=config.weights, beta=config.beta, ld_alpha=config.ld_alpha,
        label_smoothing=config.label_smoothing, precompute_ref_log_probs=config.precompute_ref_log_probs,
        max_length=config.max_length, save_strategy="steps", save_steps=config.checkpoint_every,
        save_total_limit=2, logging_steps=1, report_to=[], disable_tqdm=not progress,
        dataloader_num_workers=0,
    )


def _write_merged(trainer, policy_dir: Path, config: DPOTrainConfig) -> None:
    """Merge LoRA adapters into the weights and save a plain HF model, staged then renamed."""
    model = trainer.model
    if not config.full:
        model = model.merge_and_unload()
    staging = policy_dir.with_name(f".{policy_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    trainer.processing_class.save_pretrained(staging)
    os.replace(staging, policy_dir)
