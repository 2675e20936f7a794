"""The fake's long-task features (issue 15, item 5), through the real `anthropic` SDK:
models from the scenario, the context window, server-side compaction, turns cut at
`max_tokens`, signed thinking blocks, refusals, summarising requests, and turn numbering
across all of these."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic

from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, ScenarioError, load_scenario
from jupyter_delegate.testing.conversation import SUMMARY_MARKER

MODEL = "claude-sonnet-4-6"
BASH = {
    "name": "bash",
    "description": "Run one shell command.",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
}
COMPACT = "compact-2026-01-12"


def compact_edit(trigger: int) -> dict[str, Any]:
    edit = {"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": trigger}}
    return {"edits": [edit]}


def run(make: Callable[[AsyncAnthropic], Awaitable[Any]], client: AsyncAnthropic) -> Any:
    async def main() -> Any:
        async with client:
            return await make(client)

    return asyncio.run(main())


def turn(messages: list[Any], **kw: Any) -> Callable[[AsyncAnthropic], Awaitable[Any]]:
    """One streamed turn as the harness makes it; gives the final message, the stream's
    events (type, and the `input_json` ones' partial JSON and snapshot) and the content
    as the harness journals it (`model_dump(mode="json", exclude_none=True)`)."""
    kw.setdefault("tools", [BASH])
    kw.setdefault("max_tokens", 1024)

    async def go(client: AsyncAnthropic) -> Any:
        events: list[Any] = []
        async with client.beta.messages.stream(
            model=kw.pop("model", MODEL), messages=messages, **kw
        ) as stream:
            async for event in stream:
                if event.type == "input_json":
                    events.append(("input_json", event.partial_json, event.snapshot))
                else:
                    events.append((event.type,))
            message = await stream.get_final_message()
        content = [b.model_dump(mode="json", exclude_none=True) for b in message.content]
        return message, events, content

    return go


def user(content: Any) -> Any:
    return {"role": "user", "content": content}


def results_for(content: list[dict[str, Any]], output: str = "ok") -> Any:
    calls = [b for b in content if b["type"] == "tool_use"]
    return user([{"type": "tool_result", "tool_use_id": c["id"], "content": output} for c in calls])


def rejected(fake: FakeMessagesAPI, messages: list[Any], **kw: Any) -> str:
    """The message of the 400 a turn gets."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        run(turn(messages, **kw), fake.async_client())
    body = caught.value.body
    assert isinstance(body, dict)
    return str(body["error"]["message"])


# -- models ----------------------------------------------------------------------------

MODELS = [
    {"id": "big", "max_input_tokens": 1_000_000, "max_tokens": 128_000},
    {
        "id": "small",
        "max_input_tokens": 500,
        "max_tokens": 300,
        "compaction": False,
        "thinking": False,
    },
]


def test_models_list_and_retrieve_come_from_the_scenario_in_process_and_over_loopback() -> None:
    fake = FakeMessagesAPI({"models": MODELS, "turns": [{"text": "hi"}]})

    async def go(client: AsyncAnthropic) -> Any:
        listed = [m async for m in client.beta.models.list(limit=1)]  # pages through both
        small = await client.beta.models.retrieve("small")
        plain = await client.models.retrieve("big")
        with pytest.raises(anthropic.NotFoundError):
            await client.beta.models.retrieve("nope")
        return listed, small, plain

    listed, small, plain = run(go, fake.async_client())
    assert [m.id for m in listed] == ["big", "small"]
    assert (listed[0].max_input_tokens, listed[0].max_tokens) == (1_000_000, 128_000)
    caps = small.capabilities
    assert (small.max_input_tokens, small.max_tokens) == (500, 300)
    assert caps is not None and caps.compaction is not None
    assert not caps.compaction.supported and not caps.thinking.supported
    assert caps.context_management.compact_20260112 is not None
    assert not caps.context_management.compact_20260112.supported
    assert listed[0].capabilities and listed[0].capabilities.thinking.types.adaptive.supported
    assert plain.id == "big" and plain.max_input_tokens == 1_000_000
    with FakeServer(fake) as server:
        listed, _, _ = run(go, AsyncAnthropic(api_key="k", base_url=server.url))
    assert [m.id for m in listed] == ["big", "small"]
    assert {r.kind for r in fake.requests} == {"models"}


def test_without_models_one_default_model_is_listed_and_any_id_is_served() -> None:
    fake = FakeMessagesAPI({"model": "claude-opus-4-6", "turns": [{"text": "hi"}]})

    async def go(client: AsyncAnthropic) -> Any:
        page = await client.beta.models.list()
        other = await client.beta.models.retrieve("claude-haiku-4-5")
        return page.data, other

    data, other = run(go, fake.async_client())
    assert [(m.id, m.max_input_tokens, m.max_tokens) for m in data] == [
        ("claude-opus-4-6", 200_000, 64_000)
    ]
    assert other.capabilities and other.capabilities.compaction
    assert other.capabilities.compaction.supported and other.capabilities.thinking.supported
    message, _, _ = run(turn([user("x")], model="any-model-id"), fake.async_client())
    assert message.content[0].text == "hi"


def test_a_request_for_an_unlisted_model_is_404_and_max_tokens_above_its_limit_400() -> None:
    fake = FakeMessagesAPI({"models": MODELS, "turns": [{"text": "hi"}]})
    with pytest.raises(anthropic.NotFoundError, match="model: claude-sonnet-4-6"):
        run(turn([user("x")]), fake.async_client())
    message = rejected(fake, [user("x")], model="small", max_tokens=301)
    assert "max_tokens: 301 > 300, which is the maximum allowed number of output tokens" in message
    thinking = {"type": "adaptive"}
    assert "does not support thinking" in rejected(
        fake, [user("x")], model="small", max_tokens=300, thinking=thinking
    )
    edit = compact_edit(100)
    assert "does not support compaction" in rejected(
        fake, [user("x")], model="small", max_tokens=300, betas=[COMPACT], context_management=edit
    )


# -- the context window ----------------------------------------------------------------


def documented_count(system: str, messages: list[dict[str, Any]]) -> int:
    """The rule in caching.py, written out: ceil(UTF-8 bytes / 4) of each block's canonical
    JSON (a message block with its role), the system text as a text block, plus 4."""

    def cost(value: Any) -> int:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return math.ceil(len(text.encode("utf-8")) / 4)

    blocks = [{"type": "text", "text": system}]
    blocks += [{"role": m["role"], "type": "text", "text": m["content"]} for m in messages]
    return sum(cost(b) for b in blocks) + 4


def test_a_prompt_past_the_window_is_400_with_the_documented_count() -> None:
    fake = FakeMessagesAPI(
        {"models": [{"id": MODEL, "max_input_tokens": 1000}], "turns": [{"text": "fits"}]}
    )
    fits = [user("é" * 850)]  # two UTF-8 bytes each: the count is of bytes
    count = documented_count("s", fits)
    assert count <= 1000
    message, _, _ = run(turn(fits, system="s", tools=[]), fake.async_client())
    assert message.usage.input_tokens == count

    too_long = [user("é" * 2000)]
    expected = documented_count("s", too_long)
    assert rejected(fake, too_long, system="s", tools=[]) == (
        f"prompt is too long: {expected} tokens > 1000 maximum"
    )


# -- compaction ------------------------------------------------------------------------

LONG = "a long tool output " * 100  # about 500 tokens
COMPACTING: dict[str, Any] = {
    "turns": [
        {"text": "Looking.", "tools": [{"bash": {"command": "ls"}}]},
        {
            "text": "Reading more.",
            "tools": [{"bash": {"command": "cat x"}}],
            "compaction": "We listed the files and read x.",
        },
        {"text": "Third.", "tools": [{"bash": {"command": "make"}}]},
        {"text": "Done."},
    ]
}


def compacting_conversation(fake: FakeMessagesAPI) -> tuple[list[Any], Any]:
    """Turn 1 (below the trigger) and turn 2 (past it): the history after turn 2, and
    turn 2's final message."""
    kw = {"betas": [COMPACT], "context_management": compact_edit(300)}
    history: list[Any] = [user("Fix the build.")]
    _, _, first = run(turn(history, **kw), fake.async_client())
    assert [b["type"] for b in first] == ["text", "tool_use"]
    history += [{"role": "assistant", "content": first}, results_for(first, LONG)]
    message, _, second = run(turn(history, **kw), fake.async_client())
    history += [{"role": "assistant", "content": second}, results_for(second)]
    return history, message


def test_compaction_past_the_trigger_streams_a_block_that_round_trips_verbatim() -> None:
    fake = FakeMessagesAPI(COMPACTING)
    history, message = compacting_conversation(fake)
    block = message.content[0]
    assert block.type == "compaction"
    assert block.content == "We listed the files and read x."
    assert block.encrypted_content and block.signature
    assert [b.type for b in message.content] == ["compaction", "text", "tool_use"]
    assert message.stop_reason == "tool_use"
    iterations = message.usage.iterations
    assert iterations is not None and [i.type for i in iterations] == ["compaction", "message"]
    assert iterations[0].input_tokens > 300  # the compacted context
    assert (
        iterations[1].input_tokens
        == (
            message.usage.input_tokens
            + (message.usage.cache_creation_input_tokens or 0)
            + (message.usage.cache_read_input_tokens or 0)
        )
        < 300
    )

    kw = {"betas": [COMPACT], "context_management": compact_edit(300)}
    third, _, _ = run(turn(history, **kw), fake.async_client())
    assert third.content[0].type == "text" and third.content[0].text == "Third."
    # The API ignores what precedes the block: the client may drop it, the turn is the same.
    dropped = history[3:]
    assert dropped[0]["content"][0]["type"] == "compaction"
    again, _, _ = run(turn(dropped, **kw), FakeMessagesAPI(COMPACTING).async_client())
    assert again.content[0].text == "Third."
    assert [r.turn for r in fake.requests] == [0, 1, 2]
    assert (
        third.usage.input_tokens
        + (third.usage.cache_read_input_tokens or 0)
        + (third.usage.cache_creation_input_tokens or 0)
        < 300
    )  # only what follows the block counts


def test_a_deterministic_summary_when_none_is_scripted() -> None:
    turns = [{**t, "compaction": None} if "compaction" in t else t for t in COMPACTING["turns"]]
    scenario = {"turns": [{k: v for k, v in t.items() if v is not None} for t in turns]}
    _, one = compacting_conversation(FakeMessagesAPI(scenario))
    _, two = compacting_conversation(FakeMessagesAPI(scenario))
    assert one.content[0].content == two.content[0].content
    assert one.content[0].content.startswith("Summary of the conversation so far (1 model turns)")
    assert "The task: Fix the build." in one.content[0].content
    assert "Tool calls: bash x1" in one.content[0].content


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("content", "this `compaction` block is not the one the API returned"),
        ("signature", "this `compaction` block is not the one the API returned"),
        ("drop", "came with a `compaction` block first (content.0), which is missing"),
        ("drop_with_what_precedes", "came with a `compaction` block first (content.0)"),
    ],
)
def test_a_compaction_block_altered_or_dropped_later_is_400(change: str, expected: str) -> None:
    fake = FakeMessagesAPI(COMPACTING)
    history, _ = compacting_conversation(fake)
    holder = history[3]
    block = dict(holder["content"][0])
    if change in ("content", "signature"):
        block[change] = block[change][:-2] + "xx"
        history[3] = {**holder, "content": [block, *holder["content"][1:]]}
    elif change == "drop":
        history[3] = {**holder, "content": holder["content"][1:]}
    else:  # a fresh start around the message, as a resume that lost the block might do
        history = [user("Fix the build."), {**holder, "content": holder["content"][1:]}, history[4]]
    kw = {"betas": [COMPACT], "context_management": compact_edit(300)}
    assert expected in rejected(FakeMessagesAPI(COMPACTING), history, **kw)


