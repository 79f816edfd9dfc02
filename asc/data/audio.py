"""Audio I/O: read a listed WAV, check it, and bring it to the feature front end's rate and length.

The real set's 24-bit PCM WAVs are decoded here with numpy (:func:`read_audio`, bit for bit soundfile's
float32); every other file goes to soundfile. soxr resamples 44.1 -> 16 kHz as librosa's ``soxr_hq`` does,
the same numbers as ``librosa.load``. Recoverable deviations (another sample rate, stereo, a length other
than 1 s) are fixed and counted, so the caller can print one summary warning; unusable audio raises
AscError naming the file.
"""

from __future__ import annotations

import io
import math
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import soxr

from asc.data.layout import SAMPLE_RATE
from asc.errors import AscError

#: librosa's name of the resampler (``librosa.load``/``librosa.resample`` with ``res_type``); soxr's quality "HQ".
RESAMPLE_TYPE = "soxr_hq"
#: The tail of the WAVE_FORMAT_EXTENSIBLE sub-format GUID shared by integer PCM (and IEEE float, ...).
_KSDATAFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")
_WAVE_FORMAT_PCM, _WAVE_FORMAT_EXTENSIBLE = 1, 0xFFFE


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


def pcm24_layout(data: bytes) -> tuple[int, int, int, int] | None:
    """``(rate, channels, offset, frames)`` of a RIFF/WAVE file of 24-bit integer PCM whose data chunk lies
    whole in ``data``, or None for anything else (which soundfile then reads, and judges)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    fmt, position = None, 12
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "little")
        body = position + 8
        if chunk == b"fmt " and 16 <= size <= len(data) - body:
            fmt = _pcm_format(data[body : body + size])
        elif chunk == b"data":
            if fmt is None:
                return None
            rate, channels, bits = fmt
            block = 3 * channels
            whole = bits == 24 and rate > 0 and channels > 0 and size % block == 0 and body + size <= len(data)
            return (rate, channels, body, size // block) if whole else None
        position = body + size + (size & 1)  # chunks are word-aligned
    return None


def _pcm_format(fmt: bytes) -> tuple[int, int, int] | None:
    """``(rate, channels, bits)`` of a ``fmt `` chunk of integer PCM (plain or extensible), else None."""
    tag, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _KSDATAFORMAT_TAIL or struct.unpack_from("<H", fmt, 18)[0] != bits:
            return None  # not PCM, or fewer valid bits than the container's: soundfile's call
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if tag != _WAVE_FORMAT_PCM or block != channels * bits // 8:
        return None
    return rate, channels, bits


def decode_pcm24(data: bytes, offset: int, frames: int, channels: int) -> np.ndarray:
    """``(frames, channels)`` float32 of the 24-bit little-endian samples at ``offset``: each read as the
    int32 that starts one byte earlier with its low byte cleared (the sample shifted left by 8), times 2^-31,
    which is how libsndfile converts 24-bit PCM to float (exact: 24 significant bits fit a float32)."""
    count = frames * channels
    shifted = np.ndarray((count,), dtype="<i4", buffer=data, offset=offset - 1, strides=(3,))
    audio = np.bitwise_and(shifted, np.int32(-256)).astype(np.float32)
    audio *= np.float32(2.0**-31)
    return audio.reshape(frames, channels)


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """``(frames, channels)`` float32 samples in [-1, 1) and the rate: the 24-bit PCM WAVs of the real set
    decoded with numpy (a third of soundfile's time), any other file by soundfile."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        layout = pcm24_layout(data)
        if layout is None:  # soundfile decodes the bytes already read (no second read of the file)
            return soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise AscError(f"{path}: unreadable audio ({error})") from None
    rate, channels, offset, frames = layout
    return decode_pcm24(data, offset, frames, channels), rate


def decode_clip(path: Path, *, seconds: float, issues: AudioIssues, name: str) -> tuple[np.ndarray, int]:
    """A checked mono float32 clip at its own rate, with what loading repairs recorded in ``issues``."""
    audio, rate = read_audio(path)
    if audio.size == 0:
        raise AscError(f"{path}: audio has no samples")
    if not np.isfinite(audio).all():
        raise AscError(f"{path}: audio contains NaN or inf samples")
    note_issues(audio.shape[1], rate, audio.shape[0], seconds, issues, name)
    return (audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1)), rate


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """A mono clip from ``rate`` to ``target`` as ``librosa.resample(res_type="soxr_hq")`` does it, without
    its checks and ``apply_along_axis`` (a third of its time): soxr's HQ filter, then cut or padded to
    ``ceil(samples * target / rate)``."""
    if rate == target:
        return audio
    samples = math.ceil(audio.shape[0] * float(target) / rate)
    return fit_length(soxr.resample(audio, rate, target, quality=RESAMPLE_TYPE), samples)


def load_clips(paths: Sequence[Path], *, sample_rate: int, seconds: float = 1.0, issues: AudioIssues | None = None,
               names: Sequence[str] | None = None) -> np.ndarray:
    """``(len(paths), samples)`` float32: :func:`load_clip` of each path, with one ``issues`` for all."""
    issues = issues if issues is not None else AudioIssues()
    names = names if names is not None else [str(path) for path in paths]
    clips = np.empty((len(paths), round(sample_rate * seconds)), dtype=np.float32)
    for row, (path, name) in enumerate(zip(paths, names, strict=True)):
        clips[row] = load_clip(path, sample_rate=sample_rate, seconds=seconds, issues=issues, name=name)
    return clips


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
    issues = issues if issues is not None else AudioIssues()
    audio, rate = decode_clip(path, seconds=seconds, issues=issues, name=name or str(path))
    return fit_length(resample(audio, rate, sample_rate), round(sample_rate * seconds))


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad or crop at the end to ``length`` samples."""
    if audio.shape[0] >= length:
        return audio[:length]
    return np.pad(audio, (0, length - audio.shape[0]))




