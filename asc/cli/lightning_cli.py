"""``asc fit|validate|test|predict``: LightningCLI with omegaconf configs and one folder per experiment."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from asc.data.datamodule import DCASEDataModule
from asc.errors import AscError
from asc.training.modules import SceneModule


class LogConfigCallback(SaveConfigCallback):
    """Save the full config into the run folder and send it to the logger (W&B logs every key)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({"config": self.config.as_dict()})


class AscCLI(LightningCLI):
    """LightningCLI that keeps everything of a run under ``--trainer.default_root_dir``."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.trainer.get("default_root_dir") or "runs/default"
        config.trainer.default_root_dir = root
        Path(root).mkdir(parents=True, exist_ok=True)
        logger = config.trainer.get("logger")
        for entry in logger if isinstance(logger, list) else [logger]:
            if _is_wandb(entry):
                if entry.init_args.get("save_dir") in (None, ".") and not entry.init_args.get("dir"):
                    entry.init_args.save_dir = entry.init_args.dir = root
        for callback in config.trainer.get("callbacks") or []:
            is_checkpoint = str(callback.get("class_path", "")).endswith("ModelCheckpoint")
            if is_checkpoint and not callback.init_args.get("dirpath"):
                callback.init_args.dirpath = str(Path(root) / "checkpoints")

    def after_test(self) -> None:
        folder = getattr(self.model, "report_dir", None)
        if folder is not None:
            print(f"test report written to {Path(folder).resolve()}")

    def after_predict(self) -> None:
        path = getattr(self.model, "submission_path", None)
        if path is not None:
            print(f"submission written to {Path(path).resolve()}")


def _is_wandb(entry: Any) -> bool:
    return entry is not None and hasattr(entry, "get") and str(entry.get("class_path", "")).endswith("WandbLogger")


def run_lightning(args: list[str]) -> int:
    """Run a LightningCLI subcommand; W&B defaults to offline when no API key is set (never a prompt)."""
    if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        _run_cli(args)
    except argparse.ArgumentError as error:
        raise AscError(config_error_line(str(error))) from None
    except Exception as error:  # jsonargparse wraps errors raised while instantiating the classes
        cause = find_asc_error(error)
        if cause is None:
            raise
        raise cause from None
    return 0


def find_asc_error(error: BaseException, seen: set[int] | None = None) -> AscError | None:
    """The AscError behind a wrapped exception (cause, context, or a jsonargparse list of exceptions)."""
    seen = seen if seen is not None else set()
    if id(error) in seen:
        return None
    seen.add(id(error))
    if isinstance(error, AscError):
        return error
    nested = [error.__cause__, error.__context__, *(getattr(error, "exceptions", None) or [])]
    for inner in nested:
        if isinstance(inner, BaseException) and (found := find_asc_error(inner, seen)) is not None:
            return found
    return None


def config_error_line(message: str) -> str:
    """Condense a jsonargparse error (often a dozen lines) into one line naming the key and the problem."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    key = re.search(r'Parser key "([^"]+)"', message)
    nested = re.search(r"NestedArg\(key='([^']+)', val='([^']*)'\)", message)
    specific = [line for line in lines if re.search(r"not accepted|does not exist|Expected|invalid|unrecognized", line,
                                                    re.IGNORECASE) and "Union subtypes" not in line]
    where = key.group(1) if key else ""
    if nested:
        where = f"{where}.{nested.group(1)}" if where else nested.group(1)
    detail = specific[0] if specific else lines[0] if lines else "invalid arguments"
    if nested and not specific:
        detail = f"value {nested.group(2)!r} rejected"
    detail = detail.removeprefix(f'Parser key "{key.group(1)}": ' if key else "")
    return f"config key {where}: {detail}" if where else f"config: {detail}"


def fit_and_score(args: list[str], metric: str) -> float:
    """Run one ``asc fit`` in this process and return a logged metric of its last epoch (for sweeps)."""
    try:
        cli = _run_cli(args)
    except argparse.ArgumentError as error:
        raise AscError(config_error_line(str(error))) from None
    value = cli.trainer.callback_metrics.get(metric)
    if value is None:
        raise AscError(f"metric {metric!r} was not logged (logged: {', '.join(sorted(cli.trainer.callback_metrics))})")
    return float(value)


def _run_cli(args: list[str]) -> AscCLI:
    """One LightningCLI run; its W&B run is finished so that the next stage of a pipeline or sweep
    (same process) starts its own run instead of reusing this one."""
    try:
        return AscCLI(
            SceneModule,
            DCASEDataModule,
            subclass_mode_model=True,
            save_config_callback=LogConfigCallback,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "omegaconf", "exit_on_error": False, "allow_abbrev": False},
            auto_configure_optimizers=False,
            seed_everything_default=0,
            args=None if args == sys.argv[1:] else args,  # avoids Lightning's warning when run as a script
        )
    finally:
        _finish_wandb()


def _finish_wandb() -> None:
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()
