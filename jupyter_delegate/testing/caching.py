"""A simulated prompt cache, so the fake's `usage` looks like the real API's.

The prompt is a sequence of blocks: each tool definition, then the system blocks, then
every content block of every message, in order. A breakpoint is a block marked with
`cache_control`, or the last block when the request has a top-level `cache_control`.
A request reads the longest prefix the cache already holds, writes the rest up to its
last breakpoint (every block boundary of what it writes becomes a readable prefix),
and pays full price only for what comes after the breakpoint.

Tokens are counted by one deterministic rule (`count_tokens`): a block costs
ceil(UTF-8 bytes of its canonical JSON / 4) tokens, a string ceil(UTF-8 bytes / 4);
a prompt costs the sum over its blocks plus `PROMPT_OVERHEAD_TOKENS`, which is exactly
input + cache creation + cache read in `usage`. The model id seeds the prefix hashes:
caches are per model. No TTL, no minimum cacheable length, no lookback window.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass
from typing import Any

# Tokens the API adds around every prompt (role markers and the like): deterministic.
PROMPT_OVERHEAD_TOKENS = 4


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ttl: str = "5m"

    def as_dict(self) -> dict[str, Any]:
        write_1h = self.cache_creation_input_tokens if self.ttl == "1h" else 0
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_input_tokens - write_1h,
                "ephemeral_1h_input_tokens": write_1h,
            },
        }


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def estimate_tokens(value: Any) -> int:
    """ceil(UTF-8 bytes of the canonical JSON / 4); strings count as their own text."""
    text = value if isinstance(value, str) else canonical(value)
    return math.ceil(len(text.encode("utf-8")) / 4)


def count_tokens(body: dict[str, Any]) -> int:
    """The prompt's input tokens: its blocks (`prompt_blocks`) plus the overhead."""
    return sum(estimate_tokens(b.content) for b in prompt_blocks(body)) + PROMPT_OVERHEAD_TOKENS


@dataclass(frozen=True)
class PromptBlock:
    content: Any
    cache_control: dict[str, Any] | None


def prompt_blocks(body: dict[str, Any]) -> list[PromptBlock]:
    """The request's prompt as an ordered list of blocks: tools, system, messages."""
    blocks = [_block(tool) for tool in body.get("tools") or []]
    system = body.get("system")
    if isinstance(system, str) and system:
        blocks.append(PromptBlock({"type": "text", "text": system}, None))
    elif isinstance(system, list):
        blocks.extend(_block(item) for item in system)
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}] if content else []
        blocks.extend(_block({"role": message["role"], **item}) for item in content)
    return blocks


def _block(raw: dict[str, Any]) -> PromptBlock:
    mark = raw.get("cache_control") or _nested_mark(raw)
    return PromptBlock(_strip_marks(raw), mark if isinstance(mark, dict) else None)


def _nested_mark(raw: dict[str, Any]) -> Any:
    inner = raw.get("content")
    if raw.get("type") != "tool_result" or not isinstance(inner, list):
        return None
    return next(
        (b["cache_control"] for b in inner if isinstance(b, dict) and b.get("cache_control")), None
    )


def _strip_marks(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_marks(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_marks(v) for v in value]
    return value


class PromptCache:
    """Prefix hashes written so far, shared by every conversation (as the API's is)."""

    def __init__(self) -> None:
        self._prefixes: set[str] = set()
        self._lock = threading.Lock()

    def usage(self, body: dict[str, Any]) -> CacheUsage:
        """Account for one request: what it reads, writes and pays in full."""
        blocks = prompt_blocks(body)
        tokens = [estimate_tokens(block.content) for block in blocks]
        marks = [i for i, block in enumerate(blocks) if block.cache_control]
        top = body.get("cache_control")
        if isinstance(top, dict) and blocks:
            marks.append(len(blocks) - 1)
        if not marks:
            return CacheUsage(sum(tokens) + PROMPT_OVERHEAD_TOKENS, 0, 0)
        last = max(marks)
        hashes = _prefix_hashes(str(body["model"]), blocks[: last + 1])
        with self._lock:
            hit = max((i for i, h in enumerate(hashes) if h in self._prefixes), default=-1)
            self._prefixes.update(hashes)
        ttl_source = blocks[last].cache_control or top or {}
        return CacheUsage(
            input_tokens=sum(tokens[last + 1 :]) + PROMPT_OVERHEAD_TOKENS,
            cache_creation_input_tokens=sum(tokens[hit + 1 : last + 1]),
            cache_read_input_tokens=sum(tokens[: hit + 1]),
            ttl=str(ttl_source.get("ttl", "5m")) if isinstance(ttl_source, dict) else "5m",
        )


def _prefix_hashes(model: str, blocks: list[PromptBlock]) -> list[str]:
    hashes: list[str] = []
    running = hashlib.sha256(model.encode())
    for block in blocks:
        running.update(canonical(block.content).encode() + b"\x00")
        hashes.append(running.copy().hexdigest())
    return hashes
