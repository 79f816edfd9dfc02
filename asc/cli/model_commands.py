"""``asc complexity``: parameters and MACs of a checkpoint, as the challenge counts them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from asc.compress.complexity import count_complexity
from asc.training.checkpoints import ASC_KEY, read_checkpoint


def complexity(argv: Sequence[str]) -> int:
    """Print params, MACs, bits and size of a checkpoint's network for one 1-s clip."""
    parser = argparse.ArgumentParser(prog="asc complexity", description=complexity.__doc__)
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of any stage")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: from the checkpoint, 34)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    from asc.api import model_from_checkpoint

    checkpoint = read_checkpoint(args.ckpt_path)
    saved = checkpoint[ASC_KEY]
    model = model_from_checkpoint(checkpoint)
    bands = saved.get("bands")
    n_bands = len(bands) if bands is not None else model.n_bands
    frames = args.frames or checkpoint.get("hyper_parameters", {}).get("n_frames", 34)
    result = count_complexity(model, n_bands, frames, bits=saved.get("bits", 32))
    if args.json:
        print(json.dumps({"ckpt_path": args.ckpt_path, "n_bands": n_bands, "n_frames": frames, **result.as_dict()}))
    else:
        print(f"{args.ckpt_path}: {n_bands} bands x {frames} frames: {result}")
    return 0
