"""The request rules the real Messages API enforces, so the fake is as strict.

`validate_request` raises `ApiError` (a 400 `invalid_request_error`) naming the field
and what is wrong, in the API's own `messages.3.content.0: ...` style. A harness bug
that the real API would reject (a `tool_use` without its `tool_result`, roles that do
not alternate, an empty text block, a fifth cache breakpoint) fails in tests too.

Strict tools (`"strict": true`): their schemas and the grammar limits, in `strict_tools`.

Also the shapes of the long-task parameters, against the SDK's types: `thinking`,
`output_config.effort`, `tool_choice`, `context_management` (its edits need the
`context-management-2025-06-27` beta, a `compact_20260112` edit the `compact-2026-01-12`
one) and the top-level `compaction` request (the `compact-2026-09-04` beta); and where
`thinking`, `redacted_thinking` and `compaction` blocks may stand.

Not here: authentication and routing (the fake itself), scenarios, responses, what a
model supports and the signed blocks (`conversation`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
MAX_CACHE_BREAKPOINTS = 4
COMPACT_EDIT = "compact_20260112"
EDIT_BETAS = {
    "clear_tool_uses_20250919": "context-management-2025-06-27",
    "clear_thinking_20251015": "context-management-2025-06-27",
    COMPACT_EDIT: "compact-2026-01-12",
}
COMPACTION_BETA = "compact-2026-09-04"
THINKING_TYPES = ("enabled", "disabled", "adaptive", "between_tools")
THINKING_DISPLAYS = ("summarized", "omitted", "updates")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
TOOL_CHOICES = ("auto", "any", "tool", "none")
ASSISTANT_ONLY = ("tool_use", "thinking", "redacted_thinking", "compaction")
# `system` messages (SDK 2.12's BetaSystemMessageParam) are accepted and skipped when
# checking that user and assistant turns alternate.
ROLES = ("user", "assistant", "system")


class ApiError(Exception):
    """An error response: HTTP status, API error type and message."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error_type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.headers = headers or {}


def invalid(message: str) -> ApiError:
    return ApiError(message)


def validate_request(body: Any, betas: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`body` if it is a request the real API would accept with the `anthropic-beta`
    features `betas`; else raise `ApiError`."""
    if not isinstance(body, dict):
        raise invalid("The request body is not a JSON object.")
    _check_required(body)
    _check_thinking(body)
    _check_output_config(body.get("output_config"))
    _check_tool_choice(body)
    _check_context_management(body.get("context_management"), betas)
    _check_compaction(body, betas)
    _check_tools(body.get("tools"))
    _check_system(body.get("system"))
    _check_messages(body["messages"])
    _check_breakpoints(body)
    return body


def _check_required(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: Field required (a model id such as 'claude-sonnet-4-6').")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise invalid("max_tokens: Field required (a positive integer).")
    if max_tokens < 1:
        raise invalid(f"max_tokens: must be at least 1, got {max_tokens}.")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise invalid("stream: Input should be a valid boolean.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: at least one message is required.")


def thinking_on(body: dict[str, Any]) -> bool:
    """Whether the request asks for thinking blocks (`enabled` or `adaptive`)."""
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _check_thinking(body: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in THINKING_TYPES:
        raise invalid(f"thinking.type: Input should be one of {', '.join(THINKING_TYPES)}.")
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
            raise invalid("thinking.enabled.budget_tokens: Input should be >= 1024.")
        if budget >= body["max_tokens"]:
            raise invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
    display = thinking.get("display")
    if display is not None and display not in THINKING_DISPLAYS:
        raise invalid(f"thinking.display: Input should be one of {', '.join(THINKING_DISPLAYS)}.")
    choice = body.get("tool_choice")
    if thinking_on(body) and isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise invalid("Thinking may not be enabled when tool_choice forces tool use.")


def _check_output_config(config: Any) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise invalid("output_config: Input should be an object.")
    effort = config.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise invalid(f"output_config.effort: Input should be one of {', '.join(EFFORTS)}.")


def _check_tool_choice(body: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES:
        raise invalid(f"tool_choice.type: Input should be one of {', '.join(TOOL_CHOICES)}.")
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        raise invalid("tool_choice.tool.name: Field required.")


def compact_edit(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's `compact_20260112` edit, if any (after `validate_request`)."""
    config = body.get("context_management") or {}
    return next((e for e in config.get("edits") or [] if e["type"] == COMPACT_EDIT), None)


def _check_context_management(config: Any, betas: frozenset[str]) -> None:
    if config is None:
        return
    edits = config.get("edits", []) if isinstance(config, dict) else None
    if not isinstance(edits, list):
        raise invalid("context_management.edits: Input should be a valid list.")
    for k, edit in enumerate(edits):
        where = f"context_management.edits.{k}"
        kind = edit.get("type") if isinstance(edit, dict) else None
        if kind not in EDIT_BETAS:
            raise invalid(f"{where}.type: Input should be one of {', '.join(EDIT_BETAS)}.")
        if EDIT_BETAS[kind] not in betas:
            raise invalid(
                f"{where}: the `{kind}` edit requires the `anthropic-beta: "
                f"{EDIT_BETAS[kind]}` header."
            )
        trigger = edit.get("trigger")
        if trigger is not None and (
            not isinstance(trigger, dict)
            or trigger.get("type") != "input_tokens"
            or isinstance(trigger.get("value"), bool)
            or not isinstance(trigger.get("value"), int)
            or trigger["value"] < 1
        ):
            raise invalid(
                f"{where}.trigger: Input should be "
                "{type: input_tokens, value: a positive integer}."
            )
    if sum(1 for e in edits if e["type"] == COMPACT_EDIT) > 1:
        raise invalid(f"context_management.edits: at most one `{COMPACT_EDIT}` edit.")


def _check_compaction(body: dict[str, Any], betas: frozenset[str]) -> None:
    compaction = body.get("compaction")
    if compaction is None:
        return
    if not isinstance(compaction, dict) or compaction.get("type") != "summarize":
        raise invalid("compaction.type: Input should be 'summarize'.")
    if COMPACTION_BETA not in betas:
        raise invalid(f"compaction: requires the `anthropic-beta: {COMPACTION_BETA}` header.")
    if body.get("context_management") is not None:
        raise invalid("compaction: cannot be combined with `context_management`.")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list.")
    seen: set[str] = set()
    for k, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid(f"tools.{k}: a tool is an object with name, description, input_schema.")
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise invalid(
                f"tools.{k}.name: String should match pattern "
                f"'^[a-zA-Z0-9_-]{{1,64}}$' (got {name!r})."
            )
        if name in seen:
            raise invalid(f"tools: Tool names must be unique; {name!r} appears more than once.")
        seen.add(name)
        if tool.get("type", "custom") == "custom":
            _check_input_schema(k, tool.get("input_schema"))
    from .strict_tools import check_strict_tools  # it builds on this module's errors

    check_strict_tools(tools)


def _check_input_schema(k: int, schema: Any) -> None:
    if not isinstance(schema, dict):
        raise invalid(f"tools.{k}.custom.input_schema: Field required (a JSON schema object).")
    if schema.get("type") != "object":
        raise invalid(
            f"tools.{k}.custom.input_schema.type: Input should be 'object' "
            f"(got {schema.get('type')!r}); a tool's input is always an object."
        )


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid("system: Input should be a string or a list of text blocks.")
    for k, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"system.{k}: system blocks must be text blocks.")
        _check_text(block, f"system.{k}")