def test_compaction_edits_need_their_beta_header() -> None:
    fake = FakeMessagesAPI(COMPACTING)
    message = rejected(fake, [user("x")], context_management=compact_edit(300))
    assert "requires the `anthropic-beta: compact-2026-01-12` header" in message


def test_a_compaction_request_answers_a_lone_block_and_uses_no_turn() -> None:
    fake = FakeMessagesAPI(COMPACTING)
    history: list[Any] = [user("Fix the build.")]
    _, _, first = run(turn(history), fake.async_client())
    history += [{"role": "assistant", "content": first}, results_for(first)]
    compacted, _, content = run(
        turn(history, betas=["compact-2026-09-04"], compaction={"type": "summarize"}),
        fake.async_client(),
    )
    assert compacted.stop_reason == "compaction"
    assert [b["type"] for b in content] == ["compaction"]
    # The SDK's runner goes on with the response in place of what it summarises.
    goes_on = [{"role": "assistant", "content": content}, user("Carry on.")]
    message, _, _ = run(turn(goes_on), FakeMessagesAPI(COMPACTING).async_client())
    assert message.content[0].text == "Reading more."
    assert [r.kind for r in fake.requests] == ["turn", "compaction"]


# -- turns cut at max_tokens ------------------------------------------------------------


CUT_INPUT = {"command": "python -c 'print(42)'", "timeout_ms": 120000}
CUT_JSON = json.dumps(CUT_INPUT)


