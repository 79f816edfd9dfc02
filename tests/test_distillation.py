"""Knowledge distillation: the loss, teachers from networks or a logits file, and a stage that learns from one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from asc.cli.main import main
from asc.data.layout import SCENES
from asc.errors import AscError
from asc.training.distillation import Teacher, inherited_teacher, kd_loss, read_logits, write_logits
from tests.helpers import layered, tandem_checkpoint, tiny_configs


def test_kd_loss_is_zero_for_the_teacher_and_pulls_the_student_towards_it() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(8, 10) * 3
    assert kd_loss(teacher.clone(), teacher, temperature=2.0).abs() < 1e-6
    student = torch.randn(8, 10, requires_grad=True)
    before = kd_loss(student, teacher, 2.0)
    before.backward()
    with torch.no_grad():
        stepped = student - 0.5 * student.grad
    assert kd_loss(stepped, teacher, 2.0) < before
    # The gradient points from the student's soft distribution to the teacher's: (p_s - p_t)·T/batch.
    p_s, p_t = (torch.softmax(t / 2.0, dim=1) for t in (student.detach(), teacher))
    assert torch.allclose(student.grad, (p_s - p_t) * 2.0 / 8, atol=1e-6)


def test_a_logits_file_round_trips_and_names_a_missing_clip(tmp_path: Path) -> None:
    names = [f"audio/clip-{n}.wav" for n in range(4)]
    logits = torch.randn(4, len(SCENES))
    write_logits(tmp_path / "teacher.tsv", names, logits)
    read = read_logits(tmp_path / "teacher.tsv")
    assert torch.allclose(torch.stack([read[f"clip-{n}.wav"] for n in range(4)]), logits, atol=1e-5)
    teacher = Teacher.from_file(tmp_path / "teacher.tsv", list(reversed(names)))  # aligned with the clips
    x, index = torch.zeros(2, 1, 8, 4), torch.tensor([0, 3])
    assert torch.allclose(teacher(x, index), logits[[3, 0]], atol=1e-5)
    lam, partner = torch.tensor([0.25, 1.0]), torch.tensor([1, 0])
    mixed = teacher(x, index, partner, lam)  # Mixup: the rows mixed like the inputs
    assert torch.allclose(mixed[0], 0.25 * logits[3] + 0.75 * logits[0], atol=1e-5)
    with pytest.raises(AscError, match=r"teacher\.tsv has no logits for audio/other\.wav"):
        Teacher.from_file(tmp_path / "teacher.tsv", [*names, "audio/other.wav"])
    (tmp_path / "bad.tsv").write_text("filename\tairport\n")
    with pytest.raises(AscError, match=r"bad\.tsv:1: columns must be filename airport bus"):
        read_logits(tmp_path / "bad.tsv")


def teacher_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The first teacher network's weights a stage's checkpoint carries, by the plain module's keys."""
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return {k[len("teacher.networks.0."):]: v for k, v in state.items() if k.startswith("teacher.")}


@pytest.mark.slow
def test_the_tandem_teaches_feature_selection_and_pruning_inherits_it(shared_mini_root: Path,
                                                                      tmp_path: Path) -> None:
    configs = tiny_configs(tmp_path / "configs")
    start = tandem_checkpoint(tmp_path / "tandem.ckpt")
    out = tmp_path / "fs"
    common = ["--data.root", str(shared_mini_root), "--trainer.default_root_dir", str(out)]
    assert main(["fit", *layered(configs, "feature_selection"), *common, f"--model.init_ckpt={start}",
                 "--model.teacher=[init]", "--model.kd_lambda=0"]) == 0
    # λ = 0: the loss is the distillation term alone (the last step retrains the compressed network, so no
    # ADMM term is added): the teacher's soft targets are what the student learns from.
    metrics = json.loads((out / "fit_metrics.json").read_text())["metrics"]
    assert metrics["train/loss"] == pytest.approx(metrics["train/kd_loss"], rel=1e-6)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["asc"]["teacher"][0]["type"] == "tandem" and ckpt["asc"]["teacher"][0]["bands"] is None
    teacher = teacher_weights(out / "checkpoints" / "last.ckpt")
    original = torch.load(start, weights_only=True)["state_dict"]
    assert all(torch.equal(value, original[f"model.{key}"]) for key, value in teacher.items())  # frozen
    assert main(["test", "--ckpt_path", str(out / "checkpoints" / "last.ckpt"), *common]) == 0
    # The stage after it inherits that teacher: the tandem, weights included, not the band-selected network.
    [inherited] = inherited_teacher(str(out / "checkpoints" / "last.ckpt"))
    assert inherited.state_dict().keys() == teacher.keys()
    assert all(torch.equal(value, original[f"model.{key}"]) for key, value in inherited.state_dict().items())
    with pytest.raises(AscError, match=r"tandem\.ckpt was trained without a teacher network"):
        inherited_teacher(str(start))
    with pytest.raises(AscError, match=r"inherit takes the teacher of model\.init_ckpt, which is not set"):
        inherited_teacher(None)

    pruned = tmp_path / "pruned"
    prune = ["fit", *layered(configs, "pruning"), "--data.root", str(shared_mini_root), "--model.teacher=[inherit]",
             "--model.kd_lambda=0"]
    assert main([*prune, "--trainer.default_root_dir", str(pruned),
                 f"--model.init_ckpt={out / 'checkpoints' / 'last.ckpt'}"]) == 0
    metrics = json.loads((pruned / "fit_metrics.json").read_text())["metrics"]
    assert metrics["train/loss"] == pytest.approx(metrics["train/kd_loss"], rel=1e-6)
    ckpt = torch.load(pruned / "checkpoints" / "last.ckpt", weights_only=True)
    teacher = teacher_weights(pruned / "checkpoints" / "last.ckpt")
    assert ckpt["asc"]["teacher"][0]["bands"] is None and teacher.keys() == {
        k[len("model."):] for k in original if k.startswith("model.")}
    assert all(torch.equal(value, original[f"model.{key}"]) for key, value in teacher.items())
    assert main([*prune, "--trainer.default_root_dir", str(tmp_path / "no"), f"--model.init_ckpt={start}"]) != 0
