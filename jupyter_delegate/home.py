"""Where the user's own jupyter-delegate files live: `~/.jupyter/delegate/` (config.toml,
preferences.md, skills/, skills.lock, trusted/, cache/), or `$JUPYTER_DELEGATE_HOME` when set
(tests and shared machines use it). Nothing here is ever inside a repository.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "~/.jupyter/delegate"


def user_dir() -> Path:
    """The user's delegate folder (it may not exist yet)."""
    return Path(os.environ.get("JUPYTER_DELEGATE_HOME") or DEFAULT_HOME).expanduser()


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write a file whole or not at all (a temp file beside it, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(content.encode() if isinstance(content, str) else content)
    os.replace(tmp, path)
