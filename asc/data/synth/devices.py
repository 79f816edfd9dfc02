"""The recording devices of the built-in dataset: how a, b, c hear a sound field and how s1-s6 are simulated.

The real devices a, b and c record the same sound field, each through its own frequency response, with its
own sensitivity and self-noise. The simulated devices s1-s6 are made from device a's clip, as in the real
set: a frequency response that includes a short impulse response, self-noise and dynamic range compression.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asc.data.layout import DEVICE_GROUPS, SAMPLE_RATE, ClipName
from asc.data.synth.conditions import PLAIN, Conditions, scene_field
from asc.data.synth.scenes import _FREQS, _OCTAVES, N_SAMPLES, _rms
from asc.data.synth.seeding import _rng

_SIMULATED = DEVICE_GROUPS["seen_simulated"] + DEVICE_GROUPS["unseen_simulated"]


@dataclass(frozen=True)
class _Device:
    """Fixed characteristics of one recording device in a dataset."""

    response: np.ndarray  # complex frequency response (includes the impulse response of simulated devices)
    gain_db: float
    noise_gain: np.ndarray  # self-noise magnitude spectrum, scaled so that unit-variance draws give the noise level
    threshold_db: float  # compressor threshold relative to the clip RMS (simulated devices)
    ratio: float  # compressor ratio; 1 for no compression


@functools.lru_cache(maxsize=64)
def _device(seed: int, name: str, colour: float = 1.0, noise_db: float = 0.0) -> _Device:
    """A smooth random frequency response, band limits, and for s1-s6 an impulse response and compressor.

    ``colour`` multiplies the response's deviations (dB) and ``noise_db`` shifts the self-noise level of every
    device but a (``Conditions.device_colour`` / ``device_noise_db``); the defaults change nothing.
    """
    rng = _rng(seed, f"device/{name}")
    strength = {"a": 0.3, "b": 1.0, "c": 1.0}.get(name, 1.5)
    db = rng.uniform(-1.5, 1.5) * strength * _OCTAVES
    for _ in range(4):
        centre, width = rng.uniform(-3.0, 3.5), rng.uniform(0.3, 1.0)
        db = db + rng.normal(0.0, 3.0 * strength) * np.exp(-0.5 * np.square((_OCTAVES - centre) / width))
    if name != "a" and colour != 1.0:
        db = db * colour
    high_pass = 30.0 if name == "a" else rng.uniform(80.0, 300.0)
    low_pass = 20000.0 if name == "a" else rng.uniform(5000.0, 12000.0)
    ratio_high = np.square(_FREQS / high_pass)
    magnitude = 10.0 ** (db / 20.0) * ratio_high / np.sqrt(1.0 + np.square(ratio_high))
    magnitude /= np.sqrt(1.0 + (_FREQS / low_pass) ** 4)
    response = magnitude.astype(np.complex128)
    simulated = name in _SIMULATED
    if simulated:
        response *= np.fft.rfft(_enclosure(rng), n=N_SAMPLES)
    return _Device(
        response=response,
        gain_db=0.0 if name == "a" else float(rng.uniform(-4.0, 4.0)),
        noise_gain=_noise_gain(float(rng.uniform(-45.0, -30.0) + noise_db if name != "a" else -60.0),
                               rng.uniform(-3.0, 1.0)),
        threshold_db=float(rng.uniform(-3.0, 6.0)) if simulated else 0.0,
        ratio=float(rng.uniform(2.0, 6.0)) if simulated else 1.0,
    )


def _enclosure(rng: np.random.Generator) -> np.ndarray:
    """A short room/enclosure impulse response (8 ms): the direct path plus a decaying noise tail."""
    n = int(0.008 * SAMPLE_RATE)
    impulse = 0.1 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.0015 * SAMPLE_RATE))
    impulse[0] = 1.0
    return impulse


def _noise_gain(level_db: float, tilt_db: float) -> np.ndarray:
    """Magnitudes whose complex-Gaussian draws have an expected RMS of ``level_db`` (re 1) and the given slope."""
    gain = 10.0 ** (tilt_db * _OCTAVES / 20.0)
    expected_rms = np.sqrt(2.0 * 2.0 * np.sum(np.square(gain))) / N_SAMPLES  # E|z|^2 = 2 per bin
    return gain * (10.0 ** (level_db / 20.0) / expected_rms)


_HALF_WIDTH = int(0.005 * SAMPLE_RATE)
_WINDOW_LO = np.clip(np.arange(N_SAMPLES) - _HALF_WIDTH, 0, N_SAMPLES)
_WINDOW_HI = np.clip(np.arange(N_SAMPLES) + _HALF_WIDTH + 1, 0, N_SAMPLES)


def _compress(x: np.ndarray, threshold_db: float, ratio: float) -> np.ndarray:
    """Static compressor on a centred 10-ms RMS envelope (symmetric, so reversal pairs stay symmetric)."""
    if ratio <= 1.0:
        return x
    power = np.concatenate(([0.0], np.cumsum(np.square(x))))
    envelope = np.sqrt((power[_WINDOW_HI] - power[_WINDOW_LO]) / (_WINDOW_HI - _WINDOW_LO) + 1e-20)
    threshold = _rms(x) * 10.0 ** (threshold_db / 20.0)
    gain = np.minimum(1.0, (envelope / threshold) ** (1.0 / ratio - 1.0))
    y = x * gain
    return y * (_rms(x) / _rms(y))


def _spectrum_rms(spectrum: np.ndarray) -> float:
    """RMS of ``irfft(spectrum)`` by Parseval, without the inverse transform (nor BLAS, slow when cores are busy)."""
    power = 2.0 * np.sum(np.square(spectrum.view(np.float64))) - abs(spectrum[0]) ** 2 - abs(spectrum[-1]) ** 2
    return float(np.sqrt(max(power, 0.0)) / N_SAMPLES + 1e-20)


def _with_self_noise(spectrum: np.ndarray, device: _Device, rng: np.random.Generator) -> np.ndarray:
    """Add the device's own noise floor (relative to the clip's level, with its own slope) to a spectrum."""
    noise = rng.standard_normal(2 * spectrum.size).view(np.complex128) * device.noise_gain
    return spectrum + noise * _spectrum_rms(spectrum)


def _microphone(spectrum: np.ndarray, device: _Device, rng: np.random.Generator, scale: float) -> np.ndarray:
    """A real device (a, b, c) hearing the sound field: the spectrum of its clip (response, sensitivity, noise)."""
    return _with_self_noise(spectrum * device.response * (scale * 10.0 ** (device.gain_db / 20.0)), device, rng)


def _simulate(a_spectrum: np.ndarray, a_rms: float, device: _Device, rng: np.random.Generator) -> np.ndarray:
    """A simulated device (s1-s6) made from device a's clip: response with impulse response, noise, compression."""
    coloured = _with_self_noise(a_spectrum * device.response, device, rng)
    x = _compress(np.fft.irfft(coloured, n=N_SAMPLES), device.threshold_db, device.ratio)
    return x * (a_rms * 10.0 ** (device.gain_db / 20.0) / _rms(x))


