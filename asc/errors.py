"""One exception type for a user's mistake, so the CLI can print one clear line instead of a traceback."""

from __future__ import annotations


class AscError(Exception):
    """A problem with the user's input (file, CSV line, config key) described in one line.

    The command line prints ``asc: error: <message>`` and exits with status 2; library callers
    can catch it like any other exception.
    """
