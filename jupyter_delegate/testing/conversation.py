"""How the fake reads a conversation: what the model sees, which turn it is, and the
blocks the fake signed coming back.

- Signing: the `compaction` and `thinking` blocks the fake issues are signed with an
  HMAC under a fixed key, so any `FakeMessagesAPI` (a resumed process's too) verifies
  them when they come back.
- Compaction: `compaction_block` issues one: the summary, an opaque `encrypted_content`
  that carries how many model turns the conversation had, and the signature. What the
  model sees (`effective_messages`) starts at the latest compaction block: the API
  ignores everything before it, whether the client still sends it or not.
- Tool-use ids: the fake's ids (`tool_use_id`) bind the compaction block of the message
  they were issued in, so a later request that drops or swaps that block is caught.
- Thinking: a thinking block's signature binds its text to the conversation before it
  (the effective blocks before it, `cache_control` ignored), as the API's block binding
  does: a block altered, moved, reordered, or whose earlier messages changed, fails.
- Turn numbering (`turn_index`): the number of assistant messages, counted from the
  latest compaction block (which carries the count before it) or summary marker.
- Summarising requests (`is_summary_request`): the harness's own request for a summary,
  answered with `summary_text` and `SUMMARY_MARKER`, never a scripted turn.
- The goal (`goal_text`): the first message's text, which picks a scenario's
  conversation when several agents share the fake.

Not here: request shapes (`validation`), token accounting (`caching`), the wire and the
answers (`fake_anthropic`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

from .caching import canonical
from .validation import invalid

# Fixed, so that a fresh fake verifies what another one signed (a resumed task).
SIGNING_KEY = b"jupyter-delegate fake-anthropic signing key"
# Ends the fake's answer to a summarising request. A conversation that carries it on in
# a user message goes on at the turn it names. Only the fake writes it.
SUMMARY_MARKER = "[fake-anthropic: {turns} turns summarised]"
_MARKER = re.compile(r"\[fake-anthropic: (\d+) turns summarised\]")
_FAKE_TOOL_ID = re.compile(r"^toolu_([0-9a-f]{12})([0-9a-f]{6})([0-9a-f]{6})$")
THINKING_REQUIRED = (
    "{where}.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When "
    "`thinking` is enabled, a final `assistant` message must start with a thinking block "
    "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you "
    "include thinking blocks from previous turns. To avoid this requirement, disable "
    "`thinking`. Please consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)


def _mac(*parts: Any) -> bytes:
    return hmac.new(SIGNING_KEY, canonical(list(parts)).encode(), hashlib.sha256).digest()


def sign(*parts: Any) -> str:
    return base64.b64encode(_mac(*parts)).decode("ascii")


def _verifies(signature: Any, *parts: Any) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(signature, sign(*parts))


# -- blocks ----------------------------------------------------------------------------


def blocks_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's content as blocks (a string is one text block)."""
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content if isinstance(content, list) else []


def _is_compaction(block: dict[str, Any]) -> bool:
    """A compaction block that counts: one with `content` (null content is a no-op)."""
    return block.get("type") == "compaction" and block.get("content") is not None


def compaction_block(summary: str, turns: int) -> dict[str, Any]:
    """A signed compaction block whose conversation had `turns` model turns."""
    payload = canonical({"fake-anthropic": 1, "turns": turns}).encode()
    encrypted = base64.b64encode(payload).decode("ascii")
    return {
        "type": "compaction",
        "content": summary,
        "encrypted_content": encrypted,
        "signature": sign("compaction", summary, encrypted),
    }


