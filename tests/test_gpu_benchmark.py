"""``benchmarks/gpu.py`` on a machine without a GPU: one line, nothing measured, a failing exit status."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import gpu


def test_without_a_gpu_it_measures_nothing_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--root", str(tmp_path / "data"), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip() == "benchmarks.gpu: no CUDA GPU visible: nothing measured"
    assert not (tmp_path / "out").exists()


def test_a_root_without_fold_files_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu.main(["--root", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert f"{tmp_path}: no evaluation_setup/fold1_train.csv" in capsys.readouterr().err


def test_the_epoch_counts_the_train_split(tmp_path: Path) -> None:
    setup = tmp_path / "evaluation_setup"
    setup.mkdir()
    (setup / "fold1_train.csv").write_text("filename\tscene_label\n" + "a.wav\tpark\n" * 7)
    assert gpu.train_clips(tmp_path) == 7
