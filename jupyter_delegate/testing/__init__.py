"""Offline testing for jupyter-delegate: a scripted fake Anthropic Messages API.

The fake is reached through the real `anthropic` SDK, in process (an `httpx2` mock
transport) or over loopback (`FakeServer`), so the engine cannot tell it from the real
API. It answers from a `Scenario` (YAML, JSON, dict or callable), is as strict as the API
about malformed requests, serves scripted faults (429, 529, broken streams, dropped
connections) and reports realistic `usage`, prompt caching included. For long tasks it
serves `GET /v1/models` from the scenario, counts tokens deterministically against the
model's window, compacts server-side, cuts turns at `max_tokens`, signs and checks
thinking and compaction blocks, refuses, and answers summarising requests (see
`conversation` and `scenario`). Several agents share one fake through a scenario's
`conversations`, each picked by its goal; `strict` tools are held to their schemas
(`strict_tools`).

    fake = FakeMessagesAPI(load_scenario("demo"))
    client = fake.async_client()            # in process
    with FakeServer(fake) as server:        # or http://127.0.0.1:PORT
        ...

A real task becomes a scenario too: `scenario_from(task)` (from_journal.py) writes its
journal's model turns as a dict `load_scenario` takes, which replays to the same diff.

Importing this package is cheap: `anthropic` and `httpx2` load only when a client, a
transport or a server is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .conversation import SUMMARY_MARKER
from .scenario import (
    Conversation,
    ModelSpec,
    Scenario,
    ScenarioError,
    ToolCall,
    Turn,
    load_scenario,
)

if TYPE_CHECKING:
    from .fake_anthropic import FakeMessagesAPI, FakeServer, RecordedRequest
    from .from_journal import scenario_from

__all__ = [
    "SUMMARY_MARKER",
    "Conversation",
    "FakeMessagesAPI",
    "FakeServer",
    "ModelSpec",
    "RecordedRequest",
    "Scenario",
    "ScenarioError",
    "ToolCall",
    "Turn",
    "load_scenario",
    "scenario_from",
]

_LAZY = ("FakeMessagesAPI", "FakeServer", "RecordedRequest")


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m jupyter_delegate.testing.fake_anthropic` does not import the
    # module twice (runpy warns) and importing the package stays cheap.
    if name in _LAZY:
        from . import fake_anthropic

        return getattr(fake_anthropic, name)
    if name == "scenario_from":  # it reads journals: the package stays cheap without it
        from .from_journal import scenario_from

        return scenario_from
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
