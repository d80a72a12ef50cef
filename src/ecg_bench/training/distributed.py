"""Several processes, on PyTorch's own engine (``torch.distributed``): who we are, how the model is wrapped.

A run is launched once per process by torchrun (``torchrun --nproc-per-node N -m ecg_bench run ...``, or
``ecg-bench run --nproc N`` which calls torchrun for us); torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and
the rendezvous address. ``init_from_env`` joins the process group (NCCL on CUDA, gloo on CPU);
``current`` says which rank this is (rank 0 of 1 when nothing was launched).

Strategies (``train.strategy``):

- ``single``: one process, the model as built.
- ``ddp``: ``DistributedDataParallel``; each rank holds the whole model, gradients are averaged.
- ``fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``) on every decoder layer, then on the whole ELM:
  parameters, gradients and AdamW moments are sharded across ranks. FSDP2 shards each parameter on its
  own, so a layer holding frozen base weights and trainable LoRA matrices is fine. On CUDA with bf16 the
  parameters are gathered in bf16 and gradients reduced in fp32 (``MixedPrecisionPolicy``).

Both DDP and FSDP average gradients over ranks; the trainer divides each rank's summed token loss by
the token count of the whole global batch and multiplies by the world size, so N ranks train exactly
like one process with an N times larger batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ecg_bench.errors import ConfigError, ECGBenchError
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)
T = TypeVar("T")

STRATEGIES = ("single", "ddp", "fsdp")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, world size and the rank on this node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def current() -> Dist:
    """The initialised process group's rank and size, or rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return Dist(dist.get_rank(), dist.get_world_size(), local)
    return Dist()


def init_from_env(device_type: str = "cpu", timeout_minutes: float = 30.0) -> bool:
    """Join the process group torchrun described in the environment; True when this call created it.

    Nothing happens (False) without WORLD_SIZE > 1 or when a group already exists (tests spawn their own).
    The timeout bounds how long ranks wait for rank 0 to build the data; raise it for a first build of a
    large store.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise ECGBenchError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device_type == "cuda" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    log.info("rank %d of %d joined the process group (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def resolve_strategy(name: str, world_size: int) -> str:
    """``auto`` -> ddp with several processes, else single; ``single`` with several processes is refused."""
    if name == "auto":
        return "ddp" if world_size > 1 else "single"
    if name not in STRATEGIES:
        raise ConfigError([f"train.strategy must be auto, single, ddp or fsdp, got {name!r}"])
    if name == "single" and world_size > 1:
        raise ConfigError([f"train.strategy 'single' but {world_size} processes were launched (WORLD_SIZE={world_size}): "
                           "use --train.strategy ddp or fsdp, or launch one process"])  # fmt: skip
    return name


def rank_device(device: torch.device, d: Dist) -> torch.device:
    """Each rank on its own GPU (``cuda:LOCAL_RANK``) unless the config named one index; CPU ranks share the CPU."""
    if device.type == "cuda" and d.active and device.index is None:
        device = torch.device("cuda", d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


# ---------------------------------------------------------------- collectives (no-ops in one process)


def barrier() -> None:
    if current().active:
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sums of ``values`` over every rank (float64, one collective)."""
    if not current().active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_object(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order (through torch's object collectives; nothing touches a file)."""
    if not current().active:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def main_first(fn: Callable[[], T], what: str) -> T:
    """Run ``fn`` on rank 0 while the others wait, then give them its result (the data barrier).

    An error on rank 0 reaches every rank (as an ECGBenchError naming ``what``), so none waits forever.
    """
    d = current()
    if not d.active:
        return fn()
    box: list[Any] = [None]
    if d.main:
        try:
            result = fn()
            box[0] = ("ok", result)
        except BaseException as e:  # every rank must leave the collective below
            box[0] = ("error", f"{e.__class__.__name__}: {e}")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise ECGBenchError(f"rank 0 failed while {what}: {value}")
    return value


# ---------------------------------------------------------------- the model under a strategy


def decoder_layers(elm: nn.Module) -> list[nn.Module]:
    """The LLM's transformer blocks (``model.layers`` in every Llama-like family), or [] when not found."""
    decoder = elm.base_llm.get_decoder() if hasattr(elm, "base_llm") else None
    layers = getattr(decoder, "layers", None)
    return list(layers) if layers is not None else []


def wrap_model(elm: nn.Module, strategy: str, device: torch.device, amp_dtype: torch.dtype | None) -> nn.Module:
    """The module the training step calls: ``elm`` itself (single, fsdp: sharded in place) or a DDP wrapper."""
    if strategy == "single":
        return elm
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: a batch without ECGs leaves the encoder unused; the graph walk costs little
        return DistributedDataParallel(elm, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=True)  # fmt: skip
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy()
    if device.type == "cuda" and amp_dtype is not None:  # bf16 all-gathers and compute, fp32 gradient reduction
        policy = MixedPrecisionPolicy(param_dtype=amp_dtype, reduce_dtype=torch.float32)
    layers = decoder_layers(elm)
    if not layers:
        log.warning("fsdp: found no decoder layers to shard one by one; the whole ELM is one FSDP unit")
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(elm, mp_policy=policy)
    return elm


def set_gradient_sync(model: nn.Module, strategy: str, sync: bool):
    """A context in which backward does (``sync``) or does not all-reduce gradients (accumulation micro-batches)."""
    from contextlib import nullcontext

    if strategy == "ddp" and not sync:
        return model.no_sync()
    if strategy == "fsdp":
        model.set_requires_gradient_sync(sync)
    return nullcontext()


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A sharded DTensor gathered whole (a collective: every rank must call it), or ``t`` itself."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def like_param(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``value`` (a whole tensor read from a checkpoint) laid out like ``param``: sharded when it is a DTensor."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        return distribute_tensor(value.to(param.device_mesh.device_type), param.device_mesh, param.placements)
    return value.to(param.device)