@pytest.mark.parametrize(
    ("chars", "seen"),
    [
        (20, {}),  # inside the first string: nothing complete yet
        (
            len('{"command": "python -c \'print(42)\'", "timeout_ms": 12'),
            {"command": "python -c 'print(42)'", "timeout_ms": 12},
        ),  # a number cut short
        (len('{"command": "python -c \'print(42)\'"'), {"command": "python -c 'print(42)'"}),
    ],
)
def test_cut_at_chars_stops_at_max_tokens_with_the_tool_input_cut(
    chars: int, seen: dict[str, Any]
) -> None:
    scenario = {
        "turns": [{"text": "Running.", "tools": [{"bash": CUT_INPUT}], "cut_at_chars": chars}]
    }
    fake = FakeMessagesAPI(scenario)
    message, events, content = run(turn([user("go")], max_tokens=777), fake.async_client())
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 777
    partial = [e for e in events if e[0] == "input_json"]
    assert "".join(e[1] for e in partial) == CUT_JSON[:chars]
    assert content[1]["type"] == "tool_use" and content[1]["input"] == seen
    assert partial[-1][2] == seen
    # Not streamed, and over loopback, the block is the same.
    created = run(
        lambda c: c.beta.messages.create(
            model=MODEL,
            max_tokens=777,
            messages=[user("go")],
            tools=[BASH],  # type: ignore[list-item]
        ),
        fake.async_client(),
    )
    assert created.stop_reason == "max_tokens" and created.content[1].input == seen
    with FakeServer(fake) as server:
        over, _, _ = run(turn([user("go")]), AsyncAnthropic(api_key="k", base_url=server.url))
    assert over.content[1].input == seen


