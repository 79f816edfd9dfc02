"""What a checkpoint (or an exported ONNX file and its sidecar) supplies as the defaults of an ``asc`` command.

``--ckpt_path`` is enough to test, validate or predict: the checkpoint's stage, model arguments, data settings
and run folder become the defaults, which a config file or ``--key=value`` overrides.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from asc.errors import AscError


def checkpoint_defaults(args: list[str]) -> dict[str, Any]:
    """Defaults taken from the checkpoint of ``--ckpt_path`` (test, validate, predict, resumed fit): its
    stage and model arguments, its data settings (front end included), and its run folder."""
    path = option(args, "--ckpt_path") or option(args, "--model.onnx_path")
    if not path or not args or args[0] not in ("fit", "validate", "test", "predict"):
        return {}
    if path.endswith(".onnx"):
        return onnx_defaults(Path(path))
    from asc.compress.checkpoint import ASC_KEY, read_checkpoint, saved_features

    checkpoint = read_checkpoint(path)
    model = {key: value for key, value in checkpoint.get("hyper_parameters", {}).items() if not key.startswith("_")}
    stage = checkpoint[ASC_KEY].get("stage") or checkpoint.get("hyper_parameters", {}).get("_class_path")
    data = checkpoint.get("datamodule_hyper_parameters", {})
    defaults: dict[str, Any] = {f"data.{key}": data[key] for key in CHECKPOINT_DATA_KEYS if key in data}
    features = asdict(saved_features(checkpoint, path))
    defaults.update({f"data.features.{key}": value for key, value in features.items()})
    if stage:
        defaults["model"] = {"class_path": stage, "init_args": _accepted(stage, model)}
    if args[0] == "fit" and checkpoint[ASC_KEY].get("logger_version"):
        defaults["logger_version"] = checkpoint[ASC_KEY]["logger_version"]
    folder = Path(path).parent
    defaults["trainer.logger"] = False  # a config file names the experiment's logger; the checkpoint does not
    defaults["trainer.default_root_dir"] = str(folder.parent if folder.name == "checkpoints" else folder)
    return defaults


def _accepted(class_path: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments the stage's class takes today (a checkpoint of another version may hold others)."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise AscError(f"--ckpt_path: the checkpoint's stage {class_path} does not exist in this asc") from None
    names = {parameter for klass in cls.__mro__ if "__init__" in vars(klass)
             for parameter in inspect.signature(klass.__init__).parameters}
    return {key: value for key, value in arguments.items() if key in names}


def onnx_defaults(path: Path) -> dict[str, Any]:
    """``asc test --ckpt_path model.onnx``: the report goes next to the file, the front end of its sidecar."""
    import json

    sidecar = path.with_suffix(".json")
    front_end = json.loads(sidecar.read_text()).get("front_end", {}) if sidecar.is_file() else {}
    from asc.data.features import FeatureSettings

    features = asdict(FeatureSettings.from_dict(front_end))
    return {"trainer.logger": False, "trainer.default_root_dir": str(path.parent),
            **{f"data.features.{key}": value for key, value in features.items()}}


#: Data settings that belong to the experiment (not to the machine: workers, cache folder, progress bars).
CHECKPOINT_DATA_KEYS = ("root", "batch_size", "eval_batch_size", "val_split", "holdout_fraction", "test_split",
                        "cache", "seed")


def option(args: list[str], name: str) -> str | None:
    """The last value of ``--name value`` or ``--name=value`` in a command line (the one that wins)."""
    values = options(args, name)
    return values[-1] if values else None


def options(args: list[str], name: str) -> list[str]:
    """Every value of ``--name value`` or ``--name=value`` in a command line, in order."""
    values = []
    for position, arg in enumerate(args):
        if arg == name and position + 1 < len(args):
            values.append(args[position + 1])
        elif arg.startswith(f"{name}="):
            values.append(arg.split("=", 1)[1])
    return values
