"""Knowledge distillation for the stages after the tandem (feature selection, pruning, QAT).

Loss = λ·CE(student, labels) + (1 − λ)·T²·KL(softmax(teacher/T) ‖ softmax(student/T)) (Hinton et al.,
2015): a compressed student learns from the network it was compressed from, from an ensemble of
checkpoints, or from a file of teacher logits (the form in which teacher outputs for TAU22 are shared).

A teacher made of networks sees exactly the student's input: the same augmented and mixed batch. A
teacher from a file knows only the clips: with Mixup its logits are mixed with the same λ and partners.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asc.data.layout import SCENES
from asc.errors import AscError
from asc.files import atomic_write

#: ``model.teacher`` entry naming the network the stage starts from (``model.init_ckpt``).
INIT = "init"
#: ``model.teacher`` entry naming the teacher that ``model.init_ckpt`` itself learnt from: with ``init`` in
#: feature selection and ``inherit`` after it, the tandem teaches every compressed stage (not the previous,
#: already compressed one, whose losses would pass on).
INHERIT = "inherit"
#: ``model.teacher`` entry naming the teacher stage of ``asc pipeline`` (which puts its checkpoint's path there).
TEACHER_STAGE = "teacher"


def kd_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T²·KL(p_teacher ‖ p_student) with both softened by T, averaged over the batch; zero when they agree.

    The T² keeps the gradient's size independent of T (the soft targets' gradients scale as 1/T²).
    """
    log_student = F.log_softmax(student / temperature, dim=1)
    log_teacher = F.log_softmax(teacher.detach() / temperature, dim=1)
    return temperature**2 * F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)


