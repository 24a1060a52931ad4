"""Reward models the workbench did not train, loaded behind `engine.reward_pass.ScoringModel`.

`load_reward_model(path, spec)` returns, per format (see `engine.rm_formats`):

- workbench: `engine.reward_model.RewardModel`, unchanged.
- hf with a decoder and a `score` head (Llama, Qwen2, Mistral, SmolLM2, ...): the fast path. The
  decoder and head run on packed rows like the workbench's own models; the encoder cuts every
  conversation right after the token transformers pools at (the rightmost non-pad token), so
  that token is the segment's last and the packed scorer reads it there. Exact: causal attention
  makes its hidden state independent of the pad tokens after it. The chosen output row of a
  multi-objective head becomes a one-output head.
- openrlhf: the decoder (`AutoModel.from_config`, weights read with safetensors) plus the value
  head, scaled `(r - mean) / std` when the checkpoint normalises; same fast path.
- internlm2 and hf classifiers of other shapes (encoders, heads not named `score`): the model's
  own forward on right-padded batches, reading its logits: exact by construction, not packed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from engine.attention import PACKED_SDPA, select_attention_implementation
from engine.conversation import ConversationEncoder, _prompt_response
from engine.errors import EngineError
from engine.model_files import check_model_files, load_state_dict, load_tokenizer
from engine.packing import PackedBatch, PaddedBatch, pad_sequences
from engine.reward_model import BatchScorer, RewardModel
from engine.rm_formats import RewardFormat, weight_files


class PooledEncoder(ConversationEncoder):
    """hf: the templated conversation, cut after the token the stock pooling reads; nothing appended."""

    def __init__(self, tokenizer, pad_token_id: int | None, max_length: int):
        super().__init__(tokenizer, reward_token_id=-1, max_length=max_length)
        self.reward_token_id = None  # none is appended
        self.pad_token_id = pad_token_id

    def encode_many_reporting(self, items) -> tuple[list[list[int]], list[bool]]:
        texts = [self.render(*_prompt_response(item)) for item in items]
        if not texts:
            return [], []
        rows = [self.pooled(row) for row in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return [row[-self.max_length:] for row in rows], [len(row) > self.max_length for row in rows]

    def pooled(self, row: list[int]) -> list[int]:
        """The row up to and including transformers' pooled token (index 0 when every token is pad)."""
        if self.pad_token_id is None:
            return row
        last = next((i for i in range(len(row) - 1, -1, -1) if row[i] != self.pad_token_id), 0)
        return row[: last + 1]


class EosEncoder(ConversationEncoder):
    """openrlhf: as OpenRLHF's reward dataset: template, strip trailing newlines, end in EOS."""

    def __init__(self, tokenizer, max_length: int):
        if tokenizer.eos_token is None:
            raise EngineError("an OpenRLHF reward model needs a tokenizer with an EOS token")
        super().__init__(tokenizer, reward_token_id=tokenizer.eos_token_id, max_length=max_length)

    def encode_many_reporting(self, items) -> tuple[list[list[int]], list[bool]]:
        eos = self.tokenizer.eos_token
        texts = []
        for item in items:
            text = self.render(*_prompt_response(item)).rstrip("\n")
            texts.append(text if text.endswith(eos) else text + " " + eos)
        if not texts:
            return [], []
        rows = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return ([row[-self.max_length:-1] + [self.reward_token_id] if len(row) > self.max_length else row
                 for row in rows], [len(row) > self.max_length for row in rows])


class NormalisedHead(torch.nn.Module):
    """A linear value head followed by OpenRLHF's reward normalisation (r - mean) / std."""

    def __init__(self, linear: torch.nn.Linear, mean: float, std: float):
        super().__init__()
        self.linear, self.mean, self.std = linear, mean, std

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return (self.linear(hidden) - self.mean) / self.std


