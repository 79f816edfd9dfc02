"""The feature front end: our log-mel against librosa's per-clip pipeline, the cache build, and cached reads.

    python -m benchmarks.feature_cache [--root DIR | --size tiny] [--workers N] [--clips 256]

Generates a built-in dataset in a temporary folder (or uses --root) and prints one table. ``make bench``
(``benchmarks/run.py``) uses :func:`front_end_rows` on its own data.

Why these comparisons: the cache exists because computing features costs more than training reads
(``asc/data/cache.py``), and the front end is a torch op rather than librosa so that it batches and
exports. Both claims are ratios against the obvious alternative on the same files in the same run:
librosa's ``load`` (with resampling) + ``feature.melspectrogram`` + log per clip, the same settings.
Both sides run in this one process with one thread (torch and BLAS), so that the ratio compares code,
not core counts.

Both pipelines read and resample every clip (soxr_hq 44.1 -> 16 kHz; librosa reads through soundfile, ours
decodes 24-bit PCM with numpy and calls soxr without librosa's checks: the same numbers), and that
loading is most of the time of ours; so the same run also times the loading alone, ours (``load_clips``)
against ``librosa.load``, and the log-mel alone on the decoded waveforms, ours against librosa's
``melspectrogram`` + log on the same arrays.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from asc.data.audio import RESAMPLE_TYPE, AudioIssues, fit_length, load_clips
from asc.data.cache import CHUNK, FRONT_END_BLOCK, FeatureCache, compute_logmels, logmels_of
from asc.data.features import FeatureSettings, LogMel
from benchmarks.report import Row, machine, text_table, with_ratios
from benchmarks.timing import alternate, time_once

SECTION = "front end"
OURS = "asc log-mel"
LIBROSA = "librosa per clip"
CACHED = "cache reads"
LOADING = "asc audio loading alone"
LIBROSA_LOADING = "librosa audio loading alone"
OURS_FROM_WAVES = "asc log-mel from waveforms"
LIBROSA_FROM_WAVES = "librosa log-mel from waveforms"


def librosa_logmel(path: Path, settings: FeatureSettings) -> np.ndarray:
    """librosa's per-clip pipeline with our settings: what a user would write without this project."""
    return librosa_from_wave(librosa_wave(path, settings), settings)


def librosa_wave(path: Path, settings: FeatureSettings) -> np.ndarray:
    """``librosa.load`` at the front end's rate (soxr_hq), cut or padded to the clip (ours are 1 s: the same)."""
    import librosa

    audio, _ = librosa.load(path, sr=settings.sample_rate, mono=True, res_type=RESAMPLE_TYPE)
    return fit_length(audio, settings.clip_samples)


def librosa_from_wave(audio: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """librosa's log-mel of one decoded waveform at the front end's rate."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=audio, sr=settings.sample_rate, n_fft=settings.fft_size, hop_length=settings.hop_length,
        win_length=settings.win_length, window="hann", center=True, pad_mode=settings.pad_mode, power=2.0,
        n_mels=settings.n_mels, fmin=settings.fmin, fmax=settings.fmax, htk=False, norm="slaney",
    )
    return np.log(mel + settings.log_offset)


def loaded(root: Path, names: Sequence[str], settings: FeatureSettings) -> np.ndarray:
    """The clips ``(clips, samples)`` as ``compute_logmels`` reads them (``load_clips``)."""
    return load_clips([root / name for name in names], sample_rate=settings.sample_rate,
                      seconds=settings.clip_seconds, issues=AudioIssues(), names=names)


def ours_from_waves(waves: np.ndarray, front_end: LogMel) -> np.ndarray:
    """The front end alone on decoded waveforms ``(clips, samples)``, as the cache build runs it."""
    return logmels_of(waves, front_end)


def ours(root: Path, names: Sequence[str], settings: FeatureSettings) -> np.ndarray:
    """The project's path: chunks of 64 clips through ``compute_logmels``, as the cache build runs it."""
    blocks = [compute_logmels(root, names[i : i + CHUNK], settings, AudioIssues()) for i in range(0, len(names), CHUNK)]
    return np.concatenate(blocks)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread and one BLAS thread while the comparison runs; both restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with librosa's scikit-learn; without it BLAS keeps its threads
        limits: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)


