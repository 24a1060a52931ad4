"""LoRA dropout at a CPU-friendly cost: the same inverted dropout, a cheaper way to draw the mask.

peft puts an `nn.Dropout` on the input of every LoRA adapter (7 per Llama layer). On CPU, the
Bernoulli draw behind `nn.Dropout` was the largest single cost of a LoRA training step after the
matmuls (21% of a SmolLM2 step with dropout 0.05, `bench/vs_trl.py`'s settings). `FastDropout`
computes the same function: each element kept with probability 1 - p and scaled by 1 / (1 - p),
dropped otherwise; the mask comes from one uniform draw compared with p (float32: p is resolved
to 2^-24), and the backward pass keeps that mask as one byte per element instead of a float.
Evaluation mode and p = 0 pass the input through, as `nn.Dropout` does.
"""

from __future__ import annotations

import torch


class _Masked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return (x * keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return (grad * keep).mul_(ctx.scale), None, None


class FastDropout(torch.nn.Module):
    """`nn.Dropout(p)` with a cheaper mask (module docstring)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.p
        return _Masked.apply(x, keep, 1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_lora_dropout(model: torch.nn.Module) -> int:
    """Swap every LoRA adapter's `nn.Dropout` for a `FastDropout` of the same p; returns how many."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if isinstance(dropout, torch.nn.Dropout):
                dropouts[name] = FastDropout(dropout.p)
                swapped += 1
    return swapped