class PackedRewardModel:
    """A decoder + value head scored on packed rows at each segment's last token (hf, openrlhf)."""

    def __init__(self, decoder, value_head, tokenizer, encoder_factory, owner=None):
        self.decoder, self.value_head, self.tokenizer = decoder, value_head, tokenizer
        self._encoder_factory = encoder_factory
        self._owner = owner or decoder  # the module whose train/eval mode counts
        self.batch_scorer = BatchScorer(decoder, value_head)

    def encoder(self, max_length: int) -> ConversationEncoder:
        return self._encoder_factory(max_length)

    @property
    def device(self) -> torch.device:
        return next(self.value_head.parameters()).device

    @property
    def reads_shared_prefixes(self) -> bool:
        return self.decoder.config._attn_implementation == PACKED_SDPA

    @property
    def training(self) -> bool:
        return self._owner.training

    def train(self, mode: bool = True):
        self._owner.train(mode)
        self.value_head.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def forward_packed(self, batch: PackedBatch) -> torch.Tensor:
        return self.batch_scorer(batch)

    def forward_padded(self, batch: PaddedBatch) -> torch.Tensor:
        return self.batch_scorer(batch)

    def reward_hidden(self, batch: PackedBatch | PaddedBatch) -> torch.Tensor:
        return self.batch_scorer.reward_hidden(batch)


