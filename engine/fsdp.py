"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for the reward-model trainer, and full states out of it.

`shard(module, layers, device_type)` shards every parameter over the whole world: each decoder
layer is one unit (gathered just before it runs, freed after), the rest (embeddings, final norm,
value head) the root unit. Gradients are reduce-scattered as a mean over the world, like DDP's
all-reduce, so the trainer's loss scaling is the same for both.

Checkpoints and the saved model need whole tensors: `full_model_state` and
`full_optimizer_state` gather them (collective: every rank calls; rank 0 gets them on CPU),
and `load_full_optimizer_state` gives each rank its shard back. The trainable weights go
through `engine.checkpoint.trainable_state`, which gathers DTensors itself, so an FSDP checkpoint
has the usual format (`workbench rm export` reads it) apart from the optimizer state, which is
keyed by parameter name.

Runs on CPU with gloo (tested, 2 processes) and is meant for CUDA with nccl (untested here).
"""

from __future__ import annotations

import warnings

import torch

from engine.errors import EngineError

# torch.distributed.checkpoint takes about a second to import: only FSDP runs pay for it.


def shard(module: torch.nn.Module, layers, device_type: str) -> torch.nn.Module:
    """Shard `module` (a BatchScorer or SequenceParallelScorer) in place; returns it."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if layers is None:
        raise EngineError("FSDP needs a decoder whose blocks are in .layers; this backbone has none: use DDP")
    mesh = init_device_mesh(device_type, (torch.distributed.get_world_size(),))
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    # BatchScorer returns a view (squeeze); the loss never changes the scores in place, so FSDP's
    # warning about in-place ops on views does not apply.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    return fully_shard(module, mesh=mesh)


def full_model_state(module: torch.nn.Module) -> dict:
    """Every parameter and buffer in full on rank 0 (empty elsewhere); keys as in `module.state_dict()`."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state in full on rank 0 (empty elsewhere), keyed by parameter name."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a `full_optimizer_state` that every rank has read: each keeps its own shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(module, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))
