"""``asc complexity``: parameters and MACs of a checkpoint, as the challenge counts them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from asc.compress.checkpoint import ASC_KEY, read_checkpoint, saved_features
from asc.compress.complexity import count_complexity


def complexity(argv: Sequence[str]) -> int:
    """Print params, MACs, bits and size of a checkpoint's network for one 1-s clip."""
    parser = argparse.ArgumentParser(prog="asc complexity", description=complexity.__doc__)
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of any stage")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: from its front end)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    from asc.compress.checkpoint import model_from_checkpoint

    checkpoint = read_checkpoint(args.ckpt_path)
    features = saved_features(checkpoint, args.ckpt_path)
    model = model_from_checkpoint(checkpoint)
    frames = args.frames or features.n_frames
    result = count_complexity(model, frames, bits=checkpoint[ASC_KEY].get("bits", 32))
    rows = model.n_bands
    if args.json:
        print(json.dumps({"ckpt_path": args.ckpt_path, "n_mels": model.n_mels, "n_bands": rows, "n_frames": frames,
                          **result.as_dict()}))
    else:
        selected = f" ({rows} of them selected)" if rows != model.n_mels else ""
        print(f"{args.ckpt_path}: {model.n_mels} bands{selected} x {frames} frames: {result}")
    return 0
