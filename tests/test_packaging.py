"""The distribution has a name of its own: ``asc`` on PyPI is an unrelated 2017 package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_distribution_is_not_named_like_the_unrelated_pypi_package() -> None:
    from importlib.metadata import distribution

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "asc-dcase2022" and project["scripts"]["asc"] == "asc.cli.main:main"
    assert distribution("asc-dcase2022").entry_points.select(group="console_scripts", name="asc")
    from asc.version import __version__

    assert distribution("asc-dcase2022").version == __version__ and project.get("version") is None  # one home


def test_no_install_instruction_names_the_unrelated_package() -> None:
    texts = [ROOT / "README.md", *ROOT.glob("asc/**/*.py"), ROOT / "Makefile"]
    wrong = re.compile(r"pip install (-U |--upgrade )?['\"]?asc(\[|['\"\s]|$)")
    for path in texts:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not wrong.search(line), f"{path}:{number}: {line}"