# -- thinking ----------------------------------------------------------------------------

THINKING_TURNS: dict[str, Any] = {
    "turns": [
        {
            "text": "Looking.",
            "thinking": "First, look around.",
            "tools": [{"bash": {"command": "ls"}}],
        },
        {"text": "Now build.", "tools": [{"bash": {"command": "make"}}]},
        {"text": "Done."},
    ]
}
ADAPTIVE = {"type": "adaptive", "display": "summarized"}


def thinking_history() -> list[Any]:
    fake = FakeMessagesAPI(THINKING_TURNS)
    history: list[Any] = [user("Build it.")]
    for _ in range(2):
        _, _, content = run(
            turn(history, thinking=ADAPTIVE, output_config={"effort": "low"}), fake.async_client()
        )
        history += [{"role": "assistant", "content": content}, results_for(content)]
    return history


def test_thinking_streams_with_a_signature_and_round_trips() -> None:
    fake = FakeMessagesAPI(THINKING_TURNS)
    message, events, content = run(
        turn([user("Build it.")], thinking=ADAPTIVE), fake.async_client()
    )
    assert [b["type"] for b in content] == ["thinking", "text", "tool_use"]
    assert content[0]["thinking"] == "First, look around." and content[0]["signature"]
    assert ("thinking",) in events and ("signature",) in events
    history = thinking_history()
    assert history[3]["content"][0]["thinking"] == "Thinking about turn 2."  # not scripted
    message, _, _ = run(
        turn(history, thinking=ADAPTIVE), FakeMessagesAPI(THINKING_TURNS).async_client()
    )
    assert message.content[1].type == "text" and message.content[1].text == "Done."
    omitted, _, _ = run(
        turn([user("Build it.")], thinking={"type": "adaptive", "display": "omitted"}),
        fake.async_client(),
    )
    assert omitted.content[0].thinking == "" and omitted.content[0].signature
    plain, _, _ = run(turn([user("Build it.")]), fake.async_client())
    assert [b.type for b in plain.content] == ["text", "tool_use"]


