"""A small transformer text encoder for report text (the text side of a CLIP-style model).

No pretrained text or CLIP weights are reachable here: the encoder starts from random
weights and learns from report text (masked-language or contrastive pre-training) and
image-text pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TextEncoderConfig", "TextEncoder"]


@dataclass(frozen=True)
class TextEncoderConfig:
    """Size of the text encoder (the defaults: 4 layers of width 256, ~3.5 M parameters
    with a 4,000-word vocabulary)."""

    vocab_size: int
    width: int = 256
    layers: int = 4
    heads: int = 4
    max_length: int = 128
    embed_dim: int = 256
    dropout: float = 0.1
    pad_id: int = 0


class TextEncoder(nn.Module):
    """Token + position embeddings, a pre-norm transformer encoder, the ``[CLS]`` token
    (the first) projected to ``embed_dim``; :meth:`tokens` gives every token's features
    and :meth:`mlm_logits` the vocabulary scores for masked-language pre-training."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width,
                                            padding_idx=config.pad_id)
        self.position_embedding = nn.Parameter(torch.zeros(config.max_length, config.width))
        nn.init.normal_(self.position_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            config.width, config.heads, dim_feedforward=4 * config.width,
            dropout=config.dropout, activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.layers,
                                                 enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        self.projection = nn.Linear(config.width, config.embed_dim, bias=False)

    def tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Features of every token (batch x length x width); ``mask`` is True on tokens."""
        if ids.shape[1] > self.config.max_length:
            raise ValueError(f"{ids.shape[1]} tokens, more than max_length "
                             f"{self.config.max_length}")
        x = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        return self.norm(self.transformer(x, src_key_padding_mask=~mask))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One embedding per text (batch x embed_dim), not normalised."""
        return self.projection(self.tokens(ids, mask)[:, 0])

    def mlm_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Vocabulary scores per token (batch x length x vocab), tied to the embeddings."""
        return self.tokens(ids, mask) @ self.token_embedding.weight.T