def front_end_rows(root: Path, names: Sequence[str], settings: FeatureSettings, cache: FeatureCache | None = None,
                   repeats: int = 3) -> list[Row]:
    """clips/s of our front end, librosa's, and (given a built cache) reads from the cache, on ``names``."""
    names = list(names)
    difference = float(np.abs(ours(root, names[:1], settings)[0] - librosa_logmel(root / names[0], settings)).max())
    waves, front_end = loaded(root, names, settings), LogMel(settings)
    candidates = {OURS: lambda: ours(root, names, settings),
                  LIBROSA: lambda: [librosa_logmel(root / name, settings) for name in names],
                  LOADING: lambda: loaded(root, names, settings),
                  LIBROSA_LOADING: lambda: [librosa_wave(root / name, settings) for name in names],
                  OURS_FROM_WAVES: lambda: ours_from_waves(waves, front_end),
                  LIBROSA_FROM_WAVES: lambda: [librosa_from_wave(wave, settings) for wave in waves]}
    if cache is not None and cache.is_complete():
        rows = [cache.filenames.index(name) for name in names]
        data = cache.open()
        candidates[CACHED] = lambda: [np.asarray(data[row], dtype=np.float32) for row in rows]
    with single_thread():
        timings = alternate(candidates, repeats=repeats, warmup=1)
    note = f"{len(names)} clips, 1 thread"
    result = [
        Row(SECTION, LIBROSA, timings[LIBROSA].rate(len(names)), "clips/s",
            note=f"load (soxr_hq resampling) + melspectrogram + log; {note}"),
        Row(SECTION, OURS, timings[OURS].rate(len(names)), "clips/s", LIBROSA,
            note=f"compute_logmels, chunks of {CHUNK}; {note}; max |asc - librosa| {difference:.2g}"),
        Row(SECTION, LIBROSA_LOADING, timings[LIBROSA_LOADING].rate(len(names)), "clips/s",
            note=f"librosa.load (soundfile, soxr_hq to 16 kHz); {note}"),
        Row(SECTION, LOADING, timings[LOADING].rate(len(names)), "clips/s", LIBROSA_LOADING,
            note=f"load_clips (numpy 24-bit PCM decoder, soxr_hq), the same numbers; {note}"),
        Row(SECTION, LIBROSA_FROM_WAVES, timings[LIBROSA_FROM_WAVES].rate(len(names)), "clips/s",
            note=f"melspectrogram + log on the decoded 1-s waveforms; {note}"),
        Row(SECTION, OURS_FROM_WAVES, timings[OURS_FROM_WAVES].rate(len(names)), "clips/s", LIBROSA_FROM_WAVES,
            note=f"LogMel on the same waveforms, {FRONT_END_BLOCK} clips a call; {note}"),
    ]
    if CACHED in timings:
        result.append(Row(SECTION, CACHED, timings[CACHED].rate(len(names)), "clips/s", OURS,
                          note=f"float16 memmap rows to float32; {note}"))
    return result


def cache_build_row(root: Path, workers: int, cache_dir: Path, settings: FeatureSettings) -> tuple[Row, FeatureCache]:
    """One full cache build (too long to repeat), as ``asc cache`` runs it."""
    from asc.data.datamodule import DCASEDataModule

    data = DCASEDataModule(str(root), features=settings, cache_dir=str(cache_dir), cache_workers=workers,
                           progress=False)
    store = data.feature_cache
    seconds = time_once(lambda: store.build(workers=workers, progress=False))
    size_kib = store.data_path.stat().st_size / 1024 / store.shape[0]
    row = Row(SECTION, f"cache build ({workers} workers)", store.shape[0] / seconds, "clips/s", OURS,
              note=f"{store.shape[0]} clips in {seconds:.1f} s, worker start and imports included; "
                   f"{size_kib:.1f} KiB per clip")
    return row, store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="an existing dataset root (default: synthesize one)")
    parser.add_argument("--size", default="tiny", choices=("tiny", "demo", "full"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--clips", type=int, default=256, help="clips of the front-end comparison")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            from asc.data.synth import SynthSpec, synthesize

            root = Path(tmp) / "data"
            synthesize(root, SynthSpec.preset(args.size), workers=args.workers, progress=False)
        settings = FeatureSettings()
        build, store = cache_build_row(root, args.workers, Path(tmp) / "cache", settings)
        names = store.filenames[: args.clips]
        rows = with_ratios(front_end_rows(root, names, settings, store) + [build])
    print(text_table(rows, machine(), {"workers": args.workers}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
