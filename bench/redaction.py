"""Redaction: what hiding secrets costs per 4 KB of agent content, with detect-secrets'
token detectors beside the project's own patterns, and without them (the reference,
measured in the same run on the same texts).

The texts are this repository's own sources cut into 4 KB pieces (code full of the
words "token", "key" and "secret", the worst case for the literal prefilters), plus the
same pieces with a few real-looking credentials planted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "redaction"
GOALS = {"ratio": 1.5}
ROOT = Path(__file__).resolve().parent.parent
PLANTED = " postgres://admin:CorrectHorseBattery@db/prod ghp_" + "a" * 36 + " sk_live_" + "b" * 24


def pieces(limit: int) -> list[str]:
    text = "".join(p.read_text() for p in sorted((ROOT / "jupyter_delegate").rglob("*.py")))
    cut = [text[i : i + 4096] for i in range(0, len(text), 4096)][:limit]
    return cut + [piece + PLANTED for piece in cut[: len(cut) // 4]]


def timed_per_piece(texts: list[str], rounds: int) -> float:
    from jupyter_delegate.journal import redact

    started = time.perf_counter()
    for _ in range(rounds):
        for text in texts:
            redact(text, [])
    return (time.perf_counter() - started) / (rounds * len(texts))


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate import journal

    common.check_size(size)
    texts = pieces(20 if size == "tiny" else 200)
    rounds = 2 if size == "tiny" else 15
    started = time.perf_counter()
    journal.load_detectors()
    load_s = time.perf_counter() - started
    loaded = list(journal._detected)
    timed_per_piece(texts, 1)  # warm the caches and the prefilters
    bare, ours = [], []
    for _ in range(rounds):  # alternating, so a busy machine weighs on both alike
        journal._detected[:] = []
        bare.append(timed_per_piece(texts, 1))
        journal._detected[:] = loaded
        ours.append(timed_per_piece(texts, 1))
    return common.round_all(
        {
            "benchmark": NAME,
            "size": size,
            "pieces": len(texts),
            "own_patterns_us_per_4kb": common.median(bare) * 1e6,
            "with_detectors_us_per_4kb": common.median(ours) * 1e6,
            "ratio": common.median(ours) / common.median(bare),
            "detectors_load_ms": load_s * 1000,
        }
    )


if __name__ == "__main__":
    sys.exit(common.main(run))
