"""Writing the built-in dataset to disk: WAVs rendered slice by slice (in worker processes), then the CSVs.

A dataset root holds ``meta.csv``, ``evaluation_setup/fold1_*.csv`` and the ``audio/`` folder, plus a
marker file that lets ``synthesize`` overwrite its own earlier output but never anything else.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile

from asc.data.layout import AUDIO_DIR, FOLD_COLUMNS, FOLD_FILES, META_COLUMNS, META_FILE, SAMPLE_RATE, ClipName
from asc.data.synth.conditions import Conditions
from asc.data.synth.cross import render_recording as render_cross
from asc.data.synth.devices import IMPULSE_RESPONSE_DEVICES, impulse_response, render_recording
from asc.data.synth.planning import SPLITS, SynthRow, SynthSpec, plan
from asc.errors import AscError
from asc.files import atomic_path, atomic_write
from asc.progress import Progress

#: Written first into a dataset root; lets ``synthesize`` overwrite its own output but nothing else.
MARKER_FILE = ".asc_synth.json"
#: Impulse responses of other microphones (``devices.IMPULSE_RESPONSE_DEVICES``), for ``model.device_irs``.
IMPULSE_RESPONSE_DIR = "impulse_responses"
GENERATOR_VERSION = 1
_GENERATOR = "asc.data.synth"

#: One unit of work: (root, seed, a clip name of the slice, the devices of that slice to write, the conditions,
#: the generator family).
_Job = tuple[str, int, ClipName, tuple[str, ...], Conditions, str]
#: The renderer of each generator family (``SynthSpec.family``).
RENDERERS = {"a": render_recording, "b": render_cross}
_PEAK = 1.0 - 2.0**-23  # largest 24-bit sample


def _jobs(root: Path, seed: int, rows: Sequence[SynthRow], spec: SynthSpec) -> list[_Job]:
    """Group planned clips by slice: the devices of a slice share one sound field and device a's signal."""
    slices: dict[tuple[str, ...], list[str]] = {}
    names: dict[tuple[str, ...], ClipName] = {}
    for row in rows:
        c = row.clip
        key = (c.scene, c.city, c.location, c.segment, c.slice)
        slices.setdefault(key, []).append(c.device)
        names.setdefault(key, c)
    return [(str(root), seed, names[key], tuple(devices), spec.conditions, spec.family)
            for key, devices in slices.items()]


def _write_job(job: _Job) -> int:
    """Render one slice and write its WAVs (24-bit PCM); returns the number of files written."""
    root, seed, clip, devices, conditions, family = job
    for name, audio in RENDERERS[family](seed, clip, devices, conditions).items():
        path = Path(root) / dataclasses.replace(clip, device=name).filename
        write_wav(path, np.clip(audio, -_PEAK, _PEAK))
    return len(devices)


def write_wav(path: Path, audio: np.ndarray) -> None:
    """A 24-bit PCM WAV at the dataset's rate, whole or not at all (a full disk is one line naming the file)."""
    with atomic_path(path, "cannot write the clip") as partial:
        try:
            soundfile.write(str(partial), audio, SAMPLE_RATE, subtype="PCM_24", format="WAV")
        except soundfile.LibsndfileError as error:  # libsndfile reports a full disk as its own error
            raise OSError(errno.EIO, str(error)) from None


def _run_jobs(jobs: list[_Job], total: int, workers: int, progress: bool) -> Iterator[int]:
    """Yield per-job file counts, in worker processes when ``workers`` > 1, with optional progress (``Progress``)."""
    bar = Progress(total, "synthetic dataset", unit="clip", enabled=progress)
    try:
        if workers > 1:
            import multiprocessing

            context = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
            with context.Pool(workers) as pool:
                for count in pool.imap_unordered(_write_job, jobs, chunksize=8):
                    bar.update(count)
                    yield count
        else:
            for job in jobs:
                count = _write_job(job)
                bar.update(count)
                yield count
    finally:
        bar.close()


