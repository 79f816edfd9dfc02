"""Loading audio: the numpy decoder of 24-bit PCM WAVs against soundfile, and the loaded clips against
librosa's resampling, both bit for bit."""

from __future__ import annotations

import io
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from asc.data.audio import AudioIssues, fit_length, load_clip, load_clips, pcm24_layout, read_audio, resample
from asc.errors import AscError


def wav_bytes(audio: np.ndarray, rate: int = 44_100, subtype: str = "PCM_24", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def with_chunk_before_data(data: bytes, chunk: bytes, body: bytes) -> bytes:
    """``data`` with an extra chunk (odd-sized bodies get their pad byte) inserted before its data chunk."""
    at = data.index(b"data")
    extra = chunk + len(body).to_bytes(4, "little") + body + (b"\0" if len(body) % 2 else b"")
    riff = (int.from_bytes(data[4:8], "little") + len(extra)).to_bytes(4, "little")
    return data[:4] + riff + data[8:at] + extra + data[at:]


def noise(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    audio = np.random.default_rng(seed).uniform(-1, 1, size=(frames, channels))
    audio[:2] = [[-1.0] * channels, [1.0 - 2.0**-23] * channels]  # both ends of the 24-bit range
    return audio


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, data", [
    ("mono", wav_bytes(noise(44_100))),
    ("stereo", wav_bytes(noise(1_001, 2, seed=1))),
    ("3 channels", wav_bytes(noise(999, 3, seed=2))),
    ("WAVE_FORMAT_EXTENSIBLE", wav_bytes(noise(999, 2, seed=2), fmt="WAVEX")),
    ("LIST chunk of odd size before the data", with_chunk_before_data(wav_bytes(noise(500, seed=3)), b"LIST",
                                                                      b"INFOx")),
    ("48 kHz", wav_bytes(noise(4_800, seed=4), rate=48_000)),
])
def test_24_bit_pcm_decodes_as_soundfile_does(tmp_path: Path, name: str, data: bytes) -> None:
    path = write(tmp_path / "clip.wav", data)
    assert pcm24_layout(data) is not None, f"{name}: not taken by the numpy decoder"
    ours, rate = read_audio(path)
    theirs, their_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    assert rate == their_rate and ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("name, data", [
    ("16-bit", wav_bytes(noise(1_000), subtype="PCM_16")),
    ("32-bit float", wav_bytes(noise(1_000), subtype="FLOAT")),
    ("FLAC", wav_bytes(noise(1_000), subtype="PCM_24", fmt="FLAC")),
    ("extensible 32-bit float", wav_bytes(noise(1_000), subtype="FLOAT", fmt="WAVEX")),
    ("data chunk longer than the file", wav_bytes(noise(1_000))[:-7]),
])
def test_other_audio_goes_to_soundfile(tmp_path: Path, name: str, data: bytes) -> None:
    path = write(tmp_path / "clip.wav", data)
    assert pcm24_layout(data) is None, f"{name}: taken by the numpy decoder"
    ours, rate = read_audio(path)
    theirs, their_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    assert rate == their_rate and np.array_equal(ours, theirs)


def test_unreadable_and_missing_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(AscError, match=r"missing\.wav: unreadable audio"):
        read_audio(tmp_path / "missing.wav")
    header_only = write(tmp_path / "header.wav", b"RIFF\x24\0\0\0WAVEfmt ")
    with pytest.raises(AscError, match=r"header\.wav: unreadable audio"):
        read_audio(header_only)


def test_a_batch_loads_as_each_clip_does_through_librosa(tmp_path: Path) -> None:
    """Clips of several rates, lengths and channel counts in one batch: each the same numbers as librosa's
    soxr_hq resampling of it alone, cut or padded to the clip length."""
    specs = [(44_100, 44_100, 1), (44_100, 44_100, 1), (48_000, 48_000, 1), (44_100, 20_000, 1), (44_100, 44_100, 2),
             (16_000, 16_000, 1), (44_100, 50_000, 1)]
    paths = [write(tmp_path / f"{index}.wav", wav_bytes(noise(frames, channels, seed=index), rate=rate))
             for index, (rate, frames, channels) in enumerate(specs)]
    issues = AudioIssues()
    batch = load_clips(paths, sample_rate=16_000, issues=issues, names=[path.name for path in paths])
    assert batch.shape == (len(paths), 16_000) and batch.dtype == np.float32
    for path, clip in zip(paths, batch, strict=True):
        audio, rate = soundfile.read(str(path), dtype="float32")
        mono = audio if audio.ndim == 1 else audio.mean(axis=1)
        expected = fit_length(librosa.resample(mono, orig_sr=rate, target_sr=16_000, res_type="soxr_hq"), 16_000)
        assert np.array_equal(clip, expected), path.name
        assert np.array_equal(clip, load_clip(path, sample_rate=16_000))
    assert sum(issues.counts.values()) == 5  # 48 kHz, two lengths, stereo, 16 kHz


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000, 96_000])
def test_resampling_equals_librosas_for_every_length(rate: int) -> None:
    """The same numbers and length as ``librosa.resample(res_type="soxr_hq")``, short clips included (a device
    response is a few hundred samples)."""
    rng = np.random.default_rng(rate)
    for samples in (1, 2, 3, 7, 441, 1_000, 12_345, 44_101):
        audio = rng.standard_normal(samples).astype(np.float32)
        expected = librosa.resample(audio, orig_sr=rate, target_sr=16_000, res_type="soxr_hq")
        ours = resample(audio, rate, 16_000)
        assert ours.dtype == expected.dtype and ours.shape == expected.shape and np.array_equal(ours, expected)
