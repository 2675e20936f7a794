"""The last lines of a command's output while it runs, told to the views at most every
`TAIL_EVERY_S` (`OutputTail`).

A long command (a test suite, a build) shows its latest lines under the task's live
header before it ends. The sandbox hands each piece of output it reads to `feed`, on the
engine's loop; `OutputTail` keeps only the last `TAIL_BYTES` and tells its last
`TAIL_LINES` whole lines when `TAIL_EVERY_S` has passed since it last told, or, when
output arrived sooner, once that much time has passed (so the last lines before a quiet
spell are shown too). A flood of output costs one bounded copy per piece and one telling
per interval, never one per piece (bench/live_output.py).

Not here: journaling (the journal keeps the command's result as before: a tail told here
is a live event only), redaction (the caller redacts what it tells), and rendering.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

TAIL_LINES = 20  # lines told at most
TAIL_BYTES = 8192  # bytes of output kept: the last lines are in there
TAIL_EVERY_S = 0.5  # the most often the tail is told


class OutputTail:
    """Keeps the end of a running command's output and tells it, throttled, to `tell`."""

    def __init__(self, tell: Callable[[str], None], every_s: float = TAIL_EVERY_S) -> None:
        self._tell = tell
        self._every_s = every_s
        self._kept = bytearray()
        self._total = 0  # bytes fed in all
        self._told_at = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.told = 0  # how many times it told (bench and tests read it)

    def feed(self, piece: bytes) -> None:
        """A piece of the output, as the sandbox read it (on the engine's loop)."""
        if self._closed or not piece:
            return
        self._total += len(piece)
        self._kept += piece
        if len(self._kept) > 2 * TAIL_BYTES:
            del self._kept[:-TAIL_BYTES]
        if self._timer is not None:
            return  # a telling is due: it will carry this piece too
        wait = self._told_at + self._every_s - time.monotonic()
        if wait <= 0:
            self._now()
            return
        # no loop (a caller outside the engine): it tells at a later piece
        with contextlib.suppress(RuntimeError):
            self._timer = asyncio.get_running_loop().call_later(wait, self._now)

    def text(self) -> str:
        """The last `TAIL_LINES` whole lines (a line rewritten with carriage returns, as
        a progress bar is, shows as it was last drawn)."""
        kept = bytes(self._kept[-TAIL_BYTES:])
        text = kept.decode("utf-8", errors="replace")
        lines = text.split("\n")
        if self._total > len(kept) and len(lines) > 1:
            lines = lines[1:]  # the first line was cut: not shown (a secret may be cut too)
        if lines and lines[-1] == "":
            lines.pop()
        return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines[-TAIL_LINES:])

    def close(self) -> None:
        """The command ended: nothing more is told (its result follows)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _now(self) -> None:
        self._timer = None
        if self._closed:
            return
        self._told_at = time.monotonic()
        self.told += 1
        self._tell(self.text())