def _alter(history: list[Any], change: str) -> list[Any]:
    history = [dict(m) for m in history]
    first, second = history[1], history[3]
    if change == "text":
        thought = {**first["content"][0], "thinking": "Something else."}
        history[1] = {**first, "content": [thought, *first["content"][1:]]}
    elif change == "signature":
        thought = {
            **first["content"][0],
            "signature": "AAAA" + first["content"][0]["signature"][4:],
        }
        history[1] = {**first, "content": [thought, *first["content"][1:]]}
    elif change == "missing":
        history[3] = {**second, "content": second["content"][1:]}
    elif change == "reordered":
        thought, text, *rest = first["content"]
        history[1] = {**first, "content": [text, thought, *rest]}
    elif change == "earlier_message":
        history[0] = user("Build it, please.")
    return history


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("text", "messages.1.content.0: Invalid `signature` in `thinking` block"),
        ("signature", "messages.1.content.0: Invalid `signature` in `thinking` block"),
        (
            "missing",
            "messages.3.content.0.type: Expected `thinking` or `redacted_thinking`, "
            "but found `text`",
        ),
        ("reordered", "messages.1.content.1: Invalid `signature` in `thinking` block"),
        ("earlier_message", "messages.1.content.0: Invalid `signature` in `thinking` block"),
    ],
)
def test_thinking_altered_missing_or_reordered_is_400(change: str, expected: str) -> None:
    history = _alter(thinking_history(), change)
    assert expected in rejected(FakeMessagesAPI(THINKING_TURNS), history, thinking=ADAPTIVE)


def test_compacting_twice_with_thinking_keeps_turns_and_signatures_across_fresh_fakes() -> None:
    scenario = {
        "turns": [
            {"text": f"Turn {n}.", "tools": [{"bash": {"command": "ls"}}]} for n in range(1, 6)
        ]
    }
    kw = {"betas": [COMPACT], "context_management": compact_edit(300), "thinking": ADAPTIVE}
    history: list[Any] = [user("Keep going.")]
    seen = []
    for _ in range(5):  # a fresh fake each turn, as after a resume
        message, _, content = run(turn(history, **kw), FakeMessagesAPI(scenario).async_client())
        seen.append(([b["type"] for b in content], message.content[-2].text))
        history += [{"role": "assistant", "content": content}, results_for(content, LONG)]
    assert [text for _, text in seen] == [f"Turn {n}." for n in range(1, 6)]
    assert seen[0][0] == ["thinking", "text", "tool_use"]
    assert all(types == ["compaction", "thinking", "text", "tool_use"] for types, _ in seen[1:])


