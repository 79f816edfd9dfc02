"""Audio I/O: read a listed WAV, check it, and bring it to the feature front end's rate and length.

soundfile reads the 24-bit PCM of the real set; soxr (through librosa) resamples 44.1 -> 16 kHz.
Recoverable deviations (another sample rate, stereo, a length other than 1 s) are fixed and
counted, so the caller can print one summary warning; unusable audio raises AscError naming the file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np
import soundfile

from asc.data.layout import SAMPLE_RATE
from asc.errors import AscError

RESAMPLE_TYPE = "soxr_hq"


@dataclass
class AudioIssues:
    """The clips that needed fixing, by kind, for one summary warning; a clip met twice (every epoch of
    on-the-fly features, or in several processes) counts once."""

    clips: dict[str, set[str]] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> Counter:
        return Counter({kind: len(names) for kind, names in self.clips.items()})

    def add(self, kind: str, filename: str) -> None:
        self.clips.setdefault(kind, set()).add(filename)
        self.first.setdefault(kind, filename)

    def merge(self, other: AudioIssues) -> None:
        for kind, names in other.clips.items():
            self.clips.setdefault(kind, set()).update(names)
            self.first.setdefault(kind, other.first[kind])

    def summary(self) -> str | None:
        """One line such as '3 clips resampled (first audio/x.wav); 1 stereo clip downmixed (...)', or None."""
        if not self.clips:
            return None
        counts = self.counts
        parts = [f"{counts[kind]} clip(s) {kind} (first {self.first[kind]})" for kind in sorted(counts)]
        return "audio fixed while loading: " + "; ".join(parts)


def note_issues(channels: int, rate: int, frames: int, seconds: float, issues: AudioIssues, name: str) -> None:
    """Record what loading will repair: stereo, another sample rate, another length."""
    if channels > 1:
        issues.add("downmixed from stereo", name)
    if rate != SAMPLE_RATE:
        issues.add(f"at {rate} Hz instead of {SAMPLE_RATE} Hz", name)
    if frames != round(rate * seconds):
        issues.add(f"padded or cropped to {seconds:g} s", name)


def inspect_clip(path: Path, *, seconds: float, issues: AudioIssues, name: str) -> None:
    """What loading ``path`` will repair, from its header alone (no decoding): for on-the-fly features,
    whose clips are loaded in worker processes, every epoch."""
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise AscError(f"{path}: unreadable audio ({error})") from None
    note_issues(info.channels, info.samplerate, info.frames, seconds, issues, name)


def load_clip(
    path: Path,
    *,
    sample_rate: int,
    seconds: float = 1.0,
    issues: AudioIssues | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Return a mono float32 clip of exactly ``seconds`` at ``sample_rate``.

    The dataset is 44.1 kHz mono 1 s; anything else is repaired and recorded in ``issues``.
    """
    name = name or str(path)
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise AscError(f"{path}: unreadable audio ({error})") from None
    if audio.size == 0:
        raise AscError(f"{path}: audio has no samples")
    if not np.isfinite(audio).all():
        raise AscError(f"{path}: audio contains NaN or inf samples")
    note_issues(audio.shape[1], rate, audio.shape[0], seconds, issues if issues is not None else AudioIssues(), name)
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate, res_type=RESAMPLE_TYPE)
    return fit_length(audio.astype(np.float32, copy=False), round(sample_rate * seconds))


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad or crop at the end to ``length`` samples."""
    if audio.shape[0] >= length:
        return audio[:length]
    return np.pad(audio, (0, length - audio.shape[0]))




