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


#: Mel filters per block of :class:`LogMel`'s banded projection (see :func:`mel_blocks`).
FILTERS_PER_BLOCK = 16


def mel_blocks(basis: Tensor, filters: int = FILTERS_PER_BLOCK) -> list[tuple[int, int, Tensor]]:
    """The mel matrix as dense blocks of ``filters`` consecutive filters over the FFT bins they touch.

    Each slaney filter is a triangle over a few neighbouring bins (3 at the bottom of the default 256
    bands, 25 at the top), so the ``(n_mels, bins)`` matrix is banded: 2,065 of its 266,496 entries are
    non-zero. A block is ``(first bin, last bin + 1, weights)``, weights ``(2 * bins, filters)`` with rows
    in equal pairs, for the squared real and imaginary parts of one bin side by side. With 16 filters a
    block the blocks span 6.6 % of the dense matrix (17,520 of 266,496 products per frame; 8 and 32 filters
    a block measured slower, the dense product 4x slower).
    """
    touched = basis != 0
    blocks = []
    for first in range(0, basis.shape[0], filters):
        rows = basis[first : first + filters]
        used = touched[first : first + filters].any(dim=0).nonzero().flatten()
        start, stop = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
        blocks.append((start, stop, rows[:, start:stop].T.repeat_interleave(2, dim=0).contiguous()))
    return blocks


class LogMel(nn.Module):
    """Waveform ``(..., samples)`` at ``settings.sample_rate`` -> log-mel ``(..., n_mels, frames)``.

    The STFT is ``torch.stft`` (float32, the window and padding of librosa's); the power spectrum and the
    slaney projection are one step: the squares of the spectrum's real and imaginary parts, read as one
    contiguous row per frame, times the banded mel matrix in blocks (:func:`mel_blocks`). Against
    ``mel_basis @ (re² + im²)`` this skips a strided pass over the complex spectrum and 93 % of the
    matrix product's zeros; the sums are the same up to float32 rounding (below 1e-6 in log units).
    """

    def __init__(self, settings: FeatureSettings | None = None) -> None:
        super().__init__()
        self.settings = s = settings or FeatureSettings()
        if s.fft_size < s.win_length:
            raise ValueError(f"n_fft={s.fft_size} is shorter than the window ({s.win_length} samples)")
        self.register_buffer("mel_basis", mel_basis(s), persistent=False)
        self.register_buffer("window", torch.hann_window(s.win_length), persistent=False)
        self.blocks = []
        for index, (start, stop, weights) in enumerate(mel_blocks(self.mel_basis)):
            self.register_buffer(f"mel_block_{index}", weights, persistent=False)
            self.blocks.append((2 * start, 2 * stop, f"mel_block_{index}"))

    def forward(self, waveform: Tensor) -> Tensor:
        s = self.settings
        clips = waveform.reshape(-1, waveform.shape[-1])
        half = s.fft_size // 2
        centred_here = s.pad_mode == "reflect" and clips.shape[-1] > half
        if centred_here:  # the STFT's reflect padding as two flipped copies: 3x faster than torch's reflect pad
            clips = torch.cat([clips[:, 1 : half + 1].flip(1), clips, clips[:, -half - 1 : -1].flip(1)], dim=1)
        spec = torch.stft(clips, n_fft=s.fft_size, hop_length=s.hop_length, win_length=s.win_length, window=self.window,
                          center=not centred_here, pad_mode=s.pad_mode, return_complex=True)
        # (clips, frames, 2 * bins): re² and im² of each bin side by side, one contiguous row per frame
        squares = torch.view_as_real(spec.transpose(1, 2).contiguous()).square().flatten(-2)
        mel = torch.cat([squares[..., start:stop] @ getattr(self, name) for start, stop, name in self.blocks], dim=-1)
        logmel = torch.empty(mel.shape[0], mel.shape[2], mel.shape[1], dtype=mel.dtype, device=mel.device)
        torch.add(mel.transpose(1, 2), s.log_offset, out=logmel)  # (clips, n_mels, frames), contiguous
        return logmel.log_().reshape(*waveform.shape[:-1], *logmel.shape[-2:])
