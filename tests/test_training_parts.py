"""Augmentations, learning-rate callbacks and per-device metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from asc.data.layout import DEVICES
from asc.training.augmentations import frequency_mask, mixup, random_roll
from asc.training.metrics import SceneMetrics
from asc.training.schedule import Annealing, Warmup


def test_random_roll_shifts_each_clip_circularly_within_the_limit() -> None:
    torch.manual_seed(0)
    x = torch.arange(10.0).repeat(16, 1, 2, 1)
    rolled = random_roll(x, 0.4)
    for clip in range(16):
        shift = int(-rolled[clip, 0, 0, 0].item()) % 10  # torch.roll by s puts element -s first
        assert torch.equal(rolled[clip], torch.roll(x[clip], shift, dims=-1))
        assert min(shift, 10 - shift) <= 4
    assert not torch.equal(rolled, x)


def test_frequency_mask_covers_fewer_bands_than_the_parameter() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 1, 40, 5) + 100
    masked = frequency_mask(x, 20)
    changed = (masked != x).all(dim=-1).squeeze(1)  # (clip, band): whole band replaced
    widths = changed.sum(dim=1)
    assert widths.max() < 20 and widths.float().mean() > 5
    for clip in range(64):
        bands = changed[clip].nonzero().flatten()
        if len(bands):
            assert bands.max() - bands.min() + 1 == len(bands)  # one contiguous block
            assert torch.allclose(masked[clip, 0, bands[0]], x[clip].mean().expand(5))


def test_mixup_mixes_inputs_with_the_returned_weights() -> None:
    torch.manual_seed(2)
    x = torch.randn(32, 1, 4, 3)
    mixed, partner, lam = mixup(x, 0.2)
    expected = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[partner]
    assert torch.allclose(mixed, expected)
    assert ((lam > 0.9) | (lam < 0.1)).float().mean() > 0.5  # Beta(0.2, 0.2) is U-shaped


def test_warmup_then_annealing_follow_the_recipe() -> None:
    warmup, annealing = Warmup(3, 0.035), Annealing(3, 80, 0.035, 0.00035)
    assert warmup.lr_at(0) == 0 and math.isclose(warmup.lr_at(1.5), 0.0175) and warmup.lr_at(3) is None
    assert annealing.lr_at(2.9) is None
    assert math.isclose(annealing.lr_at(3), 0.035) and math.isclose(annealing.lr_at(80), 0.00035)
    assert math.isclose(annealing.lr_at(41.5), math.sqrt(0.035 * 0.00035))
    assert math.isclose(annealing.lr_at(200), 0.00035)


def test_per_device_metrics_match_a_hand_computed_example() -> None:
    metric = SceneMetrics()
    # device a: 3 clips, 2 right; device s4: 1 clip, wrong; device b: 2 clips, 1 right.
    label = torch.tensor([0, 1, 2, 3, 4, 5])
    device = torch.tensor([DEVICES.index(d) for d in ("a", "a", "a", "s4", "b", "b")])
    predicted = torch.tensor([0, 1, 0, 2, 4, 0])
    logits = torch.full((6, 10), -10.0)
    logits[torch.arange(6), predicted] = 10.0
    metric.update(logits[:3], label[:3], device[:3])  # two batches, as an epoch would
    metric.update(logits[3:], label[3:], device[3:])
    summary = metric.compute()
    assert summary["accuracy"] == pytest.approx(3 / 6)
    per_device = summary["accuracy_per_device"]
    assert per_device["a"] == pytest.approx(2 / 3) and per_device["b"] == pytest.approx(1 / 2)
    assert per_device["s4"] == 0.0 and per_device["c"] is None
    assert summary["accuracy_per_group"]["real"] == pytest.approx(3 / 5)
    assert summary["accuracy_per_group"]["unseen_simulated"] == 0.0
    assert summary["accuracy_per_class"]["airport"] == 1.0 and summary["accuracy_per_class"]["metro"] == 0.0
    assert summary["macro_accuracy"] == pytest.approx(3 / 6)
    expected_loss = (3 * math.log1p(9 * math.exp(-20)) + 3 * (20 + math.log1p(9 * math.exp(-20)))) / 6
    assert summary["log_loss"] == pytest.approx(float(expected_loss), rel=1e-6)
    assert summary["confusion"][2][0] == 1 and summary["confusion"][3][2] == 1
    assert summary["clips_per_device"]["a"] == 3


def test_freq_mixstyle_mixes_per_band_statistics_with_a_partner() -> None:
    from asc.training.augmentations import freq_mixstyle

    torch.manual_seed(4)
    x = torch.randn(16, 1, 8, 50) * (torch.rand(16, 1, 8, 1) * 3 + 0.5) + torch.randn(16, 1, 8, 1) * 5
    assert freq_mixstyle(x, p=0.0, alpha=0.3) is x
    torch.manual_seed(3)
    mixed = freq_mixstyle(x, p=1.0, alpha=0.3)
    torch.manual_seed(3)
    torch.rand(())  # the same draws: the coin, then λ and the partners
    lam = torch.distributions.Beta(0.3, 0.3).sample((16, 1, 1, 1))
    partner = torch.randperm(16)
    mean, std = x.mean(dim=(1, 3), keepdim=True), x.std(dim=(1, 3), keepdim=True, unbiased=False)
    got_mean, got_std = mixed.mean(dim=(1, 3), keepdim=True), mixed.std(dim=(1, 3), keepdim=True, unbiased=False)
    assert torch.allclose(got_mean, lam * mean + (1 - lam) * mean[partner], atol=1e-4)
    assert torch.allclose(got_std, lam * std + (1 - lam) * std[partner], atol=1e-3)
    # The within-band pattern over time is kept: each band is only shifted and scaled.
    normed = lambda t: (t - t.mean(dim=3, keepdim=True)) / t.std(dim=3, keepdim=True)  # noqa: E731
    assert torch.allclose(normed(mixed), normed(x), atol=1e-3)


def test_cumulative_l1_zeroes_weights_whose_gradients_only_jitter() -> None:
    """With noisy mini-batch gradients a plain proximal step keeps reviving unused weights; the cumulative
    penalty (Tsuruoka et al., 2009) holds them at zero, and keeps weights whose gradient is consistent."""
    from asc.training.linear import cumulative_l1_step

    generator = torch.Generator().manual_seed(0)
    lr, lam = 0.01, 0.3
    signal = torch.tensor([0.0] * 8 + [-1.0] * 2)  # eight unused weights, two the loss wants positive
    weights = {"cumulative": torch.full((10,), 0.2), "proximal": torch.full((10,), 0.2)}
    total, received = torch.zeros(()), torch.zeros(10)
    for _step in range(2000):
        noise = torch.randn(10, generator=generator)
        for name, weight in weights.items():
            weight -= lr * (signal + noise)
            if name == "proximal":
                weight.copy_(weight.sign() * (weight.abs() - lr * lam).clamp_min(0))
        total += lr * lam
        cumulative_l1_step(weights["cumulative"], total, received)
    assert (weights["cumulative"][:8] == 0).all() and (weights["cumulative"][8:] > 0.5).all()
    assert (weights["proximal"][:8] == 0).sum() <= 3  # 0 to 2 of 8 over five seeds

