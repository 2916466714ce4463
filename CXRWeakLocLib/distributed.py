"""Splitting a batch run across processes and GPUs started by ``torchrun``.

``torchrun --nproc_per_node=N -m CXRWeakLocLib localize ...`` starts N copies of the
command; each reads its place from the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``), takes every N-th input of the sorted input list,
runs on ``cuda:LOCAL_RANK`` when GPUs are used (else the CPU), and meets the others
at one barrier before rank 0 merges the per-rank summaries.

The only collective is that barrier, so the process group is always gloo: it
needs no GPU tensor and works the same for CPU and GPU ranks (NCCL would add
nothing here but a device guess for the barrier). Without torchrun the run is a
single shard (rank 0 of 1) and no process group is created.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = ["Shard", "BARRIER_TIMEOUT"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a rank that finished its share waits for the slowest one. Shares are
#: interleaved (every N-th input), so ranks finish close together even when a
#: resumed run has most of its work left in one part of the archive.
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class Shard:
    """This process's place in a run of ``world`` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} outside a world of {self.world}")

    @classmethod
    def from_env(cls) -> Shard:
        """The shard torchrun describes in the environment (rank 0 of 1 without it)."""
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def main(self) -> bool:
        """True on the rank that merges results and talks to the user."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``world``-th item from ``rank``.

        Deterministic for a given sequence, so every rank agrees on who does what
        without talking, and a re-run gives each rank the same inputs again.
        """
        return list(items[self.rank::self.world])

    def device(self, requested: str) -> str:
        """The device this rank runs on: ``cuda:LOCAL_RANK`` for GPU runs under torchrun.

        ``requested`` is the user's ``--device`` (``auto``, ``cpu``, ``cuda``,
        ``cuda:N``); an explicit ``cuda:N`` is kept for single-process runs only.
        """
        wants_cuda = requested.startswith("cuda") or (
            requested == "auto" and torch.cuda.is_available()
        )
        if not (self.distributed and wants_cuda and torch.cuda.is_available()):
            return requested
        torch.cuda.set_device(self.local_rank)
        return f"cuda:{self.local_rank}"

    @contextmanager
    def process_group(self) -> Iterator[None]:
        """A gloo process group for the barrier, for the duration of the block."""
        if not self.distributed:
            yield
            return
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        logger.debug("rank %d of %d joined the process group", self.rank, self.world)
        try:
            yield
        finally:
            dist.destroy_process_group()

    def barrier(self) -> None:
        """Wait until every rank has reached this point (no-op for a single process)."""
        if self.distributed:
            dist.barrier()
