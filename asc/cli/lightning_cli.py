"""``asc fit|validate|test|predict``: LightningCLI with omegaconf configs and one folder per experiment."""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from asc.cli.checkpoint_defaults import checkpoint_defaults, option, options
from asc.data.datamodule import DCASEDataModule, data_root
from asc.data.layout import beside_data
from asc.errors import AscError
from asc.files import ensure_folder
from asc.training.stage import SceneModule
from asc.training.submission import SubmissionWriter


class LogConfigCallback(SaveConfigCallback):
    """Save the full config of a fit into the run folder and send it to the logger (W&B logs every key);
    a later ``asc test`` into the same folder keeps the config that trained the model."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({"config": self.config.as_dict()})


class AscCLI(LightningCLI):
    """LightningCLI that keeps everything of a run under ``--trainer.default_root_dir``.

    - ``data.features`` is the one owner of the input's shape: the model receives it (a link), so a
      network's bands and frames are never typed twice.
    - ``--ckpt_path`` is enough to test, validate or predict: the checkpoint's own stage, model
      arguments and data settings are the defaults, which a config file or ``--key=value`` overrides
      (Lightning's own behaviour is the reverse: the checkpoint overrode the command line).
    - ``asc predict`` writes the submission CSV (``SubmissionWriter``).
    """

    def __init__(self, *args: Any, args_for_defaults: list[str] | None = None, **kwargs: Any) -> None:
        command = args_for_defaults or []
        self.checkpoint_path = option(command, "--ckpt_path") or option(command, "--model.onnx_path")
        self.checkpoint_defaults = checkpoint_defaults(command)
        self.resumed_run = self.checkpoint_defaults.pop("logger_version", None)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.features", "model.init_args.features", apply_on="parse")
        parser.add_lightning_class_args(SubmissionWriter, "submission")
        if self.checkpoint_defaults:
            parser.set_defaults(self.checkpoint_defaults)

    def _parse_ckpt_path(self) -> None:
        """Replaced by ``checkpoint_defaults``: what the user writes wins over what the checkpoint holds."""

    def parse_arguments(self, parser, args) -> None:
        """Parse, then settle the run folder and check what can be checked before anything else happens
        (before the seed is set, the data read or a logger started)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        if subcommand == "fit":  # what the checkpoints will record, as `asc pipeline` compares it
            self.run_config = normalized_config(self._subcommand_parsers[subcommand].dump(config))
        root = run_folder(config.trainer.get("default_root_dir") or default_run_folder(config.model))
        config.trainer.default_root_dir = root
        ensure_folder(root, "trainer.default_root_dir")
        if subcommand == "predict" and config.get("return_predictions") is None:
            config.return_predictions = False  # the SubmissionWriter keeps what it needs, one row per clip
        if subcommand == "fit" and config.get("ckpt_path") and config.model.get("init_args"):
            config.model.init_args.init_ckpt = None  # resuming: the network comes from its own checkpoint
        if subcommand != "fit" and not config.get("ckpt_path") and not _is_onnx(config.model):
            raise AscError(f"--ckpt_path: not set; asc {subcommand} evaluates a trained network: give its checkpoint "
                           f"(RUN/checkpoints/last.ckpt) or an exported .onnx file")
        if self.checkpoint_defaults:
            self.check_checkpoint_stage(config)
            self.check_data_root(config)
        self.check_front_end(config, subcommand)
        if subcommand == "test":
            self.claim_report_folder(config)
        irs = (config.model.get("init_args") or {}).get("device_irs") if subcommand == "fit" else None
        if irs and not beside_data(irs, data_root(config.data.get("root"))).is_dir():
            where = "" if Path(irs).is_absolute() else f" (in the data root {data_root(config.data.get('root'))})"
            raise AscError(f"model.device_irs: {irs}: folder not found{where}")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.trainer.default_root_dir
        logger = config.trainer.get("logger")
        for entry in logger if isinstance(logger, list) else [logger]:
            if _is_wandb(entry):
                if entry.init_args.get("save_dir") in (None, ".") and not entry.init_args.get("dir"):
                    entry.init_args.save_dir = entry.init_args.dir = root
                if not entry.init_args.get("name"):
                    entry.init_args.name = Path(root).name
                if self.subcommand == "fit" and self.resumed_run and not entry.init_args.get("id"):
                    entry.init_args.id, entry.init_args.resume = self.resumed_run, "allow"  # one run, not two
        for callback in config.trainer.get("callbacks") or []:
            is_checkpoint = str(callback.get("class_path", "")).endswith("ModelCheckpoint")
            if is_checkpoint and not callback.init_args.get("dirpath"):
                callback.init_args.dirpath = str(Path(root) / "checkpoints")

    def before_fit(self) -> None:
        self.model.run_config = getattr(self, "run_config", None)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The trainer, writing checkpoints whole or not at all (``AtomicCheckpointIO``)."""
        from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

        from asc.training.checkpoint_io import AtomicCheckpointIO

        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # a user's own plugin is left alone
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if trainer.progress_bar_callback is None and trainer.is_global_zero:  # a log, not a terminal: lines
            from asc.training.console import ProgressLines

            trainer.callbacks.append(ProgressLines())
        for logger in trainer.loggers:
            # Lightning passes anonymous=None, which the pinned wandb answers with a deprecation warning in
            # every run ("The anonymous setting has no effect"); an unset value says nothing.
            init = getattr(logger, "_wandb_init", None)
            if isinstance(init, dict) and init.get("anonymous") is None:
                init.pop("anonymous", None)
        return trainer

    def check_checkpoint_stage(self, config: Any) -> None:
        """A checkpoint names its stage; a config naming another stage would load weights into the wrong
        network (Lightning's ``Missing key(s) in state_dict``)."""
        saved = (self.checkpoint_defaults.get("model") or {}).get("class_path")
        given = config.model.get("class_path")
        if saved and given and saved != given:
            raise AscError(f"--ckpt_path {self.checkpoint_path}: a checkpoint of {saved.rsplit('.', 1)[-1]}, but the "
                           f"config's model is {given.rsplit('.', 1)[-1]} (leave that stage's config out: the "
                           f"checkpoint names its own stage)")

    def check_data_root(self, config: Any) -> None:
        """The data a checkpoint was trained on is the default data of its test; when that folder is gone
        (or was stored relative by an older asc), another folder must be named rather than guessed."""
        stored = self.checkpoint_defaults.get("data.root")
        given = config.data.get("root")
        if stored is None or given != stored:
            return
        if not Path(stored).is_absolute():
            raise AscError(f"--ckpt_path {self.checkpoint_path}: it stores the relative data root {stored}, which "
                           f"names another folder from here; give --data.root DIR")
        if not Path(stored).is_dir():
            raise AscError(f"--ckpt_path {self.checkpoint_path}: its data root {stored} is gone; give --data.root DIR")

    def claim_report_folder(self, config: Any) -> None:
        """Before any data is read or cached: the test's report may not replace a report of another checkpoint,
        split or data set (the stage checks again when it starts testing, for tests run from Python)."""
        from asc.training.reports import claim_report_folder, measurement, report_folder

        split = config.data.get("test_split")
        tested = config.get("ckpt_path") or (config.model.get("init_args") or {}).get("onnx_path")
        claim_report_folder(report_folder(config.trainer.default_root_dir, split),
                            measurement(tested, split, data_root(config.data.get("root"))))

    def check_front_end(self, config: Any, subcommand: str | None) -> None:
        """Before any data is read: ``--ckpt_path``'s and ``model.init_ckpt``'s front end must be the one
        ``data.features`` describes (the stage reads its init checkpoint once, at fit start)."""
        from asc.compress.checkpoint import check_features, read_checkpoint, saved_features
        from asc.data.features import FeatureSettings

        given = FeatureSettings.from_dict(dict(config.data.features))
        if self.checkpoint_defaults:
            trained = {key.removeprefix("data.features."): value for key, value in self.checkpoint_defaults.items()
                       if key.startswith("data.features.")}
            check_features(FeatureSettings.from_dict(trained), given, str(self.checkpoint_path))
        init = (config.model.get("init_args") or {}).get("init_ckpt") if subcommand == "fit" else None
        if init:
            check_features(saved_features(read_checkpoint(init), init), given, f"model.init_ckpt: {init}")

    def after_test(self) -> None:
        folder = getattr(self.model, "report_dir", None)
        if folder is not None and self.trainer.is_global_zero:
            print(f"test report written to {Path(folder).resolve()}")

    def after_predict(self) -> None:
        writers = [c for c in self.trainer.callbacks if isinstance(c, SubmissionWriter) and c.path is not None]
        if writers and self.trainer.is_global_zero:
            print(f"submission written to {writers[0].path.resolve()}")


def default_run_folder(model: Any) -> str:
    """``runs/<stage>`` (``runs/tandem`` for TandemStage) when no run folder is named."""
    name = str((model or {}).get("class_path") or "default").rsplit(".", 1)[-1].removesuffix("Stage")
    return f"runs/{re.sub(r'(?<=[a-z])(?=[A-Z])', '_', name).lower()}"


def run_folder(root: str) -> str:
    """The run's folder; under a W&B sweep agent each trial gets its own (``ROOT/sweep-<id>/<run id>``), so
    agents on several machines or GPUs sharing one sweep never write into one another's folder."""
    sweep, run = os.environ.get("WANDB_SWEEP_ID"), os.environ.get("WANDB_RUN_ID")
    return str(Path(root) / f"sweep-{sweep}" / run) if sweep and run else root


def _is_onnx(model: Any) -> bool:
    return str((model or {}).get("class_path", "")).endswith(".OnnxModel")


def _is_wandb(entry: Any) -> bool:
    return entry is not None and hasattr(entry, "get") and str(entry.get("class_path", "")).endswith("WandbLogger")


def run_lightning(args: list[str]) -> int:
    """Run a LightningCLI subcommand (W&B's mode was settled by ``asc.cli.main.main``: asc.cli.tracking)."""
    run(args)
    return 0


#: Keys of a fit's config that do not shape its result: where it runs and writes, how it reports, what it
#: resumes from; left out of the config a checkpoint records (``normalized_config``).
INCIDENTAL_KEYS = ("ckpt_path", "trainer.default_root_dir", "trainer.logger", "trainer.enable_progress_bar",
                   "model.init_args.init_ckpt", "data.num_workers", "data.cache_workers", "data.cache_dir",
                   "data.progress")
#: Keys that only say where a fit stops: a run stopped by them continues exactly when resumed without them.
STOP_KEYS = ("trainer.max_steps", "trainer.max_time")


def normalized_config(dumped: str) -> dict[str, Any]:
    """A fit's resolved config (jsonargparse's YAML dump) as a plain dict, without ``INCIDENTAL_KEYS`` and with
    an absolute data root: two fits with equal records train the same network from the same start."""
    import yaml

    config = yaml.safe_load(dumped) or {}
    for key in INCIDENTAL_KEYS:
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    data = config.get("data")
    if isinstance(data, dict) and data.get("root"):
        data["root"] = str(Path(data["root"]).expanduser().resolve())
    return _without_nulls(config)


def _without_nulls(value: Any) -> Any:
    """Unset (None) entries left out, so that dumps that list them and dumps that skip them compare equal."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def resolved_config(args: list[str]) -> dict[str, Any]:
    """The normalized config a ``fit`` command line resolves to, without running it (``--print_config``)."""
    import contextlib
    import io

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            run([*args, "--print_config"])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    return normalized_config(printed.getvalue())


def run(args: list[str]) -> AscCLI:
    """One Lightning command (fit, validate, test, predict) in this process, as ``asc`` runs it; ``asc pipeline``
    and ``asc sweep`` call it for each stage or trial. A user's mistake surfaces as an AscError."""
    check_config_files(args)
    try:
        return _run_cli(args)
    except argparse.ArgumentError as error:
        raise AscError(config_error_line(str(error))) from None
    except Exception as error:  # jsonargparse wraps errors raised while instantiating the classes
        cause = find_asc_error(error)
        if cause is None:
            raise
        raise cause from None


def check_config_files(args: list[str]) -> None:
    """Every ``--config FILE`` exists and is valid YAML, said with the file's name and line (jsonargparse's
    own message names neither)."""
    import yaml

    for path in options(args, "--config"):
        if not Path(path).is_file():
            raise AscError(f"--config {path}: file not found")
        try:
            yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else path
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise AscError(f"{where}: not valid YAML ({problem})") from None
        except (OSError, UnicodeDecodeError) as error:
            raise AscError(f"--config {path}: cannot be read ({error})") from None


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
    cli = run(args)
    value = cli.trainer.callback_metrics.get(metric)
    if value is None:
        raise AscError(f"metric {metric!r} was not logged (logged: {', '.join(sorted(cli.trainer.callback_metrics))})")
    return float(value)


def _run_cli(args: list[str]) -> AscCLI:
    """One LightningCLI run; its W&B run is finished so that the next stage of a pipeline or sweep
    (same process) starts its own run instead of reusing this one."""
    try:
        with warnings.catch_warnings():  # asc pipeline and asc sweep run several stages from one command line
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            return AscCLI(
                SceneModule,
                DCASEDataModule,
                args_for_defaults=args,
                subclass_mode_model=True,
                save_config_callback=LogConfigCallback,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"parser_mode": "omegaconf", "exit_on_error": False, "allow_abbrev": False},
                auto_configure_optimizers=False,
                trainer_defaults={"enable_progress_bar": sys.stderr.isatty()},  # bars in a terminal, not in a log
                seed_everything_default=0,
                args=None if args == sys.argv[1:] else args,  # avoids Lightning's warning when run as a script
            )
    finally:
        _finish_wandb()


def _finish_wandb() -> None:
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()
