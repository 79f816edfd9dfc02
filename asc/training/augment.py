"""The report's augmentations (§3.3), applied to log-mel batches ``(B, 1, F, T)`` on the training device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class AugmentSettings:
    """Each augmentation is switched off by 0.

    Args:
        roll: random circular shift in time by up to this fraction of the clip (report: 0.4).
        freq_mask: SpecAugment frequency-mask parameter F: masks of width U[0, F) bands (report: 20).
        mixup_alpha: Beta(α, α) of Mixup (report: 0.2).
    """

    roll: float = 0.4
    freq_mask: int = 20
    mixup_alpha: float = 0.2


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