def _write_tsv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A tab-separated file with a header, written under a temporary name and renamed into place."""
    atomic_write(path, "".join("\t".join(fields) + "\n" for fields in [columns, *rows]))


def _csv_files(root: Path) -> list[Path]:
    """meta.csv and the fold files of a dataset root."""
    return [root / META_FILE, *(root / name for name in FOLD_FILES.values())]


def _prepare_root(root: Path, spec: SynthSpec, seed: int) -> None:
    """Create ``root``, or take over a dataset written by synth; refuse anything else (foreign data)."""
    marker = root / MARKER_FILE
    if root.exists():
        if not root.is_dir():
            raise AscError(f"{root}: exists and is not a directory; refusing to write a dataset there")
        if any(root.iterdir()) and not _is_synth_marker(marker):
            raise AscError(f"{root}: directory is not empty and was not written by asc synth; refusing to overwrite")
    for path in _csv_files(root):  # CSVs first: a dataset without them is visibly incomplete
        path.unlink(missing_ok=True)
    (root / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    (root / FOLD_FILES["train"]).parent.mkdir(parents=True, exist_ok=True)
    _write_marker(root, spec, seed, complete=False)


def _is_synth_marker(path: Path) -> bool:
    """True when ``path`` is the marker file of a dataset written by this module."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("generator") == _GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _write_marker(root: Path, spec: SynthSpec, seed: int, *, complete: bool) -> None:
    """The marker file: who wrote the root, with which spec and seed, and whether the dataset is complete."""
    payload = {"generator": _GENERATOR, "version": GENERATOR_VERSION, "seed": seed,
               "spec": spec.changed_fields(), "complete": complete}
    atomic_write(root / MARKER_FILE, json.dumps(payload, indent=1) + "\n")


def _remove_stale_audio(root: Path, rows: Sequence[SynthRow]) -> None:
    """Delete WAVs of an earlier synth run into the same root that the new plan does not list."""
    keep = {row.clip.filename.rsplit("/", 1)[-1] for row in rows}
    for path in (root / AUDIO_DIR).glob("*.wav"):
        if path.name not in keep:
            path.unlink()


def _write_impulse_responses(root: Path, spec: SynthSpec, seed: int) -> None:
    """``impulse_responses/mic01.wav`` ...: responses of microphones that recorded nothing (24-bit PCM like the
    clips: libsndfile stamps float WAVs with the time of writing, which would break same-seed-same-bytes).

    Always family ``"a"``'s microphones, whatever ``spec.family``: on family ``"b"`` the augmentation then draws
    from another family of devices than the dataset's own (see ``cross``)."""
    folder = root / IMPULSE_RESPONSE_DIR
    folder.mkdir(exist_ok=True)
    for name in IMPULSE_RESPONSE_DEVICES:
        response = impulse_response(seed, name, spec.conditions) * _PEAK
        write_wav(folder / f"{name}.wav", response)


def write_csvs(root: Path, rows: Sequence[SynthRow]) -> dict[str, int]:
    """The fold files, then meta.csv, of planned ``rows`` (no audio: all that reading the index needs); returns the
    clip counts per file."""
    (root / FOLD_FILES["train"]).parent.mkdir(parents=True, exist_ok=True)
    folds = {split: [r for r in rows if r.split == split] for split in SPLITS}
    _write_tsv(root / FOLD_FILES["train"], FOLD_COLUMNS["train"],
               [(r.clip.filename, r.clip.scene) for r in folds["train"]])
    _write_tsv(root / FOLD_FILES["evaluate"], FOLD_COLUMNS["evaluate"],
               [(r.clip.filename, r.clip.scene) for r in folds["evaluate"]])
    _write_tsv(root / FOLD_FILES["test"], FOLD_COLUMNS["test"], [(r.clip.filename,) for r in folds["evaluate"]])
    _write_tsv(root / META_FILE, META_COLUMNS,
               [(r.clip.filename, r.clip.scene, r.clip.identifier, r.clip.device) for r in rows])
    return {"meta": len(rows), "train": len(folds["train"]), "evaluate": len(folds["evaluate"]),
            "test": len(folds["evaluate"])}


def synthesize(
    root: Path, spec: SynthSpec, *, seed: int = 0, workers: int = 1, progress: bool = True
) -> dict[str, int]:
    """Write the whole dataset under ``root``; returns clip counts {"meta", "train", "evaluate", "test"}.

    ``root`` must be absent, empty or an earlier output of this function (marked by ``.asc_synth.json``).
    Audio is written first and the CSV files last, so an interrupted run leaves no meta.csv behind.
    """
    root = Path(root)
    rows = plan(spec, seed)
    _prepare_root(root, spec, seed)
    _remove_stale_audio(root, rows)
    jobs = _jobs(root, seed, rows, spec)
    written = sum(_run_jobs(jobs, len(rows), max(1, int(workers)), progress))
    if written != len(rows):
        raise AscError(f"{root}: wrote {written} of {len(rows)} planned clips")
    _write_impulse_responses(root, spec, seed)
    counts = write_csvs(root, rows)
    _write_marker(root, spec, seed, complete=True)
    return counts
