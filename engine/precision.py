"""Compute precision: fp32, or bf16 autocast where the hardware runs bf16 natively.

`auto` picks bf16 on CUDA devices that support it and on CPUs with native bf16 matrix units
(AVX512-BF16 or AMX on x86, BF16 on Arm); everywhere else fp32, because CPUs without them
emulate bf16 and run it several times slower than fp32 (this project's CI machines are such
AVX2 machines; its 2-core development machine has AVX512-BF16 and runs bf16 matmuls 4.5x
faster than fp32). Weights stay fp32 under autocast: only the matmuls run in bf16. Runs record
the precision they resolved to, since scores differ between the two in the second decimal.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16")
_CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 (two kinds), aarch64


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU's flags (Linux /proc/cpuinfo) include a bf16 matrix instruction set."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False  # no way to tell (macOS, Windows): fp32 is the safe choice
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in {"flags", "features"}:
            return bool(_CPU_BF16_FLAGS & set(value.split()))
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """'fp32' or 'bf16' for this device; 'bf16' on a device without bf16 support is an error."""
    import torch  # here, not at the top: the CLI reads PRECISIONS without loading torch

    if precision not in PRECISIONS:
        raise EngineError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and device.type == "cuda" and not native:
        raise EngineError(f"{torch.cuda.get_device_name(device)} has no bf16 support: use --precision fp32")
    return precision


def autocast(precision: str, device: torch.device | str):
    """The context for a forward pass in a resolved precision ('fp32' or 'bf16')."""
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def describe_cpu() -> str:
    """The machine type and whether its CPU runs bf16 natively (recorded with a run's precision)."""
    return f"{platform.machine()}, native bf16: {'yes' if cpu_has_native_bf16() else 'no'}"
