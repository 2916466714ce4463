"""Write the network weights of a resumable training state as a ``.safetensors`` file.

``[model] init_from`` takes a model folder or a ``.safetensors`` file; this turns a run's
``last/`` checkpoint (e.g. of the ``cam`` run still in progress) into the latter, with
the source and epoch in the file's metadata so the HAM card can say what it started
from::

    .venv/bin/python -m training.ham.init_weights runs/cam/last runs/ham_init/cam.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import save_file

from CXRWeakLocLib.train.state import load_training_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", type=Path, help="a run's last/ folder")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    args = parser.parse_args()
    parts, meta = load_training_state(args.state)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in parts["model"].items()}
    save_file(tensors, str(args.out),
              metadata={"source": str(args.state), "epoch": str(meta["epoch"])})
    print(f"{args.out}: {len(tensors)} tensors from {args.state} (epoch {meta['epoch']})")


if __name__ == "__main__":
    main()
