"""A WordPiece tokenizer for report text, trained with the ``tokenizers`` library.

Lower-cased, accents stripped, split on whitespace and punctuation (BERT's rules),
``[CLS] text [SEP]`` around each text; saved as one JSON file (the ``tokenizers``
format) to travel in a model folder beside the weights. Training needs only the texts:
no vocabulary is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from ..core.errors import CheckpointError

__all__ = ["SPECIAL_TOKENS", "train_tokenizer", "save_tokenizer", "load_tokenizer",
           "encode_batch"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000, min_frequency: int = 2):
    """A WordPiece tokenizer trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS))
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls, sep = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tokenizer


def save_tokenizer(tokenizer, path: Path) -> Path:
    """Write the tokenizer as one JSON file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def load_tokenizer(path: Path):
    """Read a tokenizer JSON file; a missing or unreadable one is a one-line error."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # the library raises plain Exceptions for bad files
        raise CheckpointError(f"{path}: not a readable tokenizer ({error})") from None


def encode_batch(tokenizer, texts: Sequence[str], max_length: int = 128,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (batch x length), truncated and padded to the longest."""
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    encodings = tokenizer.encode_batch(list(texts))
    ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.bool)
    return ids, mask
