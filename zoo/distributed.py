"""Data-parallel SVI across processes with ``torch.distributed`` and DDP.

:func:`zoo.fit` with ``distributed=True`` runs one copy of the model per process, launched by
``torchrun``.  Each rank draws its own minibatch of ``B`` examples (its slice of one global
permutation shared by all ranks), and its model's data plate still stands for all ``N``
examples, so each rank's loss is the usual minibatch estimate

    L_r = (N / B) * sum_{i in batch r} E_q log p(x_i | ...) - beta * KL(q || p).

:class:`torch.nn.parallel.DistributedDataParallel` averages the gradients over the ``R``
ranks, which gives the gradient of

    (1 / R) sum_r L_r = (N / (R B)) * sum_{i in the R batches} E_q log p(x_i | ...) - beta * KL,

the ELBO of a single process on the union of the ``R`` minibatches: the KL is counted once and
the likelihood scaled by ``N`` over the effective batch ``R B``.  Nothing is rescaled by hand.
Each rank seeds its own random stream (``seed + rank``), so the Monte-Carlo noise differs
between ranks; DDP broadcasts rank 0's parameters at the start, so the parameters agree.

Usage::

    torchrun --nproc-per-node 4 -m zoo train lenet300-loguniform --distributed

References: Li et al. (2020), "PyTorch Distributed: experiences on accelerating data parallel
training", VLDB; PyTorch's ``torch.distributed`` and DDP documentation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from pyro.infer import ELBO
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "DistributedContext",
    "ElboLoss",
    "all_average",
    "finish",
    "gather_objects",
    "setup",
    "wrap",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the group: ``rank`` of ``world_size``, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0, the only one that writes checkpoints, metrics and logs."""
        return self.rank == 0


def setup(device: torch.device) -> DistributedContext:
    """Join (or start) the default process group: NCCL on CUDA, gloo on the CPU.

    The group comes from the environment ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) unless the caller initialized it already.
    On CUDA each process takes the GPU of its local rank.

    :param device: the device :func:`zoo.train.resolve_device` picked (its index is ignored on
        CUDA: ``cuda:LOCAL_RANK`` is used).
    :raises ValueError: when run outside ``torchrun`` without an initialized group.
    """
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        needed = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
        missing = [k for k in needed if k not in os.environ]
        if missing:
            raise ValueError(
                "distributed=True needs a process group: launch with torchrun "
                "(torchrun --nproc-per-node N -m zoo train NAME --distributed) or call "
                f"torch.distributed.init_process_group first; missing {', '.join(missing)}"
            )
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    backend = dist.get_backend()
    if device.type == "cpu" and backend != "gloo":
        raise ValueError(f"training on the CPU needs the gloo backend, the group uses {backend}")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, device)


class ElboLoss(nn.Module):
    """``elbo.differentiable_loss(model, guide, ...)`` as a module DDP can wrap.

    Pyro's own :class:`pyro.infer.elbo.ELBOModule` does the same for plain modules; this one
    also takes the callables that inference runs (model and guide inside the entry's effect
    handler and the KL annealing), while ``model`` and ``guide`` register the parameters.

    :param model: the model module (its parameters).
    :param guide: the guide module (its parameters).
    :param elbo: a Pyro ELBO with ``differentiable_loss``.
    :param run_model: the model as inference calls it.
    :param run_guide: the guide as inference calls it.
    """

    def __init__(
        self,
        model: nn.Module,
        guide: nn.Module,
        elbo: ELBO,
        run_model: Callable[..., Any],
        run_guide: Callable[..., Any],
    ) -> None:
        super().__init__()
        if not hasattr(elbo, "differentiable_loss"):
            raise ValueError(
                f"{type(elbo).__name__} has no differentiable_loss, which DDP needs; distributed "
                "training supports the trace, meanfield and traceenum ELBOs"
            )
        self.model, self.guide = model, guide
        self._elbo, self._run = elbo, (run_model, run_guide)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._elbo.differentiable_loss(*self._run, *args, **kwargs)


def wrap(loss: ElboLoss, ctx: DistributedContext) -> DistributedDataParallel:
    """DDP over ``loss``: rank 0's parameters and buffers are broadcast now, gradients are
    averaged (bucketed all-reduce, overlapped with the backward pass) at every backward."""
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(loss, device_ids=device_ids)


def all_average(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over the ranks (gloo has no AVG: a SUM divided by the count)."""
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (a collective: every rank must call it)."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def finish() -> None:
    """Leave the process group, once every rank got here (a no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
