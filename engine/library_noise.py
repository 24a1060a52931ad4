"""Messages from the libraries under the engine that a user can do nothing about, silenced by
their exact text (never by category or module as a whole, so real problems still show).

- bitsandbytes, imported by peft for LoRA (QLoRA or not), on CPUs with AVX512-BF16 tries to
  fetch an optional faster 4-bit CPU kernel from the Hugging Face hub through `kernels`; offline,
  or when `kernels` will not trust the publisher, it logs "Failed to load CPU gemm_4bit_forward
  from kernels-community ... Set trust_remote_code=True". bitsandbytes then uses its own
  built-in CPU kernel, which is what this project measured and tested, so nothing is lost.
- transformers warns (FutureWarning) that `is_gradient_checkpointing` is deprecated when peft
  reads that attribute while wrapping a model: a call between two libraries, not ours or the user's.

`quiet_library_noise()` is idempotent and cheap (no torch import): the engine calls it before
it imports peft.
"""

from __future__ import annotations

import logging
import warnings

BNB_HUB_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"
PEFT_DEPRECATION_MESSAGE = r"`is_gradient_checkpointing` is deprecated and will be removed"


class _DropMessage(logging.Filter):
    """Drop the records whose message starts with one text; pass every other record."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_library_noise() -> None:
    """Silence exactly the messages listed in the module docstring."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")  # exists before bitsandbytes is imported
    if not any(isinstance(f, _DropMessage) for f in logger.filters):
        logger.addFilter(_DropMessage(BNB_HUB_KERNEL_MESSAGE))
    warnings.filterwarnings("ignore", message=PEFT_DEPRECATION_MESSAGE, category=FutureWarning)
