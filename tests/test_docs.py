"""The docs hold: every relative link and anchor of README.md and docs/ resolves, and every ``asc`` command in
their code blocks parses (Lightning commands with ``--print_config``, the others' options against ``--help``)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from asc.cli.main import LIGHTNING_COMMANDS, main
from tests.helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"^#{1,6} ", line)}


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(FENCE.sub("", page.read_text()))
            if not re.match(r"^[a-z]+:", target)]  # http:, https:, mailto:


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def commands(page: Path) -> list[list[str]]:
    """Every ``asc ...`` command line of the page's code blocks (continuations joined, ``$`` prompts and comments
    dropped)."""
    found = []
    for block in FENCE.findall(page.read_text()):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("asc ") and not line.startswith("asc: "):
                found.append(shlex.split(line.split(" #")[0]))
    return found


#: Options ``asc pipeline`` hands on to every stage's asc fit and asc test.
PASSED_ON = ("--trainer.", "--model.", "--data.", "--seed_everything")


def options(words: list[str]) -> list[str]:
    return [word.split("=")[0] for word in words if word.startswith("--") and word != "--"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_asc_command_in_the_docs_parses(page: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the docs' commands run from the repository root
    for words in commands(page):
        command, rest = words[1], words[2:]
        if command in LIGHTNING_COMMANDS:  # the options, with the config files they name
            rest = [word for position, word in enumerate(rest) if word != "--ckpt_path"
                    and (position == 0 or rest[position - 1] != "--ckpt_path") and not word.startswith("--ckpt_path=")]
            with pytest.raises(SystemExit) as exited:
                main([command, *rest, "--print_config"])
            assert exited.value.code in (0, None), f"{page.name}: {shlex.join(words)}: {capsys.readouterr().err}"
        elif command.startswith("-"):  # asc --version, asc --help
            assert main([command]) == 0, f"{page.name}: {shlex.join(words)}"
        else:
            with pytest.raises(SystemExit) as exited:
                main([command, "--help"])
            assert exited.value.code in (0, None), f"{page.name}: {shlex.join(words)}"
            helped = capsys.readouterr().out
            own = rest[: rest.index("--")] if "--" in rest else rest  # after --: every trial's asc fit arguments
            unknown = [option for option in options(own) if option not in helped and not option.startswith(PASSED_ON)]
            assert not unknown, f"{page.name}: {shlex.join(words)}: options {unknown} not in asc {command} --help"
        capsys.readouterr()
