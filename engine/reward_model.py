"""The reward model: a stock `AutoModelForSequenceClassification` (num_labels=1) read by position.

Recipe (InternLM2 / XTuner): every conversation ends in a dedicated reward token (default
`<|reward|>`, added as a special token, its embedding initialised to the mean of the others);
the value head (`score`, Linear(hidden, 1, bias=False) in transformers' decoder classifiers) reads
that token's final hidden state. We gather the hidden state at the positions we appended the
token ourselves rather than trust the stock pooling, which takes the last non-pad token and,
with SmolLM2's pad == eos, would land one token early.

A saved full directory is a plain HF sequence-classification checkpoint whose config carries
`reward_token` / `reward_token_id`: `AutoModelForSequenceClassification.from_pretrained(dir)`
applied to the templated conversation plus the reward token text gives the same score (the
reward token is last and never the pad token, so the stock pooling picks it).

Training modes: full fine-tuning; LoRA (peft) on every linear layer of the backbone, with the
value head trained in full and saved with the adapter (`modules_to_save`) and the reward token's
embedding row trained and saved too (`trainable_token_indices`); QLoRA = LoRA over a 4-bit NF4
backbone (bitsandbytes; bf16 compute on CUDA, fp32 on CPU), which bitsandbytes >= 0.48 also runs on CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AddedToken, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from engine.attention import PACKED_SDPA, select_attention_implementation
from engine.conversation import ConversationEncoder
from engine.errors import EngineError
from engine.library_noise import quiet_library_noise
from engine.lora_dropout import use_fast_lora_dropout
from engine.packing import PackedBatch, PaddedBatch

quiet_library_noise()  # before peft imports bitsandbytes (see engine/library_noise.py)

DEFAULT_REWARD_TOKEN = "<|reward|>"
METADATA_FILE = "reward_model.json"
VALUE_HEAD = "score"


@dataclass
class LoraSettings:
    """LoRA adapters on the backbone; the value head is always trained in full."""

    r: int = field(default=16, metadata={"help": "LoRA rank"})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "names of backbone linear layers to adapt; default: every linear layer"})
    train_reward_token: bool = field(
        default=True, metadata={"help": "also train (and save) the reward token's embedding row"})

    def __post_init__(self):
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise EngineError("LoRA needs r >= 1, alpha > 0 and 0 <= dropout < 1")


class BatchScorer(torch.nn.Module):
    """Decoder + value head as one module: `forward(batch)` gives the scores (N,) of a packed or padded batch.

    It shares its parameters with the HF model. Distributed training wraps this module (e.g. in
    DDP), since the scores never go through the HF model's own forward.
    """

    def __init__(self, decoder: torch.nn.Module, value_head: torch.nn.Module):
        super().__init__()
        self.decoder = decoder
        self.value_head = value_head

    def forward(self, batch: PackedBatch | PaddedBatch) -> torch.Tensor:
        reward_hidden = self.reward_hidden(batch)
        head_dtype = next(self.value_head.parameters()).dtype  # QLoRA: bf16 hidden states, fp32 head
        return self.value_head(reward_hidden.to(head_dtype)).squeeze(-1)  # (N,)

    def reward_hidden(self, batch: PackedBatch | PaddedBatch) -> torch.Tensor:
        """The decoder's final hidden states at each conversation's reward token, (N, hidden)."""
        if isinstance(batch, PackedBatch):
            extra = {}
            if batch.segment_prefix is not None:
                if self.decoder.config._attn_implementation != PACKED_SDPA:
                    raise EngineError("shared-prefix batches need the packed_sdpa attention implementation; "
                                      f"this model uses {self.decoder.config._attn_implementation}")
                extra["segment_prefix"] = batch.segment_prefix
            hidden = self.decoder(
                input_ids=batch.input_ids,
                position_ids=batch.position_ids,
                use_cache=False,  # a KV cache would make segments see each other's keys
                cu_seq_lens_q=batch.cu_seqlens,
                cu_seq_lens_k=batch.cu_seqlens,
                max_length_q=batch.max_seqlen,
                max_length_k=batch.max_seqlen,
                **extra,
            ).last_hidden_state[0]  # (T, hidden)
            return hidden[batch.reward_positions]
        # right padding: real tokens never attend to the padding after them
        hidden = self.decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              use_cache=False).last_hidden_state  # (N, L, hidden)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.reward_positions]


class RewardModel:
    """A sequence-classification model, its tokenizer and the reward token, scored by position
    (an `engine.reward_pass.ScoringModel`)."""

    def __init__(self, model, tokenizer, *, base_path: str | None = None, lora: LoraSettings | None = None,
                 qlora: bool = False):
        self.model = model  # the HF model, or the peft wrapper around it
        self.tokenizer = tokenizer
        self.base_path = base_path
        self.lora = lora
        self.qlora = qlora
        self.seqcls = model.get_base_model() if lora else model  # the transformers *ForSequenceClassification
        self.decoder = getattr(self.seqcls, self.seqcls.base_model_prefix)
        self.value_head = getattr(self.seqcls, VALUE_HEAD)
        self.reward_token_id = int(self.seqcls.config.reward_token_id)
        self.reward_token = self.seqcls.config.reward_token
        self.batch_scorer = BatchScorer(self.decoder, self.value_head)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_base(cls, base_path: str | os.PathLike, *, reward_token: str = DEFAULT_REWARD_TOKEN,
                  reward_token_id: int | None = None, lora: LoraSettings | None = None, qlora: bool = False,
                  dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                  num_layers: int | None = None) -> RewardModel:
        """A fresh reward model on a backbone directory (value head randomly initialised).

        `reward_token_id` uses a token the backbone already has (one it reserves) instead of
        adding `reward_token`. `qlora` loads the backbone in 4-bit NF4 and needs `lora`.
        `num_layers` keeps only the lowest decoder layers (a shallower, faster model; the saved
        config says so, so it reloads as such).
        """
        if qlora and lora is None:
            raise EngineError("QLoRA trains LoRA adapters on a 4-bit backbone: pass lora=LoraSettings() too")
        base_path = str(Path(base_path).resolve())
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        model = _load_classifier(base_path, tokenizer, dtype=dtype, device=device, qlora=qlora, num_layers=num_layers)
        _install_reward_token(model, tokenizer, reward_token, reward_token_id)
        if lora:
            model = _add_lora(model, lora)
        return cls(model, tokenizer, base_path=base_path, lora=lora, qlora=qlora)

    @classmethod
    def load(cls, path: str | os.PathLike, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
             trainable: bool = False, qlora: bool | None = None) -> RewardModel:
        """Load a directory written by `save` (full model) or `save_adapter` (LoRA adapter).

        An adapter is re-applied to its base backbone (recorded in the directory); `qlora`
        overrides whether that backbone is quantised again (default: as it was trained).
        """
        path = Path(path)
        if (path / "adapter_config.json").is_file():
            return cls._load_adapter(path, dtype=dtype, device=device, trainable=trainable, qlora=qlora)
        if not (path / "config.json").is_file():
            raise EngineError(f"{path} is not a saved reward model: config.json is missing")
        if qlora:
            raise EngineError("a full reward model directory cannot be re-quantised; QLoRA applies to adapters")
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = _load_classifier(str(path), tokenizer, dtype=dtype, device=device, qlora=False, head_required=True)
        if getattr(model.config, "reward_token_id", None) is None:
            raise EngineError(f"{path} has no reward_token_id in its config: it was not saved as a reward model")
        model.requires_grad_(trainable)
        return cls(model, tokenizer, base_path=str(path))

    @classmethod
    def _load_adapter(cls, path: Path, *, dtype, device, trainable: bool, qlora: bool | None) -> RewardModel:
        from peft import PeftModel

        meta = json.loads((path / METADATA_FILE).read_text())
        base_path = meta["base_model"]
        if not Path(base_path, "config.json").is_file():
            raise EngineError(f"the adapter in {path} needs its base model at {base_path}, which is missing")
        qlora = meta["qlora"] if qlora is None else qlora
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = _load_classifier(base_path, tokenizer, dtype=dtype, device=device, qlora=qlora,
                                 num_layers=meta.get("num_layers"))
        _install_reward_token(model, tokenizer, meta["reward_token"], meta["reward_token_id"])
        model = PeftModel.from_pretrained(model, path, is_trainable=trainable)
        use_fast_lora_dropout(model)
        return cls(model, tokenizer, base_path=base_path, lora=LoraSettings(**meta["lora"]), qlora=qlora)

    # ---- use --------------------------------------------------------------------------------

    def encoder(self, max_length: int) -> ConversationEncoder:
        """A conversation encoder that ends every conversation in this model's reward token."""
        return ConversationEncoder(self.tokenizer, self.reward_token_id, max_length)

    @property
    def reads_shared_prefixes(self) -> bool:
        """Whether its attention kernel runs a shared prefix once for the segments that continue it
        (packed_sdpa; not flash-attn)."""
        return self.decoder.config._attn_implementation == PACKED_SDPA

    @property
    def device(self) -> torch.device:
        return next(self.value_head.parameters()).device

    @property
    def training(self) -> bool:
        return self.model.training

    def forward_packed(self, batch: PackedBatch) -> torch.Tensor:
        """Scores (N,) of the conversations in one packed row, in packing order."""
        return self.batch_scorer(batch)

    def reward_hidden(self, batch: PackedBatch | PaddedBatch) -> torch.Tensor:
        """Final hidden states (N, H) at each conversation's reward token (what the value head reads)."""
        return self.batch_scorer.reward_hidden(batch)

    def forward_padded(self, batch: PaddedBatch) -> torch.Tensor:
        """Scores (N,) of right-padded conversations, one per row (the baseline path)."""
        return self.batch_scorer(batch)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters training updates (adapters, value head, reward-token row, unfrozen layers)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> RewardModel:
        """Put the model in training mode; returns self."""
        self.model.train(mode)
        return self

    def eval(self) -> RewardModel:
        """Put the model in eval mode; returns self."""
        return self.train(False)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in the backward pass (less memory, about a third more compute)."""
        kwargs = {"use_reentrant": False}  # works with frozen inputs (LoRA) without enable_input_require_grads
        if hasattr(self.seqcls, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
            self.seqcls.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.seqcls.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    # ---- saving -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write a full HF sequence-classification directory (LoRA merged into the weights).

        A LoRA/QLoRA model is merged into a freshly loaded full-precision copy of its backbone,
        so the live model keeps training; for QLoRA the merged scores therefore differ from the
        quantised model's by the NF4 rounding of the backbone.
        """
        path = Path(path)
        if self.lora is None:
            _save_full(self.seqcls, self.tokenizer, path)
            return path
        with tempfile.TemporaryDirectory() as tmp:
            self.save_adapter(tmp)
            dtype = next(self.value_head.parameters()).dtype
            fresh = RewardModel.load(tmp, dtype=dtype, device=self.device, qlora=False)
            _save_full(fresh.model.merge_and_unload(), fresh.tokenizer, path)
        return path

    def save_adapter(self, path: str | os.PathLike) -> Path:
        """Write the LoRA adapter, the trained value head and reward-token row, and the tokenizer."""
        if self.lora is None:
            raise EngineError("this reward model has no LoRA adapter; use save() for a full model")
        path = Path(path)
        self.model.save_pretrained(path, save_embedding_layers=False)
        self.tokenizer.save_pretrained(path)
        _write_metadata(path, {"format": "adapter", "base_model": self.base_path, "qlora": self.qlora,
                               "reward_token": self.reward_token, "reward_token_id": self.reward_token_id,
                               "num_layers": self.seqcls.config.num_hidden_layers, "lora": asdict(self.lora)})
        return path


