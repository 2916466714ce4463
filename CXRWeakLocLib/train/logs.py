"""The logs of one run: ``log.csv`` (a row per epoch) and TensorBoard (main process only)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

__all__ = ["RunLogs"]


class RunLogs:
    """CSV + TensorBoard logs of one run."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = run_dir / "log.csv"
        self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, row: dict) -> None:
        """Append one epoch's row (numbers also go to TensorBoard)."""
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(value):
                self.tensorboard.add_scalar(key, value, row["epoch"])
        self.tensorboard.flush()

    def image(self, tag: str, grid: np.ndarray, step: int) -> None:
        """A grayscale picture (H, W uint8), e.g. a sample grid."""
        self.tensorboard.add_image(tag, grid, step, dataformats="HW")

    def close(self) -> None:
        self.tensorboard.close()