def compaction_turns(block: dict[str, Any]) -> int:
    """The model turns before the conversation a (verified) compaction block resumes."""
    try:
        payload = json.loads(base64.b64decode(block["encrypted_content"], validate=True))
        return int(payload["turns"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        return 0


def tool_use_id(compaction_signature: str = "") -> str:
    """A fresh tool-use id that binds the compaction block issued with it (or none)."""
    nonce = secrets.token_hex(6)
    issued = _mac("issued", nonce).hex()[:6]
    bound = _mac("tool_use", nonce, compaction_signature).hex()[:6]
    return f"toolu_{nonce}{issued}{bound}"


def thinking_block(text: str, before: list[dict[str, Any]]) -> dict[str, Any]:
    """A thinking block signed over its text and the blocks (`flatten`) before it."""
    return {"type": "thinking", "thinking": text, "signature": _thinking_signature(text, before)}


def _thinking_signature(text: str, before: list[dict[str, Any]]) -> str:
    prefix = hashlib.sha256(canonical(before).encode()).hexdigest()
    return sign("thinking", text, prefix)


def normal_block(role: str, block: dict[str, Any]) -> dict[str, Any]:
    """A block as the thinking binding sees it: with its role, without `cache_control`
    or null fields, a tool result's string content as one text block."""
    kept: dict[str, Any] = {"role": role}
    for key, value in block.items():
        if key == "cache_control" or value is None:
            continue
        if key == "content" and block.get("type") == "tool_result":
            value = [{"type": "text", "text": value}] if isinstance(value, str) else value
            value = [_without_marks(v) for v in value] if isinstance(value, list) else value
        kept[key] = value
    return kept


def _without_marks(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "cache_control" and v is not None}
    return value


def flatten(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every content block of `messages`, in order, as `normal_block`s."""
    return [normal_block(m["role"], b) for m in messages for b in blocks_of(m)]


# -- what the model sees ---------------------------------------------------------------


def latest_compaction(messages: list[dict[str, Any]]) -> tuple[int, int] | None:
    """Where (message, block) the latest compaction block is, if any."""
    found = None
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        for j, block in enumerate(blocks_of(message)):
            if _is_compaction(block):
                found = (i, j)
    return found


def effective_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the model sees: the messages from the latest compaction block on."""
    start = latest_compaction(messages)
    if start is None:
        return messages
    i, j = start
    return [{**messages[i], "content": blocks_of(messages[i])[j:]}, *messages[i + 1 :]]


def effective_body(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "messages": effective_messages(body["messages"])}


# -- checks on what comes back -----------------------------------------------------------


def check_signed_blocks(messages: list[dict[str, Any]]) -> None:
    """400 unless every compaction and thinking block the fake issued came back intact,
    in place, and every compaction block is still in the message it was issued with."""
    for i, j, block in _typed(messages, "compaction"):
        if not _is_compaction(block):
            continue
        if not _verifies(
            block.get("signature"), "compaction", block["content"], block.get("encrypted_content")
        ):
            raise invalid(
                f"messages.{i}.content.{j}: this `compaction` block is not the one the API "
                "returned (its signature does not verify). Send compaction blocks back "
                "exactly as received: `content`, `encrypted_content` and `signature`."
            )
    for i, message in enumerate(messages):
        if message.get("role") == "assistant":
            _check_tool_use_binding(i, message)
    _check_thinking(messages)


def _typed(messages: list[dict[str, Any]], kind: str) -> Iterator[tuple[int, int, dict[str, Any]]]:
    for i, message in enumerate(messages):
        for j, block in enumerate(blocks_of(message)):
            if block.get("type") == kind:
                yield i, j, block


def _check_tool_use_binding(i: int, message: dict[str, Any]) -> None:
    blocks = blocks_of(message)
    ids = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
    for tool_id in ids:
        match = _FAKE_TOOL_ID.match(tool_id) if isinstance(tool_id, str) else None
        if match is None or _mac("issued", match[1]).hex()[:6] != match[2]:
            continue  # not an id the fake issued
        first = blocks[0] if blocks else {}
        signature = first.get("signature", "") if first.get("type") == "compaction" else ""
        if _mac("tool_use", match[1], signature or "").hex()[:6] != match[3]:
            raise invalid(
                f"messages.{i}: this assistant message is not the one the API returned: it "
                "came with a `compaction` block first (content.0), which is missing, altered "
                "or not its own. Send compaction blocks back exactly as received."
            )
        return


def _check_thinking(messages: list[dict[str, Any]]) -> None:
    """Thinking blocks the model sees must verify against the blocks before them."""
    start = latest_compaction(messages)
    first_i, first_j = start if start is not None else (0, 0)
    before: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if i < first_i:
            continue
        for j, block in enumerate(blocks_of(message)):
            if i == first_i and j < first_j:
                continue
            signature = block.get("signature")
            if block.get("type") == "thinking" and not (
                isinstance(signature, str)
                and hmac.compare_digest(signature, _thinking_signature(block["thinking"], before))
            ):
                raise invalid(
                    f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block: it "
                    "does not match the block's text or the conversation before it. Thinking "
                    "blocks must be passed back unmodified and in their original order, after "
                    "the same messages."
                )
            before.append(normal_block(message["role"], block))


def check_thinking_before_tool_results(messages: list[dict[str, Any]]) -> None:
    """With thinking on, the assistant message whose tool calls the last user message
    answers must start (after a compaction block) with a thinking block."""
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    if len(turns) < 2 or turns[-1]["role"] != "user":
        return
    if not any(b.get("type") == "tool_result" for b in blocks_of(turns[-1])):
        return
    i = messages.index(turns[-2])
    blocks = blocks_of(turns[-2])
    j = next((k for k, b in enumerate(blocks) if b.get("type") != "compaction"), None)
    if j is None or blocks[j].get("type") in ("thinking", "redacted_thinking"):
        return
    raise invalid(
        THINKING_REQUIRED.format(where=f"messages.{i}.content.{j}", found=blocks[j].get("type"))
    )


# -- turns and summaries -------------------------------------------------------------------


def turn_index(messages: list[dict[str, Any]]) -> int:
    """The model turn a request asks for: its assistant messages, counted from the latest
    compaction block (whose message is counted as its `encrypted_content` says) or
    summary marker in a user message (the turns it names)."""
    base, anchor = 0, -1
    for i, message in enumerate(messages):
        if message.get("role") == "assistant":
            for block in blocks_of(message):
                if _is_compaction(block):
                    base, anchor = compaction_turns(block), i
        elif message.get("role") == "user":
            found = [int(n) for text in _texts(message) for n in _MARKER.findall(text)]
            if found:
                base, anchor = found[-1], i
    return base + sum(1 for m in messages[anchor + 1 :] if m.get("role") == "assistant")


def _texts(message: dict[str, Any]) -> Iterator[str]:
    for block in blocks_of(message):
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            yield block["text"]


def goal_text(messages: list[dict[str, Any]]) -> str:
    """The text of the first message, where an agent's goal is: its text blocks, or the
    summary of the compaction block a resumed conversation starts with."""
    first = messages[0] if messages else {}
    if first.get("role") == "user":
        return "\n".join(_texts(first))
    blocks = blocks_of(first)
    if blocks and _is_compaction(blocks[0]) and isinstance(blocks[0]["content"], str):
        return blocks[0]["content"]
    return ""


def is_summary_request(body: dict[str, Any]) -> bool:
    """A summarising request: one that forbids tools (`tool_choice: {type: none}`)."""
    choice = body.get("tool_choice")
    return isinstance(choice, dict) and choice.get("type") == "none"


def summary_text(messages: list[dict[str, Any]], turns: int) -> str:
    """A deterministic summary of what the model sees: the task, the tools called, the
    model's last words."""
    seen = effective_messages(messages)
    first = blocks_of(seen[0])[0] if seen and blocks_of(seen[0]) else {}
    if first.get("type") == "compaction":
        task = f"Earlier: {first['content']}"
    else:
        task = "The task: " + _clip(" ".join(t for m in seen[:1] for t in _texts(m)))
    calls = Counter(
        b.get("name") for m in seen for b in blocks_of(m) if b.get("type") == "tool_use"
    )
    called = ", ".join(f"{name} x{n}" for name, n in sorted(calls.items())) or "none"
    said = [t for m in seen if m.get("role") == "assistant" for t in _texts(m)]
    last = _clip(said[-1]) if said else "nothing yet"
    return (
        f"Summary of the conversation so far ({turns} model turns). {task} "
        f"Tool calls: {called}. Last model text: {last}"
    )


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def marked_summary(summary: str, turns: int) -> str:
    return f"{summary}\n\n{SUMMARY_MARKER.format(turns=turns)}"
