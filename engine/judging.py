"""LLM-as-judge verdicts read from a causal LM's next-token logits: no generation, no parsing.

The judge sees one conversation (the caller's filled-in template as the user turn), rendered with its
own chat template and the generation prompt. Its verdict is the softmax, over the answer labels only
("A"/"B" for a pairwise judge, "1".."5" for a rubric), of the logits at the next position: the
probability of each answer the judge could give first.

    judge = LogitJudge.load("smollm2")
    judge.answer_probabilities([[{"role": "user", "content": "... A or B?"}]], ["A", "B"])  # [[0.62, 0.38]]

Hand-written rather than `generate(output_scores=True)`: one forward pass per conversation is all a
verdict needs, and only the last position's logits are kept (`logits_to_keep=1`, a (B, V) slice
instead of (B, T, V)). Rows are left-padded with explicit position ids, so a conversation's
probabilities do not depend on what it is batched with (tests/engine/test_judging.py checks a
conversation alone against the same one in a padded batch).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from engine.backbone import resolve_model_path
from engine.conversation import normalize_messages
from engine.data import Message
from engine.errors import EngineError

CLIP_MARK = " [...]"


class LogitJudge:
    """A causal LM with its tokenizer, asked for the probabilities of a few one-token answers."""

    def __init__(self, model, tokenizer, path: Path | None = None):
        if not getattr(tokenizer, "chat_template", None):
            raise EngineError("the judge's tokenizer has no chat template: use an instruct/chat model as judge")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.path = path
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = 0 if pad is None else int(pad)  # masked out: any id does
        self.max_positions = getattr(model.config, "max_position_embeddings", None)

    @classmethod
    def load(cls, spec: str | os.PathLike, device: str = "cpu") -> LogitJudge:
        """Load a judge from a model spec (`smollm2`, an HF directory or a .gguf file), in fp32."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(spec)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
        return cls(model, tokenizer, path)

    def _render(self, messages: Sequence[Message]) -> str:
        return self.tokenizer.apply_chat_template(normalize_messages(messages), tokenize=False,
                                                  add_generation_prompt=True)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of the conversation up to where the judge's answer begins."""
        return self._ids(self._render(messages))

    def count_tokens(self, text: str) -> int:
        return len(self._ids(text))

    def clip(self, text: str, max_tokens: int, keep: str = "start") -> str:
        """`text` cut to about `max_tokens` tokens, keeping its start (a reply) or its end (a prompt)."""
        ids = self._ids(text)
        if len(ids) <= max_tokens:
            return text
        kept = max(max_tokens - len(self._ids(CLIP_MARK)), 1)
        if keep == "end":
            return CLIP_MARK.strip() + " " + self.tokenizer.decode(ids[-kept:])
        return self.tokenizer.decode(ids[:kept]) + CLIP_MARK

    def label_tokens(self, labels: Sequence[str]) -> list[tuple[int, ...]]:
        """The tokens each label is when the judge answers with it, read in context after the generation
        prompt (a tokenizer may read "A" differently at a word start). A label is one token, or two whose
        first is itself a label: "10" read as "1" then "0" on a 1-10 scale."""
        text = self._render([{"role": "user", "content": "?"}])
        base = self._ids(text)
        found = []
        for label in labels:
            ids = self._ids(text + label)
            if ids[:len(base)] != base or not 1 <= len(ids) - len(base) <= 2:
                raise EngineError(f"the judge's tokenizer does not read the answer {label!r} as one or two tokens "
                                  "after its generation prompt: use single-token answers (letters, or 1-5)")
            found.append(tuple(ids[len(base):]))
        singles = {t[0] for t in found if len(t) == 1}
        if len(set(found)) != len(found) or any(len(t) == 2 and t[0] not in singles for t in found):
            raise EngineError(f"the answers {list(labels)} are not distinct single tokens (or a single-token "
                              "answer followed by one more token, as 10 after 1) for this judge")
        return found

    @torch.inference_mode()
    def answer_probabilities(self, conversations: Sequence[Sequence[Message]], labels: Sequence[str],
                             batch_size: int = 8, progress: Callable[[int], None] | None = None) -> list[list[float]]:
        """For each conversation, the probability of each label as the judge's answer, in input order.

        One-token labels: a softmax over their logits at the next position. A two-token label ("10"
        after "1") takes the share P(second token | first token) of its first token's probability,
        read from one more forward pass with that first token appended (full-vocabulary softmax); the
        one-token label keeps the rest. `progress(n)` hears after each batch of the first pass."""
        tokens = self.label_tokens(labels)
        encoded = [self.encode(c) for c in conversations]
        firsts = [t[0] for t in tokens if len(t) == 1]
        chosen, _ = self._next_token_logits(encoded, firsts, batch_size, progress)   # (N, F)
        first = torch.softmax(chosen, dim=-1)                                         # (N, F)
        result = torch.zeros((len(encoded), len(tokens)), dtype=torch.float64)        # (N, L)
        for k, label in enumerate(tokens):
            if len(label) == 1:
                result[:, k] = first[:, firsts.index(label[0])]
        for head in sorted({t[0] for t in tokens if len(t) == 2}):
            longer = [k for k, t in enumerate(tokens) if len(t) == 2 and t[0] == head]
            chosen, normaliser = self._next_token_logits([e + [head] for e in encoded], [tokens[k][1] for k in longer],
                                                         batch_size, None)
            continued = torch.exp(chosen - normaliser[:, None])                        # (N, longer)
            share = first[:, firsts.index(head)]
            for column, k in enumerate(longer):
                result[:, k] = share * continued[:, column]
            result[:, tokens.index((head,))] = share * (1 - continued.sum(-1))
        return result.tolist()

    def _next_token_logits(self, encoded: list[list[int]], token_ids: list[int], batch_size: int,
                           progress: Callable[[int], None] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits of `token_ids` at the next position (N, K), the full-vocabulary logsumexp (N,)), fp64."""
        too_long = [len(e) for e in encoded if self.max_positions and len(e) > self.max_positions]
        if too_long:
            raise EngineError(f"a judge input has {max(too_long)} tokens, more than the judge's "
                              f"{self.max_positions} positions: lower --max-length")
        wanted = torch.tensor(token_ids)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
        device = next(self.model.parameters()).device
        chosen = torch.zeros((len(encoded), len(token_ids)), dtype=torch.float64)
        normaliser = torch.zeros(len(encoded), dtype=torch.float64)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids, mask = self._left_pad([encoded[i] for i in rows])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each row counts from its first real token
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                position_ids=positions.to(device), logits_to_keep=1).logits[:, -1, :]  # (B, V)
            logits = logits.double().cpu()
            chosen[rows] = logits.index_select(-1, wanted)                    # (B, K)
            normaliser[rows] = torch.logsumexp(logits, dim=-1)                # (B,)
            if progress is not None:
                progress(len(rows))
        return chosen, normaliser

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)            # (B, T)
        for row, sequence in enumerate(sequences):
            ids[row, width - len(sequence):] = torch.tensor(sequence, dtype=torch.long)
            mask[row, width - len(sequence):] = 1
        return ids, mask
