"""Train the report-text WordPiece tokenizer on the IU reports' FINDINGS and IMPRESSION.

Run from the repository root::

    python -m training.reports.train_tokenizer [--out runs/text/iu-wordpiece.json]

The vocabulary comes from the IU collection (CC BY-NC-ND 4.0), so it is written under
``runs/`` (not committed); a model trained with it carries its copy in its folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from CXRWeakLocLib.text.tokenizer import save_tokenizer, train_tokenizer
from training.reports.validate import REPO, load_collection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "text" / "iu-wordpiece.json")
    parser.add_argument("--vocab-size", type=int, default=4000)
    args = parser.parse_args()
    texts = [text for report in load_collection() for _, text in report.finding_sections]
    tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size)
    save_tokenizer(tokenizer, args.out)
    print(f"{tokenizer.get_vocab_size()} tokens from {len(texts)} sections -> {args.out}")


if __name__ == "__main__":
    main()
