"""What several test modules share: the built-in configs shrunk for tests, command-line runs that must
succeed or fail with one line, small WAVs and the hand-written dataset, and tiny networks.

Test modules import from here (and never from one another); fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from torch import nn

from asc.cli.main import main
from asc.compress import qat
from asc.compress.checkpoint import network_checkpoint
from asc.data.features import FeatureSettings
from asc.models import BCResNet, MomentsLinear, Tandem

REPO = Path(__file__).parents[1]
CONFIGS = REPO / "configs" / "builtin"
FIXTURE = Path(__file__).parent / "fixtures" / "tau_mini"
#: One quick epoch on the hand-written dataset.
FAST = ["--trainer.max_epochs=1", "--data.batch_size=4", "--data.cache_workers=0", "--data.progress=false",
        "--trainer.log_every_n_steps=1"]


def config(stage: str) -> list[str]:
    """A built-in stage's layered config: the report's recipe, then the built-in's differences."""
    return layered(CONFIGS, stage)


def layered(recipe: Path, stage: str) -> list[str]:
    """``--config`` for every file of a recipe's stage, in order (``asc.cli.pipeline.stage_configs``)."""
    from asc.cli.pipeline import stage_configs

    return stage_configs(recipe, stage)


def printed_config(capsys: pytest.CaptureFixture, args: list[str]) -> dict:
    """The config ``asc fit ARGS --print_config`` prints (it exits 0)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as printed:
        main(["fit", *args, "--print_config"])
    assert printed.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def changed(base: dict, other: dict, prefix: str = "") -> set[str]:
    """The dotted keys whose values differ between two nested configs."""
    found: set[str] = set()
    for key in set(base) | set(other):
        a, b = base.get(key), other.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found |= changed(a, b, f"{prefix}{key}.")
        elif a != b:
            found.add(f"{prefix}{key}")
    return found


def run(*args: str) -> None:
    """An ``asc`` command that must succeed."""
    assert main(list(args)) == 0


def one_error_line(capsys: pytest.CaptureFixture, *args: str) -> str:
    """An ``asc`` command that must fail with exit status 2 and exactly one line on stderr; that line."""
    assert main(list(args)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def write_tone(path: Path, seed: int, *, rate: int = 44_100, seconds: float = 1.0, channels: int = 1) -> None:
    """A 24-bit WAV with a seed-dependent tone plus noise (what the hand-written fixture's files hold)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    signal = 0.3 * np.sin(2 * np.pi * (200 + 150 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    data = np.repeat(signal[:, None], channels, axis=1) if channels > 1 else signal
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, data.astype(np.float32), rate, subtype="PCM_24")


def make_mini_root(root: Path) -> Path:
    """A copy of tests/fixtures/tau_mini (hand-written CSVs) at ``root`` with its WAVs written."""
    shutil.copytree(FIXTURE, root)
    names = [line.split("\t")[0] for line in (root / "meta.csv").read_text().splitlines()[1:]]
    for seed, name in enumerate(names):
        write_tone(root / name, seed)
    return root


def tiny_configs(folder: Path) -> Path:
    """The built-in recipe shrunk to seconds, as a recipe of its own on configs/builtin (what a user's own layer
    looks like): width-1 BC-ResNet, 1 + 1 ADMM epochs, small limits."""
    folder.mkdir()
    (folder / "recipe.yaml").write_text(yaml.safe_dump({"configs": str(CONFIGS)}))
    base = {"trainer": {"log_every_n_steps": 1}, "data": {"batch_size": 4, "cache_workers": 0, "progress": False}}
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    tiny = {"linear": {}, "tandem": {"width": 1},
            "feature_selection": {"keep_bands": 32, "admm": {"update_every": 1, "warmup_steps": 0,
                                                             "update_epochs": 1}},  # one step per epoch here
            "pruning": {"max_params": 8_000, "max_macs": 1_000_000,  # the tandem has 10,385
                        "admm": {"update_every": 1, "update_epochs": 1}},
            "qat": {"calibration_batches": 1}}
    for stage, init in tiny.items():
        epochs = 2 if stage in ("feature_selection", "pruning", "qat") else 1
        config = {"trainer": {"max_epochs": epochs}, **({"model": {"init_args": init}} if init else {})}
        (folder / f"{stage}.yaml").write_text(yaml.safe_dump(config))
    return folder


def tandem_checkpoint(path: Path, features: FeatureSettings = FeatureSettings()) -> Path:
    """An untrained width-1 tandem of the front end ``features`` as a stage checkpoint (no training needed)."""
    torch.manual_seed(0)
    model = Tandem(MomentsLinear(n_bands=features.n_mels), BCResNet(n_bands=features.n_mels, width=1), zero_init=False)
    torch.save(network_checkpoint(model, features), path)
    return path


N_BANDS, N_FRAMES = 64, 34

#: onnxruntime vs PyTorch fake quantization. Both compute the same int8 grid, but float rounding in
#: the float parts (ResNorm, BN, moments) now and then puts an activation one int8 step apart, which
#: then propagates. Measured on this model (6 seeds x input scales 1, 2, 4 x max/percentile, 256 clips):
#: max |diff| 0.7e-2 to 3.1e-2, mean <= 3.2e-4, argmax agreement >= 99.6 % (100 % for the case below).
MAX_LOGIT_DIFF = 5e-2
MEAN_LOGIT_DIFF = 1e-3
MIN_AGREEMENT = 0.995


def inputs(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 1, N_BANDS, N_FRAMES, generator=torch.Generator().manual_seed(seed))


def tandem(seed: int = 0) -> Tandem:
    """A tiny float tandem whose batch-norm statistics have seen data, as a trained model's have."""
    torch.manual_seed(seed)
    model = Tandem(MomentsLinear(N_BANDS), BCResNet(n_bands=N_BANDS, width=1), zero_init=False)
    with torch.no_grad():
        model.train()
        for step in range(4):
            model(inputs(32, 100 + step))
    return model.eval()


def calibrate(model: nn.Module, method: str = "max") -> nn.Module:
    x = inputs(64, 1)

    def forward_loop(m: nn.Module) -> None:
        for i in range(0, len(x), 16):
            m(x[i:i + 16])

    return qat.quantize(model, forward_loop, method)
