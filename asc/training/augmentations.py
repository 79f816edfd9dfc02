"""Augmentations of log-mel batches ``(B, 1, F, T)`` on the training device: the report's (§3.3: time roll,
frequency masks, Mixup) and the field's since (Freq-MixStyle; device impulse responses, loaded from WAVs and
applied as per-band log gains), wired in their order by ``Augmentations``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from asc.data.audio import read_audio, resample
from asc.data.features import FeatureSettings, mel_basis
from asc.errors import AscError


def random_roll(x: Tensor, max_fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """Roll each clip in time by its own shift in [-max_fraction·T, max_fraction·T]."""
    frames = x.shape[-1]
    limit = int(max_fraction * frames)
    if limit < 1:
        return x
    shifts = torch.randint(-limit, limit + 1, (x.shape[0],), generator=generator, device="cpu").to(x.device)
    time = torch.arange(frames, device=x.device)
    index = (time.unsqueeze(0) - shifts.unsqueeze(1)) % frames
    return torch.gather(x, -1, index.view(x.shape[0], *([1] * (x.dim() - 2)), frames).expand_as(x))


def frequency_mask(x: Tensor, mask_param: int, generator: torch.Generator | None = None) -> Tensor:
    """SpecAugment frequency masking: per clip, bands [f0, f0 + f) with f ~ U[0, mask_param) set to the clip mean."""
    bands = x.shape[-2]
    if mask_param < 1:
        return x
    batch = x.shape[0]
    width = torch.randint(0, min(mask_param, bands), (batch,), generator=generator, device="cpu")
    start = (torch.rand(batch, generator=generator, device="cpu") * (bands - width + 1)).long()
    band = torch.arange(bands)
    mask = (band >= start[:, None]) & (band < (start + width)[:, None])
    mask = mask.to(x.device).view(batch, *([1] * (x.dim() - 3)), bands, 1)
    fill = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    return torch.where(mask, fill, x)


def mixup(x: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor]:
    """Mix each clip with a random partner: returns ``(mixed, partner index, λ per clip)``.

    The loss is mixed with the same λ: ``λ·CE(y) + (1-λ)·CE(y[partner])``. Draws from torch's global
    generator (seed it with ``lightning.seed_everything``).
    """
    batch = x.shape[0]
    lam = torch.distributions.Beta(alpha, alpha).sample((batch,)).to(x.device, x.dtype)
    partner = torch.randperm(batch).to(x.device)
    shape = (batch,) + (1,) * (x.dim() - 1)
    return lam.view(shape) * x + (1 - lam.view(shape)) * x[partner], partner, lam


def freq_mixstyle(x: Tensor, p: float, alpha: float, eps: float = 1e-6) -> Tensor:
    """Freq-MixStyle (Schmid et al., 2022): with probability ``p`` per batch, give each clip per-band
    statistics mixed with those of a random partner, ``λ·(μ, σ) + (1-λ)·(μ', σ')`` with λ ~ Beta(α, α).

    μ and σ are each frequency band's mean and standard deviation over channels and time: a recording
    device colours the spectrum, which shows in exactly these statistics, so mixing them makes the network
    less sensitive to the device. Returns ``x`` itself when the batch is not mixed.
    """
    if p <= 0 or torch.rand(()).item() >= p:
        return x
    batch = x.shape[0]
    mean = x.mean(dim=(1, 3), keepdim=True).detach()
    std = (x.var(dim=(1, 3), keepdim=True) + eps).sqrt().detach()
    lam = torch.distributions.Beta(alpha, alpha).sample((batch, 1, 1, 1)).to(x.device, x.dtype)
    partner = torch.randperm(batch).to(x.device)
    mixed_mean = lam * mean + (1 - lam) * mean[partner]
    mixed_std = lam * std + (1 - lam) * std[partner]
    return (x - mean) / std * mixed_std + mixed_mean


def device_response(x: Tensor, gains: Tensor, p: float) -> Tensor:
    """Device impulse-response augmentation (Morocutti et al., 2023) on log-mels: each clip, with
    probability ``p``, gets the per-band log gain ``gains[k]`` of a random response k (``mel_log_gains``:
    the response's colouring through the mel filterbank, with its mean over bands removed, so that the
    augmentation changes the spectral shape a device gives, not the level)."""
    if p <= 0 or gains is None or not len(gains):
        return x
    batch = x.shape[0]
    chosen = torch.randint(0, len(gains), (batch,))
    applied = (torch.rand(batch) < p).to(x.dtype)
    shape = gains[chosen] - gains[chosen].mean(dim=1, keepdim=True)
    return x + (applied.view(-1, 1) * shape.to(x.dtype)).to(x.device).view(batch, 1, -1, 1)


def load_impulse_responses(folder: Path, sample_rate: int) -> tuple[list[str], list[np.ndarray]]:
    """Every ``*.wav`` of ``folder`` (sorted by name) as a mono response at ``sample_rate``: the device
    impulse responses of the DIR augmentation (for the real set, MicIRP's 66 responses)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AscError(f"model.device_irs: {folder}: folder not found")
    paths = sorted(folder.glob("*.wav"))
    if not paths:
        raise AscError(f"model.device_irs: {folder}: no .wav impulse responses in it")
    responses = []
    for path in paths:
        audio, rate = read_audio(path)
        response = audio.mean(axis=1)
        if response.size == 0 or not np.isfinite(response).all() or not np.abs(response).max() > 0:
            raise AscError(f"{path}: an impulse response must hold finite, not all-zero samples")
        responses.append(resample(response, rate, sample_rate))
    return [path.name for path in paths], responses


def mel_log_gains(impulse_responses: Sequence[np.ndarray], settings: FeatureSettings) -> Tensor:
    """Per-band log gains ``(responses, n_mels)`` of impulse responses (at ``settings.sample_rate``).

    Convolving a clip with a response h multiplies each STFT bin's power by |H(f)|² (exactly when h is
    much shorter than the 130 ms window; a longer tail smears over frames). Within a mel band the gain
    of the log-mel is then log Σ_f M(m, f)|H(f)|² P(f) / Σ_f M(m, f) P(f), which depends on the clip's
    own spectrum P; assuming P flat within each band gives a gain that depends on h alone:
    g(m) = log Σ_f M(m, f)|H(f)|² / Σ_f M(m, f). So a cached log-mel plus g approximates the log-mel of
    the convolved clip: for white noise and a 10 ms response that colours the bands by up to 1.1 nat,
    the log-mel plus g is within 0.03 nat (median over bands and frames; 0.28 without g) of the log-mel
    of the convolved noise (``tests/test_features.py``). It ignores the ``log_offset`` floor, the
    clip's spectral slope inside a band, and time smearing by responses longer than the window.
    """
    mel = mel_basis(settings).double()
    gains = []
    for response in impulse_responses:
        spectrum = np.fft.rfft(np.asarray(response, dtype=np.float64), n=max(settings.fft_size, len(response)))
        power = torch.from_numpy(np.abs(spectrum) ** 2)
        if len(power) != mel.shape[1]:  # a response longer than n_fft: the spectrum on the STFT's bins
            power = torch.from_numpy(np.interp(np.linspace(0, 1, mel.shape[1]), np.linspace(0, 1, len(power)),
                                               power.numpy()))
        gains.append(torch.log((mel @ power).clamp_min(1e-12) / mel.sum(dim=1).clamp_min(1e-12)))
    return torch.stack(gains).float()


class Augmentations(nn.Module):
    """A stage's augmentations of the log-mel batch, in their order: a device response, the time roll,
    Freq-MixStyle, frequency masks (Mixup mixes labels too, so the stage's loss applies it). Each is off at 0;
    the settings are checked here, once.

    Args:
        roll: random circular shift in time by up to this fraction of the clip (report: 0.4).
        freq_mask: SpecAugment frequency-mask parameter F: masks of width U[0, F) bands (report: 20).
        freq_mixstyle_p: probability that a batch gets Freq-MixStyle; ``freq_mixstyle_alpha`` its Beta(α, α).
        device_ir_p: probability that a clip gets one of the device responses (``load_device_responses``).
    """

    def __init__(self, roll: float = 0.4, freq_mask: int = 20, freq_mixstyle_p: float = 0.0,
                 freq_mixstyle_alpha: float = 0.3, device_ir_p: float = 0.0) -> None:
        super().__init__()
        if not 0 <= freq_mixstyle_p <= 1 or freq_mixstyle_alpha <= 0:
            raise AscError(f"model.freq_mixstyle_p ({freq_mixstyle_p}) must be in [0, 1] and model.freq_mixstyle_alpha "
                           f"({freq_mixstyle_alpha}) positive")
        if not 0 <= device_ir_p <= 1:
            raise AscError(f"model.device_ir_p: {device_ir_p} must be in [0, 1]")
        self.roll, self.freq_mask = roll, freq_mask
        self.freq_mixstyle_p, self.freq_mixstyle_alpha = freq_mixstyle_p, freq_mixstyle_alpha
        self.device_ir_p = device_ir_p
        self.register_buffer("ir_gains", None, persistent=False)

    def load_device_responses(self, folder: Path, settings: FeatureSettings) -> None:
        """The per-band log gains of every response WAV in ``folder``, once (a resumed fit loads them again)."""
        if self.ir_gains is None:
            _names, responses = load_impulse_responses(folder, settings.sample_rate)
            self.ir_gains = mel_log_gains(responses, settings)

    def forward(self, x: Tensor) -> Tensor:
        x = device_response(x, self.ir_gains, self.device_ir_p)
        if self.roll > 0:
            x = random_roll(x, self.roll)
        x = freq_mixstyle(x, self.freq_mixstyle_p, self.freq_mixstyle_alpha)
        if self.freq_mask > 0:
            x = frequency_mask(x, self.freq_mask)
        return x
