"""``asc plot``: the pictures of a run folder (a pipeline's output or one stage's run) from its test reports."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from asc.errors import AscError


def plot(argv: Sequence[str]) -> int:
    """Draw the chain (accuracy against parameters and MACs, with the DCASE limits), the accuracy per device, the
    confusion matrices and the training curves of a run folder, and print where they are."""
    from asc.training.plots import PICTURES, plot_run

    parser = argparse.ArgumentParser(prog="asc plot", description=plot.__doc__)
    parser.add_argument("run", type=Path, help="a pipeline's --out folder (RUN/<stage>/test/metrics.json) or a run")
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNG files (default: RUN/plots)")
    parser.add_argument("--prefix", default="", help="put before each file name (e.g. demo_: demo_chain.png)")
    args = parser.parse_args(argv)
    if not args.run.is_dir():
        raise AscError(f"{args.run}: run folder not found")
    written = plot_run(args.run, args.out or args.run / "plots", args.prefix)
    if not written:
        raise AscError(f"{args.run}: no test report in it (RUN/<stage>/test/metrics.json or RUN/test/metrics.json: "
                       f"run asc test or asc pipeline first)")
    for name in PICTURES:
        print(f"{name}: {written[name].resolve()}")
    return 0
