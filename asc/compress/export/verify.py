"""Does an exported file compute what the PyTorch network computes? Predicted classes and logits compared on the
evaluate split (or random log-mels), with tolerances that allow int8's one-step rounding differences; and the
sidecar that tells a deployer which front end the file takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from asc.data.features import FeatureSettings
from asc.data.layout import SCENES

#: Share of clips on which onnxruntime must predict the class PyTorch predicts.
MIN_AGREEMENT = 0.995


#: Logit difference a correct export may show, int8 and float. In int8 an activation now and then lands
#: one quantization step apart (float rounding in ResNorm, batch norm and the moments differs between
#: onnxruntime and PyTorch): up to 0.1 was measured on the demo's 540 clips, with a median below 0.01.
#: A clip whose two best classes are closer than this is a near-tie: its class may flip in a correct
#: export, so it does not count against the gate (5 exports of one QAT checkpoint on random log-mels
#: gave 100.00, 99.61, 100.00, 99.61, 99.61 % plain agreement; a 99.5 % gate failed now and then).
LOGIT_TOLERANCE = {"int8": 0.25, "float": 1e-3}


#: The median logit difference may not exceed this share of the tolerance (a wrong scale moves them all).
TYPICAL_SHARE = 0.2


@dataclass(frozen=True)
class Agreement:
    """onnxruntime against PyTorch: classes on the clips whose top-2 margin exceeds the tolerance, and logits."""

    clips: int
    decisive: int
    disagree: int
    max_difference: float
    median_difference: float
    tolerance: float

    @property
    def share(self) -> float:
        return 1.0 - self.disagree / max(self.decisive, 1)

    @property
    def correct(self) -> bool:
        return self.share >= MIN_AGREEMENT and self.median_difference <= TYPICAL_SHARE * self.tolerance

    def __str__(self) -> str:
        return (f"onnxruntime vs PyTorch on {self.clips} clips: predicted classes agree on {100 * self.share:.2f} % "
                f"of the {self.decisive} clips whose top-2 margin exceeds {self.tolerance:g} "
                f"(near-ties left out), max |logit difference| {self.max_difference:.2e}, "
                f"median {self.median_difference:.2e}")


def compare(reference: np.ndarray, ours: np.ndarray, quantized: bool) -> Agreement:
    """Agreement of two logit arrays ``(clips, classes)``; PyTorch's margins decide which clips are decisive."""
    tolerance = LOGIT_TOLERANCE["int8" if quantized else "float"]
    top2 = np.sort(reference, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > tolerance
    disagree = decisive & (reference.argmax(1) != ours.argmax(1))
    difference = np.abs(reference - ours)
    return Agreement(len(reference), int(decisive.sum()), int(disagree.sum()), float(difference.max()),
                     float(np.median(difference)), tolerance)


def front_end(features: FeatureSettings, bands: list[int] | None, complexity: dict) -> dict:
    """What a deployer needs to reproduce the network's input from audio: the full log-mel of these
    settings (the network selects its ``bands`` itself)."""
    return {
        "input": {"name": "logmel", "shape": ["batch", 1, features.n_mels, features.n_frames], "dtype": "float32"},
        "output": {"name": "logits", "classes": list(SCENES)},
        "front_end": {**asdict(features), "resampler": "soxr_hq", "window": "hann", "center": True,
                      "mel": "librosa.filters.mel(htk=False, norm='slaney')", "log": "log(mel + log_offset)",
                      "normalisation": "none: the network normalises (ResNorm, moment batch norm)"},
        "bands": bands,
        "bands_note": "selected inside the network (a Gather on the input, then each row times its feature-"
                      "selection gain); feed all n_mels bands",
        "complexity": complexity,
    }


def verify(model, path: Path, shape: tuple[int, int], root: str | None, features: FeatureSettings) -> Agreement:
    """onnxruntime against PyTorch on full log-mels: the evaluate split with ``root``, else random ones."""
    return verify_all(model, [path], shape, root, features)[0]


def verify_all(model, paths: Sequence[Path], shape: tuple[int, int], root: str | None,
               features: FeatureSettings) -> list[Agreement]:
    """:func:`verify` for several exports of one model, on the same inputs and PyTorch logits."""
    from asc.compress import qat
    from asc.compress.export import onnx as onnx_export

    inputs = list(_evaluate_batches(root, features)) if root else [torch.randn(256, 1, *shape) * 3]
    with torch.no_grad():
        references = np.concatenate([model(x).numpy() for x in inputs])
    quantized = qat.is_quantized(model)
    return [compare(references, np.concatenate([onnx_export.run_onnx(path, x.numpy().astype(np.float32))
                                                for x in inputs]), quantized) for path in paths]


def _evaluate_batches(root: str, features: FeatureSettings):
    """The evaluate split's log-mels, computed with the checkpoint's own front-end settings."""
    from asc.data.datamodule import DCASEDataModule

    data = DCASEDataModule(root, batch_size=256, features=features, test_split="evaluate", progress=False)
    data.prepare_data()
    data.setup("test")
    for batch in data.test_dataloader():
        yield batch["x"]