# -- refusal -------------------------------------------------------------------------------


def test_a_refusal_stops_with_stop_details() -> None:
    fake = FakeMessagesAPI({"turns": [{"text": "I can't help", "refusal": True}]})
    message, _, content = run(turn([user("do harm")]), fake.async_client())
    assert message.stop_reason == "refusal"
    assert message.stop_details is not None and message.stop_details.type == "refusal"
    assert content == [{"type": "text", "text": "I can't help"}]
    bare = FakeMessagesAPI({"turns": [{"refusal": True}]})
    created = run(
        lambda c: c.beta.messages.create(model=MODEL, max_tokens=9, messages=[user("x")]),
        bare.async_client(),
    )
    assert created.stop_reason == "refusal" and created.content == []


# -- summarising requests and turn numbering ------------------------------------------------


def test_a_summarising_request_uses_no_turn_and_the_summary_carries_the_turn_on() -> None:
    fake = FakeMessagesAPI(COMPACTING)
    history: list[Any] = [user("Fix the build.")]
    _, _, first = run(turn(history), fake.async_client())
    history += [{"role": "assistant", "content": first}, results_for(first)]
    ask = [*history[:-1], user([*history[-1]["content"], {"type": "text", "text": "Summarise."}])]
    summary, _, _ = run(turn(ask, tool_choice={"type": "none"}), fake.async_client())
    text = summary.content[0].text
    assert text.startswith("We listed the files and read x.")  # turn 2's scripted summary
    assert text.endswith(SUMMARY_MARKER.format(turns=1))
    assert summary.stop_reason == "end_turn"
    # Not a turn: the conversation goes on at turn 2, here or in a new one seeded with it.
    message, _, _ = run(turn(history), fake.async_client())
    assert message.content[0].text == "Reading more."
    fresh = [user(f"Fix the build.\n\nSo far:\n{text}")]
    message, _, _ = run(turn(fresh), FakeMessagesAPI(COMPACTING).async_client())
    assert message.content[0].text == "Reading more."
    assert [(r.kind, r.turn) for r in fake.requests] == [("turn", 0), ("summary", 1), ("turn", 1)]


# -- scenario keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"turns": [{"text": "x", "cut_at_chars": 3}]}, "the turn needs `tools`"),
        ({"turns": [{"tools": [{"bash": {"a": 1}}], "cut_at_chars": 8}]}, "does not cut"),
        ({"turns": [{"refusal": True, "tools": [{"bash": {}}]}]}, "has no `tools`"),
        ({"turns": [{"text": "x", "thinking": ""}]}, "`thinking` is empty"),
        ({"models": [{"id": "m", "window": 3}], "turns": [{"text": "x"}]}, "unknown key"),
        ({"models": [{"id": "m", "max_tokens": 0}], "turns": [{"text": "x"}]}, "integer >= 1"),
        ({"models": [{"id": "m", "thinking": "yes"}], "turns": [{"text": "x"}]}, "true or false"),
    ],
)
def test_new_scenario_keys_are_checked(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ScenarioError, match=expected):
        load_scenario(data)


def test_new_keys_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(
        "models:\n  - {id: m, max_input_tokens: 9000, compaction: false}\n"
        "turns:\n  - {thinking: hmm, compaction: sum, tools: [{bash: {command: ls}}],"
        " cut_at_chars: 5}\n  - {refusal: true}\n"
    )
    scenario = load_scenario(path)
    assert scenario.models[0].max_input_tokens == 9000 and not scenario.models[0].compaction
    assert scenario.turns[0].effective_stop_reason == "max_tokens"
    assert scenario.turns[1].effective_stop_reason == "refusal"