#: Other microphones than the dataset's, whose responses ``asc synth`` writes for the device impulse response
#: augmentation (the built-in set's analogue of MicIRP): none of them records any clip, so an augmentation
#: with them never leaks the unseen devices s4-s6.
IMPULSE_RESPONSE_DEVICES = tuple(f"mic{k:02d}" for k in range(1, 13))
_IR_SAMPLES = 2048  # 46 ms: longer than the 8-ms tails of s1-s6; resolves 21.5 Hz


def impulse_response(seed: int, name: str, conditions: Conditions = PLAIN) -> np.ndarray:
    """The impulse response of a microphone drawn like the simulated devices (same strength of colouring,
    band limits and an 8-ms enclosure tail), as ``_IR_SAMPLES`` float samples peaking at 1.

    The full-resolution response is made causal by centring its zero-phase impulse response, then shortened
    with a Hann window (the response's smooth magnitude survives; the window only smooths it further).
    """
    device = _device(seed, name, colour=conditions.device_colour)
    tail = _enclosure(_rng(seed, f"impulse/{name}"))
    full = np.fft.irfft(device.response * np.fft.rfft(tail, n=N_SAMPLES), n=N_SAMPLES)
    out = np.roll(full, _IR_SAMPLES // 2)[:_IR_SAMPLES] * np.hanning(_IR_SAMPLES)
    return out / np.abs(out).max()


def render_recording(
    seed: int, clip: ClipName, devices: Sequence[str], conditions: Conditions = PLAIN
) -> dict[str, np.ndarray]:
    """The float64 waveforms of one slice on the given devices, under the given recording ``conditions``.

    a, b and c hear the same sound field (the background at the location's level, events on top);
    s1-s6 are made from a's clip (its spectrum), which is rendered even when a itself is not requested.
    A slice's random draws depend on its location, segment and slice but not on its scene, so the same
    identity rendered as the two scenes of a reversed pair differs only in the direction of the event layer.
    """
    field, place, colour = scene_field(seed, clip, conditions)
    level_db = place.level_db + _rng(seed, f"segment/{clip.identifier}-{clip.segment}").normal(0.0, 1.5)
    scale = 10.0 ** (level_db / 20.0)
    spectrum = np.fft.rfft(field) * 10.0 ** (place.tilt_db * _OCTAVES / 20.0)
    if colour is not None:
        spectrum *= colour
    device_of = functools.partial(_device, seed, colour=conditions.device_colour, noise_db=conditions.device_noise_db)

    def rng_of(name: str) -> np.random.Generator:
        return _rng(seed, f"clip/{dataclasses.replace(clip, device=name).filename}")

    a_spectrum = _microphone(spectrum, device_of("a"), rng_of("a"), scale)
    a_rms = _spectrum_rms(a_spectrum)
    out: dict[str, np.ndarray] = {}
    for name in devices:
        if name == "a":
            out[name] = np.fft.irfft(a_spectrum, n=N_SAMPLES)
        elif name in _SIMULATED:
            out[name] = _simulate(a_spectrum, a_rms, device_of(name), rng_of(name))
        else:
            out[name] = np.fft.irfft(_microphone(spectrum, device_of(name), rng_of(name), scale), n=N_SAMPLES)
    return out
