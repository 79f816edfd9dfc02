"""The front end against librosa's own pipeline, and the moments against scipy."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.stats
import torch

from asc.data.audio import AudioIssues, load_clip
from asc.data.features import FeatureSettings, LogMel
from asc.models.moments import moments
from tests.helpers import write_tone

#: Largest difference allowed between our log-mel and librosa's, in natural-log units (float32 STFTs).
LOGMEL_TOLERANCE = 2e-3


def test_settings_give_34_frames_of_256_bands() -> None:
    settings = FeatureSettings()
    assert (settings.win_length, settings.hop_length, settings.n_frames, settings.n_mels) == (2080, 480, 34, 256)


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_logmel_equals_librosa_pipeline(tmp_path: Path, pad_mode: str) -> None:
    path = tmp_path / "clip.wav"
    write_tone(path, seed=3)
    settings = FeatureSettings(pad_mode=pad_mode)
    wave = load_clip(path, sample_rate=settings.sample_rate)
    ours = LogMel(settings)(torch.from_numpy(wave)).numpy()

    reference_wave, _ = librosa.load(path, sr=16_000, res_type="soxr_hq")
    mel = librosa.feature.melspectrogram(
        y=reference_wave, sr=16_000, n_fft=2080, hop_length=480, win_length=2080, window="hann", center=True,
        pad_mode=pad_mode, power=2.0, n_mels=256, htk=False, norm="slaney",
    )
    reference = np.log(mel + settings.log_offset)
    assert ours.shape == reference.shape == (256, 34)
    assert np.abs(ours - reference).max() < LOGMEL_TOLERANCE


def test_logmel_batches() -> None:
    front_end = LogMel(FeatureSettings(n_mels=64))
    waves = torch.randn(2, 3, 16_000)
    batched = front_end(waves)
    assert batched.shape == (2, 3, 64, 34)
    assert torch.allclose(batched[1, 2], front_end(waves[1, 2]), atol=1e-5)


def test_moments_equal_scipy() -> None:
    rng = np.random.default_rng(0)
    data = rng.gamma(2.0, size=(3, 7, 34)).astype(np.float64)
    ours = moments(torch.from_numpy(data), eps=0.0).numpy().reshape(3, 5, 7)
    std = data.std(axis=-1)
    expected = np.stack([
        data.mean(axis=-1),
        data.var(axis=-1),
        scipy.stats.skew(data, axis=-1, bias=True),
        scipy.stats.kurtosis(data, axis=-1, fisher=False, bias=True),
        scipy.stats.moment(data, order=5, axis=-1) / std**5,
    ], axis=1)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)


def test_moments_ignore_temporal_order() -> None:
    x = torch.randn(4, 256, 34)
    assert torch.allclose(moments(x), moments(x.flip(-1)), atol=1e-5)
    assert moments(x).shape == (4, 5 * 256)


def test_recoverable_audio_is_fixed_and_counted(tmp_path: Path) -> None:
    write_tone(tmp_path / "48k.wav", 1, rate=48_000)
    write_tone(tmp_path / "stereo.wav", 2, channels=2)
    write_tone(tmp_path / "short.wav", 3, seconds=0.5)
    issues = AudioIssues()
    for name in ("48k.wav", "stereo.wav", "short.wav"):
        wave = load_clip(tmp_path / name, sample_rate=16_000, issues=issues, name=name)
        assert wave.shape == (16_000,) and wave.dtype == np.float32
    assert sum(issues.counts.values()) == 3
    summary = issues.summary()
    assert "48k.wav" in summary and "stereo.wav" in summary and "short.wav" in summary


def test_unusable_audio_names_the_file(tmp_path: Path) -> None:
    from asc.errors import AscError

    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not a wav file at all")
    with pytest.raises(AscError, match=r"garbage\.wav: unreadable audio"):
        load_clip(garbage, sample_rate=16_000)
    import soundfile

    bad = np.zeros(44_100, dtype=np.float32)
    bad[100] = np.nan
    soundfile.write(tmp_path / "nan.wav", bad, 44_100, subtype="FLOAT")
    with pytest.raises(AscError, match=r"nan\.wav: audio contains NaN or inf samples"):
        load_clip(tmp_path / "nan.wav", sample_rate=16_000)


def test_mel_log_gains_approximate_convolving_the_waveform() -> None:
    """A device response applied as per-band log gains on the log-mel, against convolving the waveform."""
    from scipy.signal import fftconvolve

    from asc.data.features import FeatureSettings, LogMel
    from asc.training.augmentations import mel_log_gains

    settings = FeatureSettings(n_mels=64)
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(16_000)  # broadband: flat within each mel band, as the approximation assumes
    response = np.zeros(160)
    response[0], response[40], response[120] = 1.0, -0.6, 0.3  # a 10 ms device colouring (comb + tilt)
    response *= np.exp(-np.arange(160) / 60)
    front_end = LogMel(settings)
    with torch.no_grad():
        clean = front_end(torch.from_numpy(wave).float())
        convolved = front_end(torch.from_numpy(fftconvolve(wave, response)[:16_000]).float())
    gains = mel_log_gains([response], settings)[0]
    assert gains.shape == (64,) and gains.max() - gains.min() > 0.8  # the response colours the spectrum
    error = (clean + gains[:, None] - convolved)[:, 2:-2]  # inner frames: edges see padding, not the tail
    assert error.mean(dim=1).abs().max() < 0.1  # per band, the gain is right on average (measured 0.043 nat)
    unmodelled = (clean - convolved)[:, 2:-2].abs().median()  # without the gain: 0.28 nat
    assert error.abs().median() < 0.1 and error.abs().median() < unmodelled / 3  # measured 0.031 nat
    flat = mel_log_gains([np.array([1.0])], settings)[0]  # a unit impulse: no colouring
    assert flat.abs().max() < 1e-6


def test_device_response_adds_a_zero_mean_band_gain_per_clip() -> None:
    from asc.training.augmentations import device_response

    x = torch.randn(32, 1, 8, 5)
    gains = torch.randn(3, 8) + 5.0
    assert device_response(x, gains, p=0.0) is x
    torch.manual_seed(0)
    shifted = device_response(x, gains, p=1.0)
    added = (shifted - x)[:, 0, :, 0]
    assert torch.allclose(shifted - x, added[:, None, :, None].expand_as(x), atol=1e-5)  # same gain all frames
    assert added.mean(dim=1).abs().max() < 1e-5  # the level is kept, the colouring changes
    centred = gains - gains.mean(dim=1, keepdim=True)
    assert all(any(torch.allclose(row, g, atol=1e-5) for g in centred) for row in added)