# ---- helpers -------------------------------------------------------------------------------------


def _load_classifier(path: str, tokenizer, *, dtype, device, qlora: bool, head_required: bool = False,
                     num_layers: int | None = None):
    """The sequence classifier on `path`, value head freshly initialised unless the checkpoint has one."""
    kwargs = {"quantization_config": _nf4_config(device)} if qlora else {}
    if num_layers is not None:
        from transformers import AutoConfig

        depth = AutoConfig.from_pretrained(path).num_hidden_layers
        if not 1 <= num_layers <= depth:
            raise EngineError(f"num_layers={num_layers}: {path} has {depth} decoder layers")
        kwargs["num_hidden_layers"] = num_layers  # the upper layers' weights are left unread
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a backbone lacks the value head by design; we check what is missing below
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype=dtype, device_map={"": str(device)}, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    if not hasattr(model, VALUE_HEAD):
        raise EngineError(f"{type(model).__name__} has no '{VALUE_HEAD}' value head; use a decoder-only backbone")
    missing = sorted(k for k in info["missing_keys"] if head_required or not k.startswith(VALUE_HEAD + "."))
    if missing:
        raise EngineError(f"{path} lacks weights {', '.join(missing[:5])}: it is not a complete "
                          + ("reward model" if head_required else "backbone") + " checkpoint")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise EngineError(f"the tokenizer of {path} has neither a pad nor an eos token; set tokenizer.pad_token")
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.set_attn_implementation(select_attention_implementation(device))
    if qlora:
        _keep_cpu_kernels_to_their_shapes(model)
    return model


