"""Where a process runs: its device, and its share of a run started by ``torchrun``.

:func:`resolve_device` is the one place a ``--device`` value becomes a torch device
(``localize``, ``evaluate``, ``train`` and the benchmarks all call it, directly or
through :meth:`Shard.device`).

``torchrun --nproc_per_node=N -m CXRWeakLocLib localize ...`` starts N copies of the
command; each reads its place from the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``), takes every N-th input of the sorted input list,
runs on ``cuda:LOCAL_RANK`` when GPUs are used (else the CPU), and meets the others
at one barrier before rank 0 merges the per-rank summaries.

A batch run's only collective is that barrier, so its process group is gloo: it
needs no GPU tensor and works the same for CPU and GPU ranks. Training all-reduces
gradients, on NCCL for GPUs. Without torchrun a run is a single shard (rank 0 of 1)
and no process group is created.
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

from .core.errors import CXRWeakLocError

__all__ = ["Shard", "BARRIER_TIMEOUT", "resolve_device"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a rank that finished its share waits for the slowest one. Shares are
#: interleaved (every N-th input), so ranks finish close together even when a
#: resumed run has most of its work left in one part of the archive.
BARRIER_TIMEOUT = timedelta(hours=24)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a one-line error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CXRWeakLocError("--device cuda asked for, but no CUDA GPU is available here")
    try:
        return torch.device(device)
    except RuntimeError:
        raise CXRWeakLocError(f"unknown device {device!r} (use auto, cpu or cuda)") from None


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

    def device(self, requested: str | torch.device = "auto") -> torch.device:
        """The device this rank runs on: ``cuda:LOCAL_RANK`` for GPU runs under torchrun.

        ``requested`` is the user's ``--device`` (``auto``, ``cpu``, ``cuda``,
        ``cuda:N``); an explicit ``cuda:N`` is kept for single-process runs only.
        """
        device = resolve_device(requested)
        if not (self.distributed and device.type == "cuda"):
            return device
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    @contextmanager
    def process_group(self, backend: str = "gloo") -> Iterator[None]:
        """A process group (gloo by default) for the duration of the block."""
        if not self.distributed:
            yield
            return
        dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)
        logger.debug("rank %d of %d joined the process group", self.rank, self.world)
        try:
            yield
        finally:
            dist.destroy_process_group()

    def barrier(self) -> None:
        """Wait until every rank has reached this point (no-op for a single process)."""
        if self.distributed:
            dist.barrier()
