"""Best-of-N sampling from a local causal LM, reproducible one sample at a time.

Every (prompt, sample_index) pair gets its own seed, hashed from the run seed, a prompt key
and the sample index, and its own `torch.Generator`. A sample's tokens therefore do not depend
on which other rows share its batch (up to float rounding of batched matmuls), so an interrupted
run resumes by generating only the missing pairs and still gets the samples a full run would.
`model.generate` draws all rows from one RNG stream, hence the hand-written decode loop:
left-padded prompts, one prefill per distinct prompt whose KV cache is copied to its N rows,
then one token per step for all live rows, dropping rows as they finish.

    policy = Policy.load("smollm2")
    for chunk in policy.generate(prompts, n=8, params=SamplingParams(max_new_tokens=64)):
        store(chunk)  # list[Sample], one batch at a time

`VLLMPolicy` offers the same `generate` on CUDA machines with vLLM installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from engine.backbone import model_fingerprint, resolve_model_path
from engine.data import Message, Sample, SamplingParams
from engine.errors import EngineError

# Top-p sampling looks for the nucleus among this many most likely tokens first: a full sort of a
# 49k vocabulary costs as much as the forward pass on CPU; rows whose nucleus is wider fall back to it.
NUCLEUS_CANDIDATES = 256

Progress = Callable[[int], None]  # called with the number of samples just finished, e.g. tqdm.update


def default_seed_key(messages: list[Message]) -> str:
    """Content hash of a conversation: the default key that seeds its samples."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def sample_seed(seed: int, key: str, sample_index: int) -> int:
    """The seed of one sample: a 63-bit hash of (run seed, prompt key, sample index), fits a BIGINT."""
    digest = hashlib.sha256(f"{seed}\x1f{key}\x1f{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class _Row:
    """One sample to generate."""

    prompt_index: int
    sample_index: int
    seed: int
    prompt_ids: list[int]


def pick_next_tokens(logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor) -> torch.Tensor:
    """Greedy (temperature 0) or temperature + nucleus sampling, one uniform draw per row.

    Sampling inverts each row's CDF at its own uniform, so a row's token depends only on its
    logits and its draw. logits (B, V), uniforms (B,) in [0, 1) -> token ids (B,).
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p >= 1.0:
        return _invert_cdf(probs, uniforms)
    k = min(NUCLEUS_CANDIDATES, probs.shape[-1])
    top_probs, top_ids = probs.topk(k, dim=-1)  # (B, k), descending
    wide = top_probs.sum(dim=-1) < top_p  # nucleus not inside the k candidates: sort the whole row
    tokens = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
    narrow = ~wide
    if narrow.any():
        tokens[narrow] = _nucleus_pick(top_probs[narrow], top_ids[narrow], top_p, uniforms[narrow])
    if wide.any():
        sorted_probs, sorted_ids = probs[wide].sort(dim=-1, descending=True)
        tokens[wide] = _nucleus_pick(sorted_probs, sorted_ids, top_p, uniforms[wide])
    return tokens


def _nucleus_pick(sorted_probs, sorted_ids, top_p, uniforms):
    # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
    keep = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p
    picked = _invert_cdf(sorted_probs * keep, uniforms)
    return sorted_ids.gather(-1, picked[:, None])[:, 0]


def _invert_cdf(probs, uniforms):
    cdf = probs.cumsum(dim=-1)  # (B, V)
    target = (uniforms.to(cdf) * cdf[:, -1])[:, None]
    return torch.searchsorted(cdf, target, right=True)[:, 0].clamp(max=probs.shape[-1] - 1)


def _check(params: SamplingParams, n: int, batch_size: int) -> None:
    if params.temperature < 0:
        raise EngineError(f"temperature must be >= 0 (0 means greedy), got {params.temperature}.")
    if not 0 < params.top_p <= 1:
        raise EngineError(f"top_p must be in (0, 1], got {params.top_p}; use 1.0 to disable nucleus sampling.")
    if params.max_new_tokens < 1:
        raise EngineError(f"max_new_tokens must be >= 1, got {params.max_new_tokens}.")
    if n < 1 or batch_size < 1:
        raise EngineError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}.")


def encode_prompt(tokenizer, messages: list[Message], index: int = 0) -> list[int]:
    """Token ids of a conversation with the chat template and the assistant turn opened."""
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as e:  # jinja raises its own errors for templates that refuse a conversation
        raise EngineError(f"prompt {index}: the model's chat template rejected it ({e}); fix its messages.") from e
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _plan_rows(tokenizer, prompts, n, params, prompt_keys=None, only=None, max_length=None) -> list[_Row]:
    """Validate a request and list the samples to make, each with its seed and prompt tokens."""
    if prompt_keys is not None and len(prompt_keys) != len(prompts):
        raise EngineError(f"got {len(prompt_keys)} prompt keys for {len(prompts)} prompts; give one key per prompt.")
    pairs = [(p, s) for p in range(len(prompts)) for s in range(n)] if only is None else list(dict.fromkeys(only))
    for p, s in pairs:
        if not (0 <= p < len(prompts) and 0 <= s < n):
            raise EngineError(f"sample ({p}, {s}) is out of range for {len(prompts)} prompts x n={n}.")
    ids, rows = {}, []
    for p, s in pairs:
        if p not in ids:
            ids[p] = encode_prompt(tokenizer, prompts[p], p)
            if max_length is not None and len(ids[p]) + params.max_new_tokens > max_length:
                raise EngineError(
                    f"prompt {p} has {len(ids[p])} tokens; with max_new_tokens={params.max_new_tokens} it exceeds "
                    f"the model's {max_length} positions: shorten the prompt or lower max_new_tokens."
                )
        key = prompt_keys[p] if prompt_keys is not None else default_seed_key(prompts[p])
        rows.append(_Row(p, s, sample_seed(params.seed, key, s), ids[p]))
    # Prompts of similar length share batches, so little compute goes to padding.
    rows.sort(key=lambda r: (len(r.prompt_ids), r.prompt_index, r.sample_index))
    return rows


class Policy:
    """A causal LM with its tokenizer, sampling with the hand-written decode loop above."""

    def __init__(self, model, tokenizer, path: Path | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.path = path
        eos = {tokenizer.eos_token_id, *_as_list(getattr(model.generation_config, "eos_token_id", None))}
        self.stop_ids = sorted(i for i in eos if i is not None)
        if not self.stop_ids:
            raise EngineError("the tokenizer defines no EOS token, so generation could never stop; set eos_token.")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        # transformers renamed `past_key_values` to `cache` during 5.x; pass whichever this model takes.
        self._cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @classmethod
    def load(cls, spec: str | os.PathLike, device: str = "cpu", dtype: torch.dtype = torch.float32) -> "Policy":
        """Load a policy from a model spec (`smollm2`, an HF directory or a .gguf file)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(spec)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError(f"device '{device}' was asked for but CUDA is not available; use device='cpu'.")
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        return cls(model, tokenizer, path)

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of the model directory (weights + tokenizer)."""
        if self.path is None:
            raise EngineError("this policy was built from an in-memory model and has no directory to fingerprint.")
        return model_fingerprint(self.path)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(
        self,
        prompts: list[list[Message]],
        n: int,
        params: SamplingParams,
        *,
        prompt_keys: list[str] | None = None,
        only: Iterable[tuple[int, int]] | None = None,
        batch_size: int = 64,
        progress: Progress | None = None,
    ) -> Iterator[list[Sample]]:
        """Sample `n` replies per prompt and yield them one batch (list of Samples) at a time.

        prompt_keys: stable ids of the prompts for seeding (default: a hash of their messages).
        only: the (prompt_index, sample_index) pairs to make, e.g. those a resumed run lacks;
        default all prompts x range(n). batch_size counts sample rows per forward pass (64 was
        fastest for SmolLM2 on a 2-core CPU: ~135 tok/s against ~117 at 32); the rows of one prompt
        share one prefill. Chunks come grouped by prompt length, not in input order.
        """
        _check(params, n, batch_size)
        max_length = getattr(self.model.config, "max_position_embeddings", None)
        rows = _plan_rows(self.tokenizer, prompts, n, params, prompt_keys, only, max_length)
        for start in range(0, len(rows), batch_size):
            samples = self._generate_batch(rows[start : start + batch_size], params)
            if progress is not None:
                progress(len(samples))
            yield samples

    @torch.inference_mode()
    def _generate_batch(self, rows: list[_Row], params: SamplingParams) -> list[Sample]:
        from transformers import DynamicCache

        started = time.perf_counter()
        device = self.device
        prompt_order = list(dict.fromkeys(r.prompt_index for r in rows))
        prompt_ids = {r.prompt_index: r.prompt_ids for r in rows}
        input_ids, mask = self._left_pad([prompt_ids[p] for p in prompt_order])  # (P, L) each
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device),
            **{self._cache_kwarg: cache},
            use_cache=True,
            logits_to_keep=1,
        )
        # Copy each prompt's cache to its sample rows instead of prefilling the same prompt N times.
        to_prompt = torch.tensor([prompt_order.index(r.prompt_index) for r in rows], device=device)  # (B,)
        cache.batch_select_indices(to_prompt)
        logits = out.logits[to_prompt, -1]  # (B, V)
        mask = mask.to(device)[to_prompt]  # (B, L)
        positions = mask.sum(-1)  # (B,) position of the next token of each row
        generators = [torch.Generator().manual_seed(r.seed) for r in rows]
        live = list(range(len(rows)))  # batch row -> index into rows
        tokens: list[list[int]] = [[] for _ in rows]
        finish = [""] * len(rows)
        steps = [0] * len(rows)
        stop = torch.tensor(self.stop_ids, device=device)
        for step in range(params.max_new_tokens):
            uniforms = torch.stack([torch.rand((), generator=generators[i]) for i in live])
            next_tokens = pick_next_tokens(logits, params.temperature, params.top_p, uniforms)  # (B,)
            stopped = torch.isin(next_tokens, stop).tolist()
            keep = []
            for b, (i, tok, is_stop) in enumerate(zip(live, next_tokens.tolist(), stopped)):
                steps[i] += 1
                if is_stop:
                    finish[i] = "stop"
                    continue
                tokens[i].append(tok)
                if step + 1 == params.max_new_tokens:
                    finish[i] = "length"
                else:
                    keep.append(b)
            if not keep:
                break
            if len(keep) < len(live):  # finished rows leave the batch so no compute goes to them
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                next_tokens, mask, positions = next_tokens[index], mask[index], positions[index]
                live = [live[b] for b in keep]
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=-1)  # (B, L + step + 1)
            out = self.model(
                input_ids=next_tokens[:, None],
                attention_mask=mask,
                position_ids=positions[:, None],
                **{self._cache_kwarg: cache},
                use_cache=True,
            )
            logits = out.logits[:, -1]  # (B, V)
            positions = positions + 1
        elapsed = time.perf_counter() - started
        total_steps = sum(steps)
        return [
            Sample(
                prompt_index=r.prompt_index,
                sample_index=r.sample_index,
                text=self.tokenizer.decode(tokens[i], skip_special_tokens=True),
                n_tokens=len(tokens[i]),
                finish_reason=finish[i],
                seed=r.seed,
                time_s=elapsed * steps[i] / total_steps,  # the batch's time shared out by decode steps
                token_ids=tokens[i],
            )
            for i, r in enumerate(rows)
        ]

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        return ids, mask


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class VLLMPolicy:
    """Best-of-N with vLLM on a CUDA GPU; same `generate` and `Sample`s as `Policy`.

    UNTESTED: neither vLLM nor a GPU exists where this project is developed. Each sample is one
    vLLM request with its own seed (vLLM's per-request generator), so samples are reproducible
    within vLLM but are not token-identical to `Policy`'s.
    """

    def __init__(self, spec: str | os.PathLike, gpu_memory_utilization: float = 0.85):
        if importlib.util.find_spec("vllm") is None:
            raise EngineError("the vLLM backend needs vllm: `pip install 'dpo-workbench[vllm]'` on a CUDA machine, "
                              "or use the default torch backend.")
        if not torch.cuda.is_available():
            raise EngineError("the vLLM backend needs a CUDA GPU; use the default torch backend on this machine.")
        from vllm import LLM

        self.path = resolve_model_path(spec)
        self.llm = LLM(model=str(self.path), gpu_memory_utilization=gpu_memory_utilization)
        self.tokenizer = self.llm.get_tokenizer()
        self.stop_ids = sorted({self.tokenizer.eos_token_id} - {None})

    @cached_property
    def fingerprint(self) -> str:
        return model_fingerprint(self.path)

    def generate(self, prompts, n, params, *, prompt_keys=None, only=None, batch_size=256, progress=None):
        """As `Policy.generate`; batch_size is the number of requests handed to vLLM at once."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        _check(params, n, batch_size)
        rows = _plan_rows(self.tokenizer, prompts, n, params, prompt_keys, only)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            requests = [TokensPrompt(prompt_token_ids=r.prompt_ids) for r in chunk]
            settings = [
                VLLMSamplingParams(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
                                   seed=r.seed, stop_token_ids=self.stop_ids)
                for r in chunk
            ]
            started = time.perf_counter()
            outputs = self.llm.generate(requests, settings, use_tqdm=False)
            elapsed = time.perf_counter() - started
            samples = []
            for r, out in zip(chunk, outputs):
                done = out.outputs[0]
                ids = [t for t in done.token_ids if t not in self.stop_ids]
                samples.append(Sample(r.prompt_index, r.sample_index,
                                      self.tokenizer.decode(ids, skip_special_tokens=True), len(ids),
                                      "length" if done.finish_reason == "length" else "stop", r.seed,
                                      elapsed / len(chunk), ids))
            if progress is not None:
                progress(len(samples))
            yield samples


def load_policy(spec: str | os.PathLike, backend: str = "torch", device: str = "cpu") -> Policy | VLLMPolicy:
    """A policy on the named backend: `torch` (any device) or `vllm` (CUDA only)."""
    if backend == "torch":
        return Policy.load(spec, device=device)
    if backend == "vllm":
        return VLLMPolicy(spec)
    raise EngineError(f"unknown generation backend '{backend}': use 'torch' or 'vllm'.")