class WholeModelRewardModel:
    """The model's own forward on right-padded rows (remote code, non-decoder classifiers)."""

    def __init__(self, model, tokenizer, encoder_factory, label_index: int | None, pad_token_id: int | None):
        self.model = model
        self.tokenizer = tokenizer
        self._encoder_factory = encoder_factory
        self.label_index = label_index or 0
        self.pad_token_id = pad_token_id

    def encoder(self, max_length: int) -> ConversationEncoder:
        return self._encoder_factory(max_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    reads_shared_prefixes = False  # its own forward sees whole conversations

    @property
    def training(self) -> bool:
        return self.model.training

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def reward_hidden(self, batch: PackedBatch | PaddedBatch) -> torch.Tensor:
        raise EngineError("this reward model runs its own forward: its reward-token states are not exposed "
                          "(a head probe or frozen features need a decoder with a value head)")

    def forward_packed(self, batch: PackedBatch) -> torch.Tensor:
        """Unpack the row into its conversations and run them padded."""
        if batch.segment_prefix is not None:
            raise EngineError("this reward model runs its own forward; it cannot share prompt prefixes")
        ids, bounds = batch.input_ids[0].tolist(), batch.cu_seqlens.tolist()
        ends = set(batch.reward_positions.tolist())
        sequences = [ids[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b - 1 in ends]
        return self.score_sequences(sequences)

    def forward_padded(self, batch: PaddedBatch) -> torch.Tensor:
        rows = [row[: int(n)].tolist() for row, n in zip(batch.input_ids, batch.attention_mask.sum(1))]
        return self.score_sequences(rows)

    def score_sequences(self, sequences: Sequence[list[int]]) -> torch.Tensor:
        if self.pad_token_id is None:  # transformers refuses batches without a pad id: one at a time
            return torch.cat([self._forward(pad_sequences([s], 0)) for s in sequences])
        return self._forward(pad_sequences(sequences, self.pad_token_id))

    def _forward(self, batch: PaddedBatch) -> torch.Tensor:
        batch = batch.to(self.device)
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        logits = logits.reshape(logits.shape[0], -1)  # (N, labels)
        return logits[:, self.label_index]


def load_reward_model(path: str | Path, spec: RewardFormat, *, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32, trust_remote_code: bool = False):
    """The reward model at `path`, read as `spec` says (see `engine.rm_formats.inspect_reward_model`)."""
    path = Path(path)
    check_model_files(path)
    if spec.format == "workbench":
        return RewardModel.load(path, dtype=dtype, device=device)
    if spec.format == "hf":
        return _load_hf(path, spec, device, dtype, bool(trust_remote_code))
    if spec.format == "openrlhf":
        return _load_openrlhf(path, spec, device, dtype, bool(trust_remote_code))
    if spec.format == "internlm2":
        if not trust_remote_code:
            raise EngineError(f"{path} is an InternLM2 reward model, which runs the directory's own Python code: "
                              "pass --trust-remote-code to allow it")
        return _load_internlm2(path, spec, device, dtype)
    raise EngineError(f"unknown reward-model format {spec.format!r}")


def _tokenizer(path: Path, trust_remote_code: bool = False):
    return load_tokenizer(path, trust_remote_code)


def _load_hf(path: Path, spec: RewardFormat, device, dtype, trust_remote_code: bool):
    from transformers import AutoModelForSequenceClassification

    tokenizer = _tokenizer(path, trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype, device_map={"": str(device)},
                                                               trust_remote_code=trust_remote_code)
    pad = model.config.get_text_config().pad_token_id  # the id transformers' pooling skips
    head = getattr(model, "score", None)
    decoder = getattr(model, model.base_model_prefix, None)
    if not isinstance(head, torch.nn.Linear) or decoder is None or model.config.is_encoder_decoder:
        return WholeModelRewardModel(model.eval(), tokenizer, lambda n: PooledEncoder(tokenizer, pad, n),
                                     spec.label_index, pad)
    row = spec.label_index or 0
    value_head = torch.nn.Linear(head.in_features, 1, bias=head.bias is not None, device=head.weight.device,
                                 dtype=head.weight.dtype)
    with torch.no_grad():
        value_head.weight.copy_(head.weight[row : row + 1])
        if head.bias is not None:
            value_head.bias.copy_(head.bias[row : row + 1])
    model.set_attn_implementation(select_attention_implementation(device))
    return PackedRewardModel(decoder, value_head, tokenizer, lambda n: PooledEncoder(tokenizer, pad, n), owner=model)


def _load_openrlhf(path: Path, spec: RewardFormat, device, dtype, trust_remote_code: bool):
    from safetensors import safe_open
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    tokenizer = _tokenizer(path, trust_remote_code)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the value head is "unexpected" for the bare decoder: read below
    try:  # transformers strips the decoder's base_model_prefix from the checkpoint's names itself
        decoder, info = AutoModel.from_pretrained(path, dtype=dtype, device_map={"": str(device)},
                                                  output_loading_info=True, trust_remote_code=trust_remote_code)
    finally:
        hf_logging.set_verbosity(verbosity)
    if info["missing_keys"]:
        raise EngineError(f"{path} lacks decoder weights {', '.join(sorted(info['missing_keys'])[:3])}")
    name = f"{spec.value_head}.weight"
    weight = None
    for file in weight_files(path):
        if file.suffix == ".safetensors":
            with safe_open(file, "pt") as f:
                weight = f.get_tensor(name) if name in f.keys() else weight
        else:
            weight = load_state_dict(file).get(name, weight)
    if weight is None:
        raise EngineError(f"{path} has no value head {name}")
    linear = torch.nn.Linear(weight.shape[1], 1, bias=False, device=device, dtype=dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
    decoder.set_attn_implementation(select_attention_implementation(device))
    head = NormalisedHead(linear, *spec.normalize) if spec.normalize else linear
    return PackedRewardModel(decoder.eval(), head, tokenizer, lambda n: EosEncoder(tokenizer, n))


def _load_internlm2(path: Path, spec: RewardFormat, device, dtype):
    from transformers import AutoModel

    tokenizer = _tokenizer(path, trust_remote_code=True)
    model = AutoModel.from_pretrained(path, trust_remote_code=True, dtype=dtype, device_map={"": str(device)})
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # pooled by the mask: any id pads
    return WholeModelRewardModel(model.eval(), tokenizer,
                                 lambda n: ConversationEncoder(tokenizer, spec.reward_token_id, n), None, pad)
