"""The project's version, recorded in every test report (what measured it) and printed by ``asc --version``."""

__version__ = "0.1.0"
