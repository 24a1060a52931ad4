"""Count tokens of plain texts with a model's tokenizer (for length statistics and filters)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

from engine.backbone import resolve_model_path

# The tokenizer that measures lengths for curation; a model directory or `smollm2`.
REFERENCE_TOKENIZER = os.environ.get("WORKBENCH_TOKENIZER", "smollm2")


@functools.lru_cache(maxsize=4)
def load_tokenizer(spec: str = REFERENCE_TOKENIZER):
    """The tokenizer of a model (directory, .gguf file or smollm2); by default the reference one."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(spec))


def count_tokens(texts: Sequence[str], spec: str | None = None, batch_size: int = 4096,
                 progress: Callable[[int], None] | None = None) -> list[int]:
    """Token counts without special tokens, in input order."""
    tokenizer = load_tokenizer(spec or os.environ.get("WORKBENCH_TOKENIZER", REFERENCE_TOKENIZER))
    counts: list[int] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        encoded = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        counts.extend(len(ids) for ids in encoded)
        if progress:
            progress(len(chunk))
    return counts