def _check_text(block: dict[str, Any], where: str) -> None:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"{where}.text: Field required.")
    if not text:
        raise invalid(f"{where}: text content blocks must be non-empty.")


def _check_messages(messages: list[Any]) -> None:
    for i, message in enumerate(messages):
        _check_message(i, message, messages)
    used: set[str] = set()
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            _check_tool_use_answered(i, messages, used)
        elif message["role"] == "user":
            _check_tool_results_match(i, messages)


def _check_message(i: int, message: Any, messages: list[Any]) -> None:
    if not isinstance(message, dict):
        raise invalid(f"messages.{i}: a message is an object with role and content.")
    role = message.get("role")
    if role not in ROLES:
        raise invalid(
            f"messages.{i}.role: Input should be 'user', 'assistant' or 'system' (got {role!r})."
        )
    if i == 0 and role != "user" and not _opens_with_compaction(message):
        raise invalid(
            "messages.0.role: the first message must use the `user` role (or be an "
            "`assistant` message that starts with a `compaction` block)."
        )
    previous = _previous_turn(messages, i)
    if role != "system" and previous is not None and messages[previous]["role"] == role:
        raise invalid(
            f"messages.{i}: roles must alternate between `user` and `assistant`, but "
            f"messages {previous} and {i} are both `{role}`."
        )
    final_assistant = role == "assistant" and i == len(messages) - 1
    for j, block in enumerate(_blocks(i, message.get("content"), final_assistant)):
        _check_block(i, j, role, block)


