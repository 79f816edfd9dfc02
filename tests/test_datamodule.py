"""The DataModule yields log-mels with labels, devices and cities, with the cache on or off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asc.data.datamodule import DCASEDataModule
from asc.data.features import FeatureSettings
from asc.errors import AscError
from tests.helpers import write_tone


def _module(root: Path, **kwargs) -> DCASEDataModule:
    defaults = dict(batch_size=4, features=FeatureSettings(n_mels=32), cache_workers=0, progress=False)
    return DCASEDataModule(str(root), **{**defaults, **kwargs})


def test_batches_carry_labels_devices_and_cities(mini_root: Path) -> None:
    data = _module(mini_root)
    data.prepare_data()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["x"].shape == (4, 1, 32, 34) and batch["x"].dtype == torch.float32
    assert set(batch) == {"x", "label", "device", "city", "index"}
    val = next(iter(data.val_dataloader()))
    assert val["device"].tolist() == [0, 6, 2, 0]  # a, s4, c, a: the evaluate fold in file order
    assert val["city"].tolist() == [1, 1, 1, 1]  # prague


def test_cache_on_and_off_agree(mini_root: Path) -> None:
    cached, direct = _module(mini_root), _module(mini_root, cache=False)
    cached.prepare_data()
    for module in (cached, direct):
        module.setup("test")
    a = next(iter(cached.test_dataloader()))["x"]
    b = next(iter(direct.test_dataloader()))["x"]
    assert torch.allclose(a, b, atol=2e-2, rtol=2e-3)


def test_holdout_validation_uses_training_locations(mini_root: Path) -> None:
    data = _module(mini_root, val_split="holdout", holdout_fraction=0.5)
    splits = data.splits
    assert not {r.identifier for r in splits.train} & {r.identifier for r in splits.val}
    assert {r.filename for r in splits.val} <= set(data.index.filenames("train"))
    assert data.records("train") == splits.train  # one split alone (a logits teacher's rows) is the same draw


def test_recoverable_audio_gives_one_summary_warning(mini_root: Path) -> None:
    write_tone(mini_root / "audio/bus-lisbon-1010-41000-0-a.wav", 5, rate=22_050)
    write_tone(mini_root / "audio/park-prague-1021-42100-0-a.wav", 6, channels=2)
    data = _module(mini_root)
    with pytest.warns(UserWarning, match=r"1 clip\(s\) at 22050 Hz.*1 clip\(s\) downmixed from stereo") as record:
        data.prepare_data()
    assert len(record) == 1


def test_bad_settings_name_the_key(mini_root: Path) -> None:
    with pytest.raises(AscError, match=r"data\.val_split: 'test' is not one of evaluate, holdout"):
        _module(mini_root, val_split="test")
    with pytest.raises(AscError, match=r"data\.holdout_fraction: 1\.5"):
        _ = _module(mini_root, val_split="holdout", holdout_fraction=1.5).splits


def test_missing_wav_stops_before_any_work(mini_root: Path) -> None:
    (mini_root / "audio/park-prague-1021-42100-0-s5.wav").unlink()
    with pytest.raises(AscError, match=r"park-prague-1021-42100-0-s5\.wav: listed in meta\.csv line 13 but missing"):
        _module(mini_root).prepare_data()


def test_on_the_fly_features_announce_repairs_once(mini_root: Path) -> None:
    """Without the cache every epoch loads the clips again; the repairs are still counted once per clip."""
    import warnings

    write_tone(mini_root / "audio/bus-lisbon-1010-41000-0-a.wav", 5, rate=22_050)
    data = _module(mini_root, cache=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data.prepare_data()
        data.setup("fit")
        for _epoch in range(2):
            for _batch in data.train_dataloader():
                pass
        data.teardown("fit")
    lines = [str(w.message) for w in record if "audio fixed" in str(w.message)]
    assert lines == ["audio fixed while loading: 1 clip(s) at 22050 Hz instead of 44100 Hz "
                     "(first audio/bus-lisbon-1010-41000-0-a.wav)"], lines


def test_a_stage_builds_only_the_splits_it_reads(mini_root: Path) -> None:
    """asc validate and asc test never hold the training split's clips (139,620 at TAU22's size)."""
    data = _module(mini_root)
    data.setup("validate")
    assert set(data.datasets) == {"val"}
    data.setup("test")
    assert set(data.datasets) == {"val", "test"}
    next(iter(data.train_dataloader()))
    assert set(data.datasets) == {"val", "test", "train"}


def test_a_worker_receives_rows_not_file_names(mini_root: Path) -> None:
    """What a DataLoader worker gets (the pickled dataset) reads the same clips from the cache, without the file
    names or the cache's file list, so that its memory does not grow with the data set."""
    import pickle

    data = _module(mini_root)
    data.prepare_data()
    data.setup("fit")
    dataset = data.datasets["train"]
    payload = pickle.dumps(dataset)
    assert b".wav" not in payload
    copy = pickle.loads(payload)
    assert len(copy) == len(dataset)
    for index in range(len(dataset)):
        for key, value in dataset[index].items():
            assert torch.equal(copy[index][key], value), key
    assert dataset.filename(0) == dataset.filenames[0] and dataset.filenames[0].endswith(".wav")
