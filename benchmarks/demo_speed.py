"""What the 15-minute demo's choices rest on (docs/benchmarks.md, "A 15-minute demo"), each measured side by side.

- Batch size: the per-clip cost of the tandem stage's own training step at batch 32 against batch 64.
  On a small CPU the Mod-8's first-stage activations (batch x 160 channels x 128 x 17 floats) stop
  fitting the cache somewhere between the two, so a clip costs less in the smaller batch.
- ResNorm: its training form (a group norm with one group per frequency bin, ``ResNorm.instance_norm``)
  against the same statistics written as the formula (mean, var, subtract, divide), forward and
  backward on a Mod-8 first-stage activation; the formula is what the exported graph keeps.
"""

from __future__ import annotations

import torch

from asc.data.features import FeatureSettings
from asc.models.resnorm import ResNorm
from benchmarks.report import Row
from benchmarks.timing import alternate
from benchmarks.training import step_function, tandem_stage

SECTION = "demo choices"
BATCHES = (32, 64)
FUSED = "ResNorm fwd+bwd, group norm"
FORMULA = "ResNorm fwd+bwd, formula"


def step_name(batch: int) -> str:
    return f"train step, batch {batch}"


def batch_rows(width: float, repeats: int, batches: tuple[int, ...] = BATCHES) -> list[Row]:
    """Clips/s of one training step at each batch size, on random log-mels of the front end's shape."""
    features = FeatureSettings()
    largest = max(batches)
    x = torch.randn(largest, 1, features.n_mels, features.n_frames)
    labels = torch.randint(0, 10, (largest,))
    step = step_function(tandem_stage(width))
    inputs = {batch: {"x": x[:batch], "label": labels[:batch]} for batch in batches}
    timings = alternate({step_name(batch): (lambda batch=batch: step(inputs[batch])) for batch in batches},
                        repeats=repeats, warmup=1)
    baseline = step_name(largest)
    return [
        Row(SECTION, step_name(batch), timings[step_name(batch)].rate(batch), "clips/s",
            None if batch == largest else baseline,
            note=f"tandem width {width:g}, {torch.get_num_threads()} torch threads" if batch == largest else "")
        for batch in batches
    ]


def resnorm_rows(repeats: int, shape: tuple[int, int, int, int] = (32, 80, 128, 17)) -> list[Row]:
    """Calls/s of ResNorm's training form against the formula, forward and backward on one activation."""
    resnorm = ResNorm()
    x = torch.randn(shape, requires_grad=True)
    upstream = torch.randn(shape)

    def formula() -> None:
        (resnorm.lam * x + resnorm.formula_norm(x)).backward(upstream)

    timings = alternate({FUSED: lambda: resnorm(x).backward(upstream), FORMULA: formula}, repeats=repeats, warmup=1)
    note = f"activation {'x'.join(map(str, shape))} (Mod-8 stage 1 at batch {shape[0]})"
    return [Row(SECTION, FUSED, timings[FUSED].rate(1), "calls/s", FORMULA, note=note),
            Row(SECTION, FORMULA, timings[FORMULA].rate(1), "calls/s")]
