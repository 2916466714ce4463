"""What every feature extractor shares: its leading parts can be kept fixed in training."""

from __future__ import annotations

from torch import nn

__all__ = ["LeadingFreeze"]


class LeadingFreeze(nn.Module):
    """A feature extractor whose :meth:`parts` (stem first, then each stage) can be frozen.

    A frozen part gets no gradients and keeps its batch-norm statistics (eval mode
    even while the network trains).
    """

    _frozen: list[nn.Module]

    def parts(self) -> list[nn.Module]:
        """Stem, then each stage, in order."""
        raise NotImplementedError

    def freeze_leading(self, count: int) -> None:
        """Keep the stem and the first ``count`` stages fixed (0: train everything)."""
        parts = self.parts()
        if not 0 <= count < len(parts):
            raise ValueError(f"freeze must be 0-{len(parts) - 1} stages, got {count}")
        self._frozen = parts[: count + 1] if count else []
        for part in self._frozen:
            part.requires_grad_(False)

    def train(self, mode: bool = True) -> LeadingFreeze:
        """Train mode for the trained parts; frozen ones stay in eval mode."""
        super().train(mode)
        for part in self._frozen:
            part.eval()
        return self