def _keep_cpu_kernels_to_their_shapes(model) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit layer for its fast inference
    kernel the first time it runs without grad, and the repacking fails unless the output size is
    a multiple of 32 and the input size a multiple of the quantisation block (64): small layers,
    such as the tests' tiny models have, keep the generic kernel."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = getattr(module.weight, "quant_state", None)
            block = state.blocksize if state is not None else 64
            if module.out_features % 32 or module.in_features % block:
                module.support_avx512bf16_for_cpu = False


def _nf4_config(device):
    if importlib.util.find_spec("bitsandbytes") is None:
        raise EngineError("QLoRA needs bitsandbytes: pip install 'dpo-workbench[qlora]'")
    from transformers import BitsAndBytesConfig

    # bf16 compute on GPUs; fp32 on CPUs: bitsandbytes 0.50's CPU inference kernel for bf16 compute
    # refuses shapes that are not multiples of its block size (tests/engine/test_reward_model.py's
    # tiny model hits it), and many CPUs (AVX2-only) emulate bf16 far slower anyway.
    compute = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=[VALUE_HEAD],  # the value head stays a full-precision, fully trained layer
    )


def _install_reward_token(model, tokenizer, reward_token: str, reward_token_id: int | None) -> None:
    """Make sure the reward token exists (adding it if needed) and record it in the config."""
    if reward_token_id is None:
        reward_token_id = tokenizer.convert_tokens_to_ids(reward_token)
        if reward_token_id is None or reward_token_id == tokenizer.unk_token_id:
            tokenizer.add_tokens([AddedToken(reward_token, special=True, normalized=False)], special_tokens=True)
            reward_token_id = tokenizer.convert_tokens_to_ids(reward_token)
    else:
        if not 0 <= reward_token_id < len(tokenizer):
            raise EngineError(f"reward_token_id {reward_token_id} is outside the vocabulary (0..{len(tokenizer) - 1})")
        reward_token = tokenizer.convert_ids_to_tokens(reward_token_id)
    if reward_token_id == tokenizer.pad_token_id:
        raise EngineError(
            f"the reward token {reward_token!r} is the pad token; the stock classifier pooling skips pad tokens, "
            "so pick another reward_token_id")
    embeddings = model.get_input_embeddings()
    old_rows = embeddings.weight.shape[0]
    if len(tokenizer) > old_rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        weight = model.get_input_embeddings().weight
        with torch.no_grad():
            weight[old_rows:] = weight[:old_rows].float().mean(0).to(weight.dtype)
    model.config.reward_token = reward_token
    model.config.reward_token_id = int(reward_token_id)


def _add_lora(model, lora: LoraSettings):
    from peft import LoraConfig, get_peft_model

    decoder = getattr(model, model.base_model_prefix)
    targets = lora.target_modules or sorted(
        {name.rsplit(".", 1)[-1] for name, m in decoder.named_modules() if isinstance(m, torch.nn.Linear)})
    if not targets:
        raise EngineError("the backbone has no linear layers to put LoRA adapters on")
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
        modules_to_save=[VALUE_HEAD], task_type="SEQ_CLS",
        trainable_token_indices=[model.config.reward_token_id] if lora.train_reward_token else None,
    )
    model = get_peft_model(model, config)
    use_fast_lora_dropout(model)  # the same dropout, a cheaper mask on CPU (engine/lora_dropout.py)
    return model


def _save_full(seqcls, tokenizer, path: Path) -> None:
    seqcls.save_pretrained(path)
    tokenizer.save_pretrained(path)
    _write_metadata(path, {"format": "full", "reward_token": seqcls.config.reward_token,
                           "reward_token_id": seqcls.config.reward_token_id})


def _write_metadata(path: Path, meta: dict) -> None:
    (path / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
