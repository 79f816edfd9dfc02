"""The ``asc`` console command: extra commands by name, everything else through LightningCLI.

A user's mistake (AscError) ends in one line ``asc: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from asc.errors import AscError
from asc.files import WRITE_ERRNOS, write_failure

USAGE = """usage: asc COMMAND [options]   (asc --version)

Lightning CLI:  fit | validate | test | predict   --config FILE [--data.root DIR] [--key=value ...]
Extra commands:
  synth DIR        write the built-in dataset in the DCASE 2022 layout
  cache DIR        build (or reuse) the log-mel feature cache of a dataset root
  complexity       params and MACs of a checkpoint (--ckpt_path CKPT [--json])
  pipeline         fit and test every stage in order (--data.root DIR --out DIR [--configs DIR])
  sweep FILE       run a W&B sweep file offline (--count N --out DIR -- fit overrides)
  plot RUN         pictures of a run folder: the chain of stages, per device, confusion matrices, curves
  export           checkpoint -> ONNX (Q/DQ int8 for QAT) + front-end JSON, checked in onnxruntime
                   (--ckpt_path CKPT --out model.onnx [--data.root DIR] [--engine model.plan])

Run `asc COMMAND --help` for the options of one command."""


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def route_exported(args: list[str]) -> list[str]:
    """``asc test --ckpt_path model.onnx`` evaluates the exported file (onnxruntime) instead of a checkpoint."""
    if args[0] != "test":
        return args
    for position, arg in enumerate(args):
        if arg == "--ckpt_path" and position + 1 < len(args):
            value, span = args[position + 1], 2
        elif arg.startswith("--ckpt_path="):
            value, span = arg.split("=", 1)[1], 1
        else:
            continue
        if value.endswith(".onnx"):
            rest = args[:position] + args[position + span:]
            return [*rest, "--model=asc.training.exported.OnnxModel", f"--model.onnx_path={value}"]
    return args


def error_line(error: AscError) -> str:
    """The one line a user sees. An error raised in a DataLoader worker arrives with the worker's traceback
    as its message (torch re-raises it so); only the original line is kept. Characters a terminal would
    act on (escape codes in a crafted file's name or text) are shown escaped, and line breaks as spaces."""
    message = str(error)
    if "Original Traceback" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    message = " ".join(message.split())
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in message)


def _extra_commands() -> dict[str, Callable[[Sequence[str]], int]]:
    from asc.cli import data_commands, export, model_commands, pipeline, plot, sweep

    return {"synth": data_commands.synth, "cache": data_commands.cache, "complexity": model_commands.complexity,
            "pipeline": pipeline.pipeline, "sweep": sweep.sweep, "export": export.export, "plot": plot.plot}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    from asc.machine import keep_freed_memory

    keep_freed_memory()  # every command: training on a CPU runs about twice as fast (asc.machine)
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from asc.version import __version__

        print(f"asc {__version__}")
        return 0
    from asc.cli.tracking import apply_wandb_mode

    apply_wandb_mode()  # once for every command: offline unless the user set W&B up (see asc.cli.tracking)
    try:
        commands = _extra_commands()
        if args[0] in commands:
            return commands[args[0]](args[1:])
        if args[0] in LIGHTNING_COMMANDS:
            from asc.cli.lightning_cli import run_lightning

            return run_lightning(route_exported(args))
        print(f"asc: error: unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    except AscError as error:
        print(f"asc: error: {error_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in WRITE_ERRNOS or not error.filename:
            raise
        print(f"asc: error: {write_failure(error.filename, error, 'failed')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
