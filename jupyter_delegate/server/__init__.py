"""The Jupyter server extension: the REST API under `/delegate/api/` and the phone page at
`/delegate/` (handlers.py), over the tasks of the repositories under the configured
roots (board.py).

Enabled on install by `etc/jupyter/jupyter_server_config.d/jupyter_delegate.json`, or by
hand: `jupyter server extension enable jupyter_delegate`. Settings, in
`jupyter_server_config.py` or on the command line:

    c.DelegateServer.roots = ["~/src"]   # default: the server's root_dir
    c.DelegateServer.control_timeout_s = 60

Decisions made here are journaled as the Jupyter server's (`via: server`), naming the
user it authenticated. Not here: the server does not run tasks it did not start (a
request for changes made here, to a task nobody runs, runs the next round in the
server's process, as the CLI would in its own).
"""

from __future__ import annotations

from typing import Any

from traitlets import Float, List, Unicode
from traitlets.config import Configurable


class DelegateServer(Configurable):
    """The settings of the server extension."""

    roots = List(
        Unicode(),
        default_value=[],
        help="Folders whose git repositories (up to 3 levels down) the API and the page "
        "show tasks of. Default: the server's root_dir.",
    ).tag(config=True)
    control_timeout_s = Float(
        60.0,
        help="How long a decision about a task another process runs waits for it to act.",
    ).tag(config=True)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the routes and the board (the tasks under the roots) to the server."""
    from ..manager import TaskManager
    from .board import Board
    from .handlers import handlers

    settings = DelegateServer(parent=serverapp)
    roots = settings.roots or [serverapp.root_dir]
    manager = TaskManager(via="server", control_timeout_s=settings.control_timeout_s)
    board = Board(roots, manager)
    web_app = serverapp.web_app
    web_app.settings["jupyter_delegate_board"] = board
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    serverapp.log.info("jupyter_delegate: tasks of the repositories under %s", board.roots)
