"""PyTorch view of a prepared split: dicts of tensors, read a whole batch at a time.

    from pd4ml import TopTagging
    events = TopTagging.torch("train", graph=True)          # a torch.utils.data.Dataset
    for batch in events.loader(batch_size=1024, shuffle=True, num_workers=2, pin_memory=True):
        x, mask, label, weight = batch["features"], batch["mask"], batch["labels"], batch["weights"]

``events[i]`` is one event, ``events[a:b]`` (or a sorted row array) one batch read from the
memory maps in one call. :meth:`TorchEvents.loader` hands whole batches to the ``DataLoader``
(``shuffle=True``: a uniform random permutation of the split per epoch; ``shuffle="blocks"``:
block shuffling; see :func:`pd4ml.adapters.common.batch_rows`), so a batch costs one read, not
``batch_size`` Python calls. A plain ``DataLoader(events, batch_size=...)`` also works (one
event per call, the default collation).

Tensors share the dtypes of the prepared arrays (float32 inputs, bool masks), except node
indices (``neighbours``, ``edges``: int64, ready for indexing and ``gather``; -1 = none),
``labels`` (int64 for classification, float32 for regression) and ``weights`` (float32; 1
where the dataset has no weights). Nothing is specific to a device: move a batch
with ``.to(device)`` (with ``pin_memory=True`` for asynchronous copies to CUDA).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pd4ml.adapters.common import (
    EventArrays,
    Rows,
    Shuffle,
    batch_rows,
    count_batches,
    shuffle_mode,
)

if TYPE_CHECKING:
    from pd4ml.datasets.base import PreparedData


class BatchRowSampler(Sampler[Rows]):
    """Yields the rows of whole batches (a slice or sorted row indices) for one epoch.

    ``shuffle`` as :func:`pd4ml.adapters.common.batch_rows`: ``True`` a uniform random
    permutation of all events, ``"blocks"`` block shuffling (``window`` blocks pooled at a
    time). Every new iteration is a new epoch with its own order (seeded by ``seed`` and the epoch
    number); :meth:`set_epoch` sets the epoch explicitly (e.g. for resumed training). With
    ``num_replicas`` > 1 (distributed data parallel), rank ``rank`` takes every
    ``num_replicas``-th full batch of the epoch, and every rank the same number: the ranks'
    shares are disjoint and of equal size (the short batch and a remainder of fewer than
    ``num_replicas`` batches are left out of that epoch; with shuffling, other events each
    epoch).
    """

    def __init__(
        self,
        n_events: int,
        batch_size: int,
        *,
        shuffle: Shuffle = False,
        seed: int = 0,
        drop_last: bool = False,
        window: int = 8,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        count_batches(n_events, batch_size, drop_last)  # validates batch_size
        shuffle_mode(shuffle)  # validates shuffle
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), not {rank}")
        self.n_events = n_events
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.window = window
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch`` on the next iteration."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Rows]:
        epoch = self.epoch
        self.epoch += 1
        batches = batch_rows(
            self.n_events,
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
            drop_last=self.drop_last or self.num_replicas > 1,
            window=self.window,
        )
        if self.num_replicas == 1:
            return batches
        # every rank takes every num_replicas-th batch, all ranks the same number of batches
        return itertools.islice(
            batches, self.rank, len(self) * self.num_replicas, self.num_replicas
        )

    def __len__(self) -> int:
        drop_last = self.drop_last or self.num_replicas > 1
        return count_batches(self.n_events, self.batch_size, drop_last) // self.num_replicas


#: The former name of :class:`BatchRowSampler` (it now also shuffles uniformly).
BlockBatchSampler = BatchRowSampler


class TorchEvents(Dataset[dict[str, torch.Tensor]]):
    """A ``torch.utils.data.Dataset`` over the memory maps of one prepared split.

    Args:
        data: the prepared split (``Dataset.load_data(...)``).
        names: per-event arrays to serve (default: all; ``labels`` and ``weights`` always).
        weights: the array used as ``weights`` (default ``weights`` where present, else 1).
    """

    def __init__(
        self, data: PreparedData, names: Sequence[str] | None = None, weights: str | None = None
    ) -> None:
        self.events = EventArrays(data, names, weights)

    def __len__(self) -> int:
        return self.events.n_events

    def __getitem__(self, index: int | slice | np.ndarray) -> dict[str, torch.Tensor]:
        """One event (``int``, tensors without the batch axis) or one batch (slice, rows)."""
        if isinstance(index, (int, np.integer)):
            position = int(index)
            if not -self.events.n_events <= position < self.events.n_events:
                raise IndexError(f"event {position} out of range for {self.events.n_events}")
            return _tensors(self.events.read(position % self.events.n_events))
        return _tensors(self.events.read(index))

    @property
    def shared(self) -> dict[str, torch.Tensor]:
        """Arrays that are the same for every event (grid neighbours, station positions)."""
        return {
            name: torch.from_numpy(np.array(value)) for name, value in self.events.shared.items()
        }

    def loader(
        self,
        batch_size: int = 256,
        shuffle: Shuffle = False,
        *,
        seed: int = 0,
        drop_last: bool = False,
        window: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> DataLoader[Any]:
        """A ``DataLoader`` of whole batches, each read from the memory maps in one call.

        ``shuffle=True`` draws a uniform random permutation of all events for each epoch (each
        batch a uniform sample, read as sorted rows); ``shuffle="blocks"`` shuffles by blocks
        (``window`` blocks of ``batch_size`` consecutive events are pooled and dealt into
        batches: nearly sequential reads for splits larger than memory, but batches are not
        uniform samples of an ordered file; see :func:`pd4ml.adapters.common.batch_rows`).
        Each iteration of the loader is a new epoch with a new order, which depends only on
        ``seed`` and the epoch number. ``num_workers`` processes read
        batches in parallel (each reopens the memory maps; nothing is copied to them);
        ``pin_memory`` pins the batches for asynchronous copies to CUDA. ``num_replicas`` and
        ``rank`` share the batches among distributed data-parallel processes (see
        :class:`BatchRowSampler`; use the same ``seed`` on every rank).
        """
        return batch_loader(
            self,
            batch_size,
            shuffle,
            seed=seed,
            drop_last=drop_last,
            window=window,
            num_workers=num_workers,
            pin_memory=pin_memory,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers,
            num_replicas=num_replicas,
            rank=rank,
        )


def batch_loader(
    dataset: Dataset[Any],
    batch_size: int,
    shuffle: Shuffle,
    *,
    collate_fn: Callable[[Any], Any] | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    persistent_workers: bool = False,
    **sampling: Any,
) -> DataLoader[Any]:
    """A ``DataLoader`` over ``dataset`` (indexable by batch rows) with a
    :class:`BatchRowSampler`; ``sampling`` are the sampler's keyword arguments."""
    sampler = BatchRowSampler(len(dataset), batch_size, shuffle=shuffle, **sampling)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        prefetch_factor=prefetch_factor,
        persistent_workers=persistent_workers and num_workers > 0,
    )


def _tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {
        name: torch.from_numpy(value if value.flags.c_contiguous else np.ascontiguousarray(value))
        for name, value in batch.items()
    }