def _opens_with_compaction(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return (
        message.get("role") == "assistant"
        and isinstance(content, list)
        and bool(content)
        and isinstance(content[0], dict)
        and content[0].get("type") == "compaction"
    )


def _previous_turn(messages: list[Any], i: int) -> int | None:
    """The index of the last user or assistant message before `i` (system ones don't count)."""
    for k in range(i - 1, -1, -1):
        if isinstance(messages[k], dict) and messages[k].get("role") in ("user", "assistant"):
            return k
    return None


def _blocks(i: int, content: Any, may_be_empty: bool) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content and not may_be_empty:
            raise _empty_message(i)
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise invalid(f"messages.{i}.content: Input should be a string or a list of blocks.")
    if not content and not may_be_empty:
        raise _empty_message(i)
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(f"messages.{i}.content.{j}: a content block is an object with a `type`.")
    return content


def _empty_message(i: int) -> ApiError:
    return invalid(
        f"messages.{i}: all messages must have non-empty content except for the optional "
        "final assistant message."
    )


def _check_block(i: int, j: int, role: str, block: dict[str, Any]) -> None:
    where = f"messages.{i}.content.{j}"
    kind = block["type"]
    if kind in ASSISTANT_ONLY and role != "assistant":
        raise invalid(f"{where}: `{kind}` blocks can only be in `assistant` messages.")
    if kind == "text":
        _check_text(block, where)
    elif kind == "thinking":
        if not isinstance(block.get("thinking"), str):
            raise invalid(f"{where}.thinking: Field required.")
        if not isinstance(block.get("signature"), str):
            raise invalid(f"{where}.signature: Field required.")
    elif kind == "redacted_thinking":
        if not isinstance(block.get("data"), str):
            raise invalid(f"{where}.data: Field required.")
    elif kind == "compaction":
        content = block.get("content")
        if content is not None and (not isinstance(content, str) or not content):
            raise invalid(f"{where}.content: a non-empty string or null.")
    elif kind == "tool_use":
        tool_id = block.get("id")
        if not isinstance(tool_id, str) or not TOOL_USE_ID.match(tool_id):
            raise invalid(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'.")
        if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
            raise invalid(f"{where}: a `tool_use` block needs `name` and an object `input`.")
    elif kind == "tool_result":
        if role != "user":
            raise invalid(f"{where}: `tool_result` blocks can only be in `user` messages.")
        _check_tool_result(where, block)


def _check_tool_result(where: str, block: dict[str, Any]) -> None:
    if not isinstance(block.get("tool_use_id"), str):
        raise invalid(f"{where}.tool_use_id: Field required.")
    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(f"{where}.content: Input should be a string or a list of blocks.")
    for k, inner in enumerate(content):
        if isinstance(inner, dict) and inner.get("type") == "text":
            _check_text(inner, f"{where}.content.{k}")


def _typed_blocks(message: dict[str, Any], kind: str) -> Iterator[tuple[int, dict[str, Any]]]:
    content = message.get("content")
    if isinstance(content, list):
        yield from ((j, b) for j, b in enumerate(content) if b.get("type") == kind)


def _check_tool_use_answered(i: int, messages: list[dict[str, Any]], used: set[str]) -> None:
    ids = [block["id"] for _, block in _typed_blocks(messages[i], "tool_use")]
    for tool_id in ids:
        if tool_id in used:
            raise invalid(f"messages.{i}: `tool_use` ids must be unique; {tool_id} is used twice.")
        used.add(tool_id)
    if not ids:
        return
    after = messages[i + 1] if i + 1 < len(messages) else {"content": []}
    answered = {block["tool_use_id"] for _, block in _typed_blocks(after, "tool_result")}
    missing = [tool_id for tool_id in ids if tool_id not in answered]
    if missing:
        raise invalid(
            f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
            "corresponding `tool_result` block in the next message."
        )


def _check_tool_results_match(i: int, messages: list[dict[str, Any]]) -> None:
    results = list(_typed_blocks(messages[i], "tool_result"))
    if not results:
        return
    content = messages[i]["content"]
    first_other = next((j for j, b in enumerate(content) if b["type"] != "tool_result"), None)
    last_result = results[-1][0]
    if first_other is not None and first_other < last_result:
        raise invalid(
            f"messages.{i}.content.{last_result}: `tool_result` blocks must come first in the "
            f"user message, before any other content; a `{content[first_other]['type']}` block "
            f"is at content.{first_other}."
        )
    before = messages[i - 1] if i > 0 else {"content": []}
    asked = {block["id"] for _, block in _typed_blocks(before, "tool_use")}
    for j, block in results:
        if block["tool_use_id"] not in asked:
            raise invalid(
                f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {block['tool_use_id']}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )


def count_breakpoints(body: dict[str, Any]) -> int:
    """Blocks marked with `cache_control`, the top-level marker included."""
    count = 1 if body.get("cache_control") else 0
    for tool in body.get("tools") or []:
        count += 1 if tool.get("cache_control") else 0
    if isinstance(body.get("system"), list):
        count += sum(1 for block in body["system"] if block.get("cache_control"))
    for message in body["messages"]:
        if isinstance(message.get("content"), list):
            count += sum(_marks_in(block) for block in message["content"])
    return count


def _marks_in(block: dict[str, Any]) -> int:
    inner = block.get("content") if block.get("type") == "tool_result" else None
    nested = (
        sum(_marks_in(b) for b in inner if isinstance(b, dict)) if isinstance(inner, list) else 0
    )
    return (1 if block.get("cache_control") else 0) + nested


def _check_breakpoints(body: dict[str, Any]) -> None:
    found = count_breakpoints(body)
    if found > MAX_CACHE_BREAKPOINTS:
        raise invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found} (the top-level cache_control counts as one)."
        )
