"""Data-parallel training with ``torchrun`` (``torch.distributed``).

    torchrun --nproc_per_node 2 train.py        # train.py calls pd4ml.train.fit(...)

``fit`` reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment ``torchrun``
sets, joins the process group (gloo on CPU, NCCL on CUDA; GPU ``LOCAL_RANK`` per process),
wraps the model in ``DistributedDataParallel`` and gives every rank a disjoint part of each
global batch (:meth:`pd4ml.train.data.TrainingData.batches`). The loss of each rank is
normalised by the weight of the *global* batch (one all-reduce of a scalar per step), so the
averaged gradient is that of one process on the same global batch; results differ from a
single process only by the order of floating-point sums (the gradient all-reduce) and, for
models with batch normalisation, by statistics computed per rank. Validation runs on every rank
over the whole validation split (identical weights give identical metrics; no gathering), and
only rank 0 writes checkpoints and the history.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """The process's place in a data-parallel run (world size 1: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over ranks (in place; unchanged for one process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def from_environment(device: torch.device) -> Distributed:
    """The data-parallel context of this process: joins the process group when ``torchrun``
    (``WORLD_SIZE`` > 1) started it, else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def device_for(kind: str, context_local_rank: int | None = None) -> torch.device:
    """The device of ``Recipe.device`` (``"auto"``: CUDA when available); with torchrun on
    GPUs, the GPU ``LOCAL_RANK``."""
    if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from pd4ml.train.recipe import RecipeError

            raise RecipeError("Recipe.device is 'cuda' but no CUDA device is available")
        local_rank = (
            context_local_rank
            if context_local_rank is not None
            else int(os.environ.get("LOCAL_RANK", "0"))
        )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")
