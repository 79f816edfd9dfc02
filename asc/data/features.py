"""Feature front end of the report (§3.2): 256-band log-mel at 16 kHz, and global moments over time.

The log-mel runs ``torch.stft`` with a slaney mel matrix from ``librosa.filters.mel`` so that it
equals librosa's own pipeline (see tests) while staying a torch op that batches and exports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

import librosa
import torch
from torch import Tensor, nn

#: Bumped whenever the feature computation changes, so every cache built before is rebuilt.
FEATURE_VERSION = 1


@dataclass(frozen=True)
class FeatureSettings:
    """Every setting of the log-mel front end; a cache is keyed on all of them.

    The report's "window length of 130ms, overlap of 30ms" is read as a 130 ms window with a
    30 ms hop (34 frames per 1-s clip): only then do its MAC figures add up (docs/method.md).
    """

    sample_rate: int = 16_000
    n_mels: int = 256
    win_ms: float = 130.0
    hop_ms: float = 30.0
    n_fft: int | None = None
    fmin: float = 0.0
    fmax: float | None = None
    pad_mode: str = "reflect"
    log_offset: float = 1e-5
    clip_seconds: float = 1.0

    @classmethod
    def from_dict(cls, values: dict) -> FeatureSettings:
        """The settings among ``values`` (a checkpoint's or an ONNX sidecar's record; other keys describe
        the front end in words and are left out)."""
        return cls(**{field.name: values[field.name] for field in fields(cls) if field.name in values})

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def fft_size(self) -> int:
        return self.n_fft or self.win_length

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def n_frames(self) -> int:
        """Frames per clip with a centred STFT."""
        return 1 + self.clip_samples // self.hop_length

    def key(self) -> str:
        """A short stable hash of the settings and the feature code version."""
        payload = json.dumps({"version": FEATURE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def mel_basis(settings: FeatureSettings) -> Tensor:
    """The slaney mel filterbank ``(n_mels, n_fft // 2 + 1)`` of the front end (librosa's own matrix)."""
    s = settings
    return torch.from_numpy(librosa.filters.mel(sr=s.sample_rate, n_fft=s.fft_size, n_mels=s.n_mels, fmin=s.fmin,
                                                fmax=s.fmax, htk=False, norm="slaney"))


class LogMel(nn.Module):
    """Waveform ``(..., samples)`` at ``settings.sample_rate`` -> log-mel ``(..., n_mels, frames)``."""

    def __init__(self, settings: FeatureSettings | None = None) -> None:
        super().__init__()
        self.settings = s = settings or FeatureSettings()
        if s.fft_size < s.win_length:
            raise ValueError(f"n_fft={s.fft_size} is shorter than the window ({s.win_length} samples)")
        self.register_buffer("mel_basis", mel_basis(s), persistent=False)
        self.register_buffer("window", torch.hann_window(s.win_length), persistent=False)

    def forward(self, waveform: Tensor) -> Tensor:
        s = self.settings
        spec = torch.stft(
            waveform.reshape(-1, waveform.shape[-1]),
            n_fft=s.fft_size,
            hop_length=s.hop_length,
            win_length=s.win_length,
            window=self.window,
            center=True,
            pad_mode=s.pad_mode,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        logmel = torch.log(self.mel_basis @ power + s.log_offset)
        return logmel.reshape(*waveform.shape[:-1], *logmel.shape[-2:])


