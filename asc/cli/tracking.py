"""Whether W&B logs online or offline, decided once per ``asc`` command from the user's environment.

W&B's own default is online: with no credentials ``wandb.init`` prompts for a key or stops on "No API key
configured", and a machine without network or account would never get to train. So every command is offline
unless the user asked for online: ``WANDB_MODE`` set (any value is the user's choice), credentials in the
environment (``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``), or a ``wandb login`` entry for the W&B host
in the netrc file. The netrc matters for sweeps: ``wandb agent`` finds the key there and does not export it
to the trials it starts, so a trial that looked at the environment alone would log offline and the sweep
server would never get its metric. Deciding reads files and variables only, never the network.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from urllib.parse import urlsplit

#: W&B's public server, used when ``WANDB_BASE_URL`` does not name another one.
DEFAULT_BASE_URL = "https://api.wandb.ai"


def wandb_mode(environ: Mapping[str, str] | None = None) -> str:
    """W&B's mode for this command: the user's ``WANDB_MODE``, else ``online`` when credentials are at hand
    (the user has set W&B up on this machine), else ``offline`` (no prompt, no network attempt)."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE") or has_netrc_login(environ):
        return "online"
    return "offline"


def apply_wandb_mode(environ: MutableMapping[str, str] | None = None) -> str:
    """Put the decision where W&B and every child process (loader workers, DDP ranks) read it.

    Offline is exported as ``WANDB_MODE=offline``. Online leaves ``WANDB_MODE`` unset: W&B's default is online,
    and a ``wandb offline`` or ``wandb disabled`` the user ran (stored in W&B's settings file, which the
    variable would override) still applies. ``WANDB_SILENT=true`` unless set: W&B's banner is noise in logs."""
    environ = os.environ if environ is None else environ
    mode = wandb_mode(environ)
    if mode == "offline" and not environ.get("WANDB_MODE"):
        environ["WANDB_MODE"] = "offline"
    elif environ.get("WANDB_MODE") == "":
        del environ["WANDB_MODE"]  # W&B rejects an empty mode; an empty variable is no choice
    environ.setdefault("WANDB_SILENT", "true")
    return mode


def wandb_host(environ: Mapping[str, str]) -> str:
    """The ``host[:port]`` that ``wandb login`` names in the netrc file: that of ``WANDB_BASE_URL``."""
    url = environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL
    return urlsplit(url if "//" in url else f"//{url}").netloc


def netrc_path(environ: Mapping[str, str]) -> Path:
    """The netrc file W&B reads: ``$NETRC``, else ``~/.netrc`` (``~/_netrc`` where only that one exists)."""
    if environ.get("NETRC"):
        return Path(environ["NETRC"]).expanduser()
    home = Path(environ.get("HOME") or Path.home())
    unix, windows = home / ".netrc", home / "_netrc"
    return windows if windows.is_file() and not unix.exists() else unix


def has_netrc_login(environ: Mapping[str, str]) -> bool:
    """Whether the netrc file holds a key for the W&B host, as ``wandb login`` writes it. A missing,
    unreadable or malformed file is no login (W&B itself only warns about it); a ``default`` entry is
    another tool's, not a W&B login."""
    try:
        entries = netrc.netrc(str(netrc_path(environ)))
    except (OSError, ValueError, netrc.NetrcParseError):  # ValueError: a file that is not text
        return False
    entry = entries.hosts.get(wandb_host(environ))
    return bool(entry and entry[2])