def read_logits(path: Path) -> dict[str, Tensor]:
    """Teacher logits by file name from a tab-separated file: ``filename`` and one column per scene."""
    if not path.is_file():
        raise AscError(f"model.teacher: {path}: logits file not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    expected = ["filename", *SCENES]
    if not rows or [cell.strip() for cell in rows[0]] != expected:
        raise AscError(f"{path}:1: columns must be {' '.join(expected)} (tab-separated)")
    logits: dict[str, Tensor] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(expected):
            raise AscError(f"{path}:{line}: {len(row)} columns, expected {len(expected)}")
        try:
            values = [float(cell) for cell in row[1:]]
        except ValueError:
            raise AscError(f"{path}:{line}: logits must be numbers") from None
        logits[_key(row[0])] = torch.tensor(values)
    return logits


def write_logits(path: Path, filenames: Sequence[str], logits: Tensor) -> None:
    """The format ``read_logits`` reads (file names as in the fold files, e.g. ``audio/x.wav``)."""
    lines = ["\t".join(["filename", *SCENES])]
    lines += ["\t".join([name, *(f"{value:.6f}" for value in row)])
              for name, row in zip(filenames, logits.tolist(), strict=True)]
    atomic_write(path, "\n".join(lines) + "\n")


def _key(filename: str) -> str:
    """Files are matched by name without folders: ``audio/x.wav`` and ``x.wav`` are one clip."""
    return Path(filename.strip()).name


class Teacher(nn.Module):
    """Frozen networks (averaged logits) or a table of logits aligned with the training clips."""

    def __init__(self, networks: Sequence[nn.Module] = (), table: Tensor | None = None) -> None:
        super().__init__()
        if not networks and table is None:
            raise AscError("model.teacher: no teacher given")
        self.networks = nn.ModuleList(networks)
        for parameter in self.networks.parameters():
            parameter.requires_grad_(False)
        self.register_buffer("table", table, persistent=False)
        self.train(False)

    @classmethod
    def from_file(cls, path: Path, filenames: Sequence[str]) -> Teacher:
        """The logits of ``filenames`` (the training clips, in dataset order); a missing one stops in one line."""
        logits = read_logits(path)
        missing = [name for name in filenames if _key(name) not in logits]
        if missing:
            raise AscError(f"model.teacher: {path} has no logits for {missing[0]}"
                           + (f" ({len(missing)} training clips missing)" if len(missing) > 1 else ""))
        return cls(table=torch.stack([logits[_key(name)] for name in filenames]))

    def train(self, mode: bool = True) -> Teacher:
        """A teacher always predicts as in evaluation (batch norm statistics, no dropout)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor, index: Tensor, partner: Tensor | None = None, lam: Tensor | None = None) -> Tensor:
        """Teacher logits for a batch: the networks on the student's input ``x`` (already mixed), or the table
        rows of clips ``index`` mixed with ``partner`` by ``lam`` as Mixup mixed the inputs."""
        if len(self.networks):
            self.networks.eval()  # Lightning may restore a module's training flag directly, bypassing train()
            return torch.stack([network(x) for network in self.networks]).mean(dim=0)
        logits = self.table[index.to(self.table.device)].to(x.device)
        if partner is not None and lam is not None:
            logits = lam.view(-1, 1) * logits + (1 - lam.view(-1, 1)) * logits[partner]
        return logits

    def descriptions(self) -> list[dict[str, Any]]:
        from asc.models.architecture import describe

        return [describe(network) for network in self.networks]


def build_teacher(sources: Sequence[str], stage: Any) -> Teacher:
    """The teacher of ``model.teacher``: ``init`` (a frozen copy of the network the stage starts from,
    taken before it changes), ``inherit`` (the teacher networks ``model.init_ckpt`` was trained with),
    checkpoints of any stage (their front end must be the stage's), or one logits file (its rows aligned
    with the stage's training clips)."""
    import copy

    from asc.compress.checkpoint import check_features, model_from_checkpoint, read_checkpoint, saved_features

    files = [source for source in sources if Path(source).suffix.lower() in (".tsv", ".csv", ".txt")]
    if files:
        if len(sources) > 1:
            raise AscError("model.teacher: a logits file is a teacher of its own (no other entries with it)")
        records = stage.trainer.datamodule.records("train")
        return Teacher.from_file(Path(files[0]), [record.filename for record in records])
    networks = []
    for source in sources:
        if source == INIT:
            networks.append(copy.deepcopy(stage.network))
            continue
        if source == INHERIT:
            networks.extend(inherited_teacher(stage.hparams.get("init_ckpt")))
            continue
        if source == TEACHER_STAGE:
            raise AscError(f"model.teacher: {TEACHER_STAGE!r} is the teacher stage of asc pipeline; outside the "
                           f"pipeline give that stage's checkpoint")
        checkpoint = read_checkpoint(source)
        check_features(saved_features(checkpoint, source), stage.features, f"model.teacher: {source}")
        networks.append(model_from_checkpoint(checkpoint))
    return Teacher(networks).to(stage.device)


def saved_teacher(checkpoint: dict[str, Any]) -> list[nn.Module]:
    """Untrained networks of the teacher a checkpoint records (its weights are under ``teacher.networks.N.``):
    what a resumed fit and ``inherit`` rebuild before loading them."""
    from asc.compress.checkpoint import ASC_KEY
    from asc.models.architecture import build

    return [build(description) for description in checkpoint[ASC_KEY].get("teacher") or []]


def inherited_teacher(init_ckpt: str | None) -> list[nn.Module]:
    """The frozen teacher networks, weights included, that the checkpoint ``init_ckpt`` learnt from."""
    from asc.compress.checkpoint import model_state, read_checkpoint

    if not init_ckpt:
        raise AscError(f"model.teacher: {INHERIT} takes the teacher of model.init_ckpt, which is not set")
    checkpoint = read_checkpoint(init_ckpt)
    networks = saved_teacher(checkpoint)
    if not networks:
        raise AscError(f"model.teacher: {INHERIT}: {init_ckpt} was trained without a teacher network "
                       "(name the teacher itself: its checkpoint or logits file; or use init)")
    for position, network in enumerate(networks):
        network.load_state_dict(model_state(checkpoint, f"teacher.networks.{position}."))
        network.eval()
    return networks
