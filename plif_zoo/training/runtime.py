"""Where a run executes: torchrun ranks, the device, autocast, collective sums, stop signals.

Distributed: started by ``torchrun`` (``WORLD_SIZE`` > 1), gloo on CPU, NCCL on GPU; each
rank sees its ``DistributedSampler`` shard and only rank 0 writes. Single process, every
helper here is a no-op that needs no ``torch.distributed``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from spikingjelly.activation_based import functional
from torch import nn

from ..backends import check_device

__all__ = [
    "Dist",
    "setup_distributed",
    "resolve_device",
    "all_sum",
    "gather",
    "barrier",
    "any_rank",
    "autocast",
    "reset",
    "Stop",
]


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup_distributed(device: str) -> Dist:
    """Join the process group torchrun describes in the environment (once)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank)


def resolve_device(device: str, dist_info: Dist) -> torch.device:
    """``auto`` -> cuda when available; under torchrun each rank takes its local GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and dist_info.enabled:
        device = f"cuda:{dist_info.local_rank}"
    return check_device(device)


def all_sum(values: Sequence[float], dist_info: Dist, device: torch.device) -> list[float]:
    """Element-wise sum over ranks, in float64 so counts stay exact."""
    if not dist_info.enabled:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather(obj: Any, dist_info: Dist) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if not dist_info.enabled:
        return [obj]
    import torch.distributed as dist

    objs: list[Any] = [None] * dist_info.world
    dist.all_gather_object(objs, obj)
    return objs


def barrier(dist_info: Dist, first: bool) -> None:
    """Called before (first=True) and after a step that rank 0 must do alone first."""
    if dist_info.enabled and (dist_info.main != first):
        import torch.distributed as dist

        dist.barrier()


def any_rank(flag: bool, dist_info: Dist, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not dist_info.enabled:
        return flag
    return all_sum([float(flag)], dist_info, device)[0] > 0


def autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CPU, float16 on CUDA; a no-op context without ``amp``."""
    if not amp:
        return nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def reset(model: nn.Module) -> None:
    """Clear every neuron's membrane state between batches."""
    functional.reset_net(model)


class Stop:
    """SIGTERM / SIGINT ask the loop to checkpoint at the next step and exit.

    Under torchrun every rank installs it: torchrun passes its SIGTERM on to the ranks and gives
    them 30 s, and the loop's ``all_sum`` of ``requested`` makes all ranks stop at the same step.
    """

    def __init__(self):
        self.requested = False
        self.previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame):
        self.requested = True

    def close(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
