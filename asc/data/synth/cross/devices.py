"""Family ``"b"`` devices: parametric-equaliser responses, hum and soft clipping, instead of ``devices``' family.

Why another family of devices
    ``asc synth`` writes the impulse responses of twelve other microphones (``impulse_responses/``) for the
    device-response augmentation, drawn exactly like family ``"a"``'s devices (smooth Gaussian bumps in dB over
    log frequency, gentle second-order band limits, an 8-ms enclosure tail). Augmenting with them on a family-
    ``"a"`` preset partly shows the model its test devices. Family ``"b"``'s devices share nothing with them:

    * the response is a cascade of parametric (biquad) sections, evaluated exactly on the clip's bins: three to
      five peaking sections with Q up to 6 (narrow resonances and notches), a low and a high shelf, and for
      b, c and s1-s6 steep band limits: a fourth-order high-pass at 150-600 Hz and a fourth-order low-pass at
      3.5-9 kHz with a resonant peak at its corner (a phone's tiny capsule and port);
    * self-noise is white, pink or brown (chosen per device) instead of a gentle slope, and b, c and s1-s6 may
      pick up mains buzz (50 Hz and its odd harmonics);
    * the nonlinearity is an asymmetric soft clipper (tanh, even harmonics from its bias) instead of a
      compressor: mild for b and c, strong for s1-s6;
    * s1-s6 are made from device a's clip (as in the real set) with two to four early-echo taps of 0.5-12 ms
      (a casing or a table) instead of an 8-ms noise tail.

    The microphones written for the augmentation are never drawn here: ``writer`` writes family ``"a"``'s
    ``devices.impulse_response`` for every preset, so on family ``"b"`` they are a different family of devices.
    Every nonlinearity is instantaneous and every filter shorter than a frame, so the time-reversed scene pairs
    keep the same per-band moments.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asc.data.layout import DEVICE_GROUPS, SAMPLE_RATE, ClipName
from asc.data.synth.conditions import PLAIN, Conditions
from asc.data.synth.cross.rooms import room_field
from asc.data.synth.cross.scenes import _T
from asc.data.synth.scenes import _FREQS, _OCTAVES, N_SAMPLES, _rms
from asc.data.synth.seeding import _rng

_SIMULATED = DEVICE_GROUPS["seen_simulated"] + DEVICE_GROUPS["unseen_simulated"]
_Z = np.exp(-2j * np.pi * _FREQS / SAMPLE_RATE)  # z^-1 on the clip's bins
_BUZZ = np.array([1.0, 0.2, 0.6, 0.15, 0.4, 0.1, 0.25, 0.05])  # 50 Hz and its harmonics, odd ones strong


@dataclass(frozen=True)
class _Mic:
    """Fixed characteristics of one family-``"b"`` device in a dataset."""

    response: np.ndarray  # complex: parametric sections, band limits (and echo taps for s1-s6)
    gain_db: float
    noise: np.ndarray  # self-noise magnitudes: unit complex-Gaussian draws give its level relative to the clip
    buzz: float  # mains buzz amplitude relative to the clip RMS (0: none)
    clip_db: float  # soft-clipping level above the clip RMS (inf: linear)
    bias: float  # asymmetry of the clipper


def _biquad(kind: str, f0: float, q: float, gain_db: float = 0.0) -> np.ndarray:
    """Response of one second-order section (the audio-EQ-cookbook forms) on the clip's bins."""
    w0, a = 2.0 * np.pi * f0 / SAMPLE_RATE, 10.0 ** (gain_db / 40.0)
    cos, alpha = np.cos(w0), np.sin(w0) / (2.0 * q)
    root = 2.0 * np.sqrt(a) * alpha
    numerator, denominator = {
        "peak": ((1 + alpha * a, -2 * cos, 1 - alpha * a), (1 + alpha / a, -2 * cos, 1 - alpha / a)),
        "low": (((1 - cos) / 2, 1 - cos, (1 - cos) / 2), (1 + alpha, -2 * cos, 1 - alpha)),
        "high": (((1 + cos) / 2, -(1 + cos), (1 + cos) / 2), (1 + alpha, -2 * cos, 1 - alpha)),
        "lowshelf": ((a * ((a + 1) - (a - 1) * cos + root), 2 * a * ((a - 1) - (a + 1) * cos),
                      a * ((a + 1) - (a - 1) * cos - root)),
                     ((a + 1) + (a - 1) * cos + root, -2 * ((a - 1) + (a + 1) * cos), (a + 1) + (a - 1) * cos - root)),
        "highshelf": ((a * ((a + 1) + (a - 1) * cos + root), -2 * a * ((a - 1) + (a + 1) * cos),
                       a * ((a + 1) + (a - 1) * cos - root)),
                      ((a + 1) - (a - 1) * cos + root, 2 * ((a - 1) - (a + 1) * cos), (a + 1) - (a - 1) * cos - root)),
    }[kind]
    return _polynomial(numerator) / _polynomial(denominator)


