"""The peer, CP-Mobile (the DCASE 2024 Task 1 baseline network), trained from scratch with its own recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from asc import load_model
from asc.models import CPMobile
from tests.helpers import REPO, changed, config, one_error_line, printed_config, run

#: The peer's recipe on the built-in data: the shared base files, then configs/peer.yaml.
PEER = [*config("peer"), "--config", str(REPO / "configs" / "peer.yaml")]


@pytest.mark.slow
def test_the_peer_trains_with_its_own_recipe(mini_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "peer"
    run("fit", *PEER,
        "--data.root", str(mini_root), "--trainer.default_root_dir", str(out), "--trainer.max_epochs=1",
        "--data.batch_size=4", "--data.cache_workers=0", "--data.progress=false")
    ckpt = out / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert "amsgrad" in saved["optimizer_states"][0]["param_groups"][0]  # AdamW, not the tandem's SGD
    assert saved["asc"]["features"]["sample_rate"] == 32000 and isinstance(load_model(ckpt), CPMobile)
    run("test", "--ckpt_path", str(ckpt))
    report = json.loads((out / "test" / "metrics.json").read_text())
    assert report["model"] == "CP-Mobile" and (report["params"], report["macs"]) == (61_148, 29_419_156)


def test_an_unknown_optimizer_is_one_line(mini_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = one_error_line(capsys, "fit", *PEER, "--data.root", str(mini_root), "--model.optimizer=adam",
                          "--trainer.default_root_dir", str(tmp_path / "p"))
    assert line == "asc: error: model.optimizer: 'adam' is not one of sgd, adamw"


def peer_config(capsys: pytest.CaptureFixture, *layers: str) -> dict:
    """The peer's config, with ``layers``' peer.yaml on top."""
    factors = [arg for layer in layers for arg in ("--config", str(REPO / "configs" / "layers" / layer / "peer.yaml"))]
    return printed_config(capsys, [*PEER, *factors, "--data.root", "unused"])


def test_each_factor_row_takes_one_thing_from_the_tandem_and_keeps_the_rest_of_the_peers_recipe(
        capsys: pytest.CaptureFixture) -> None:
    """The ablation's rows between the peer and the tandem (benchmarks/ablation.py) are only findings if each
    layer changes its own factor: the front end, the optimiser, or the network."""
    peer = peer_config(capsys)
    assert changed(peer, peer_config(capsys, "report_features")) == {
        "data.features.sample_rate", "data.features.win_ms", "data.features.hop_ms", "data.features.n_fft"}
    assert changed(peer, peer_config(capsys, "tandem_optimiser")) == {
        "model.init_args.optimizer", "model.init_args.lr", "model.init_args.weight_decay", "data.batch_size"}
    network = peer_config(capsys, "tandem_network")
    assert network["model"]["class_path"] == "asc.training.tandem.TandemStage"
    assert {k.split(".")[-1] for k in changed(peer, network)} == {
        "class_path", "report_name", "base_channels", "channels_multiplier", "expansion_rate", "width", "sub_bands",
        "dropout", "resnorm_lambda", "zero_init"}