def _polynomial(coefficients: Sequence[float]) -> np.ndarray:
    """c0 + c1 z^-1 + c2 z^-2 on the clip's bins."""
    c0, c1, c2 = coefficients
    return c0 + _Z * (c1 + c2 * _Z)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw uniform in log scale between ``low`` and ``high``."""
    return float(2.0 ** rng.uniform(np.log2(low), np.log2(high)))


def _equaliser(rng: np.random.Generator, spread_db: float) -> np.ndarray:
    """Three to five peaking sections and two shelves with gains of the given spread (dB)."""
    response = np.ones(_FREQS.size, dtype=np.complex128)
    for _ in range(int(rng.integers(3, 6))):
        response *= _biquad("peak", _log_uniform(rng, 150.0, 7000.0), _log_uniform(rng, 0.7, 6.0),
                            float(rng.normal(0.0, spread_db)))
    response *= _biquad("lowshelf", rng.uniform(100.0, 500.0), 0.7, float(rng.normal(0.0, 0.75 * spread_db)))
    return response * _biquad("highshelf", rng.uniform(2000.0, 8000.0), 0.7, float(rng.normal(0.0, 0.75 * spread_db)))


def _band_limits(rng: np.random.Generator) -> np.ndarray:
    """Fourth-order Butterworth high-pass at 150-600 Hz; fourth-order low-pass at 3.5-9 kHz, resonant at its corner."""
    high, low = rng.uniform(150.0, 600.0), rng.uniform(3500.0, 9000.0)
    return (_biquad("high", high, 0.54) * _biquad("high", high, 1.31)
            * _biquad("low", low, 0.6) * _biquad("low", low, rng.uniform(0.9, 2.5)))


def _echoes(rng: np.random.Generator) -> np.ndarray:
    """Two to four early-echo taps of 0.5-12 ms (a casing, a table) after the direct sound."""
    response = np.ones(_FREQS.size, dtype=np.complex128)
    for _ in range(int(rng.integers(2, 5))):
        delay = rng.uniform(0.0005, 0.012) * SAMPLE_RATE
        response += rng.choice((-1.0, 1.0)) * rng.uniform(0.15, 0.55) * _Z**delay
    return response


def _noise_floor(level_db: float, exponent: float) -> np.ndarray:
    """Magnitudes of noise with power ~ f^-exponent whose complex-Gaussian draws have RMS ``level_db`` (re 1)."""
    gain = 10.0 ** (-3.0 * exponent * np.maximum(_OCTAVES, -5.0) / 20.0)
    return gain * 10.0 ** (level_db / 20.0) * N_SAMPLES / np.sqrt(4.0 * np.sum(np.square(gain)))


@functools.lru_cache(maxsize=64)
def _mic(seed: int, name: str, colour: float = 1.0, noise_db: float = 0.0) -> _Mic:
    """A family-``"b"`` device: ``colour`` multiplies the equaliser's gains and ``noise_db`` shifts the self-noise
    and buzz of every device but a (``Conditions.device_colour`` / ``device_noise_db``)."""
    rng = _rng(seed, f"cross/device/{name}")
    real_a, simulated = name == "a", name in _SIMULATED
    spread = 0.3 * 3.5 if real_a else {"b": 1.0, "c": 1.0}.get(name, 1.5) * 3.5 * colour
    response = _equaliser(rng, spread) * (_biquad("high", 25.0, 0.7) if real_a else _band_limits(rng))
    if simulated:
        response *= _echoes(rng)
    exponent, level = float(rng.choice((0.0, 1.0, 2.0))), rng.uniform(-45.0, -30.0) + noise_db
    buzz = 0.0 if real_a or rng.uniform() < 0.4 else 10.0 ** ((rng.uniform(-42.0, -28.0) + noise_db) / 20.0)
    return _Mic(
        response=response,
        gain_db=0.0 if real_a else float(rng.uniform(-4.0, 4.0)),
        noise=_noise_floor(-60.0 if real_a else float(level), exponent),
        buzz=float(buzz),
        clip_db=np.inf if real_a else float(rng.uniform(0.0, 8.0) if simulated else rng.uniform(8.0, 16.0)),
        bias=0.0 if real_a else float(rng.uniform(0.0, 0.3)),
    )


def _spectrum_rms(spectrum: np.ndarray) -> float:
    """RMS of ``irfft(spectrum)`` by Parseval."""
    power = 2.0 * np.sum(np.square(np.abs(spectrum))) - abs(spectrum[0]) ** 2 - abs(spectrum[-1]) ** 2
    return float(np.sqrt(max(power, 0.0)) / N_SAMPLES + 1e-20)


def _record(spectrum: np.ndarray, mic: _Mic, rng: np.random.Generator) -> np.ndarray:
    """A device's waveform from the spectrum reaching it: response, self-noise, mains buzz, soft clipping."""
    coloured = spectrum * mic.response
    level = _spectrum_rms(coloured)
    coloured += rng.standard_normal(2 * coloured.size).view(np.complex128) * mic.noise * level
    x = np.fft.irfft(coloured, n=N_SAMPLES)
    if mic.buzz:
        phase = 2.0 * np.pi * 50.0 * _T + rng.uniform(0.0, 2.0 * np.pi)
        x += mic.buzz * level * np.sqrt(2.0) * sum(a * np.sin((k + 1) * phase) for k, a in enumerate(_BUZZ))
    if not np.isfinite(mic.clip_db):
        return x
    ceiling = _rms(x) * 10.0 ** (mic.clip_db / 20.0)
    return ceiling * (np.tanh(x / ceiling + mic.bias) - np.tanh(mic.bias))


def render_recording(
    seed: int, clip: ClipName, devices: Sequence[str], conditions: Conditions = PLAIN
) -> dict[str, np.ndarray]:
    """The float64 waveforms of one slice on the given devices, made by generator family ``"b"``.

    a, b and c hear the same sound field in the location's room; s1-s6 are made from a's clip (its spectrum,
    rendered even when a itself is not requested) and brought to a's level times their sensitivity.
    """
    spectrum, site = room_field(seed, clip, conditions)
    level_db = site.level_db + _rng(seed, f"cross/segment/{clip.identifier}-{clip.segment}").normal(0.0, 1.5)
    spectrum = spectrum * 10.0 ** (level_db / 20.0)
    mic_of = functools.partial(_mic, seed, colour=conditions.device_colour, noise_db=conditions.device_noise_db)

    def rng_of(name: str) -> np.random.Generator:
        return _rng(seed, f"cross/clip/{dataclasses.replace(clip, device=name).filename}")

    a = _record(spectrum, mic_of("a"), rng_of("a"))
    a_spectrum, a_rms = np.fft.rfft(a), _rms(a)
    out: dict[str, np.ndarray] = {}
    for name in devices:
        mic = mic_of(name)
        if name == "a":
            out[name] = a
        elif name in _SIMULATED:
            x = _record(a_spectrum, mic, rng_of(name))
            out[name] = x * (a_rms * 10.0 ** (mic.gain_db / 20.0) / _rms(x))
        else:
            out[name] = _record(spectrum * 10.0 ** (mic.gain_db / 20.0), mic, rng_of(name))
    return out
