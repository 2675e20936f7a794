"""The model side: which model, which endpoint, which client, and what a turn costs.

One `AsyncAnthropic` per (base URL, key) per event loop, shared by every task on it.
Offline (tests, demo, tutorials) the endpoint is the scripted fake Messages API, over
loopback (`ANTHROPIC_BASE_URL`) or in-process (a client passed to the manager): the
engine cannot tell, which is the point. `anthropic` is imported lazily: it takes about a
second, and `%load_ext` must stay fast.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..errors import ModelConfigError

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

DEFAULT_MODEL = "claude-sonnet-4-6"
MODEL_ENV = "JUPYTER_DELEGATE_MODEL"

# US dollars per million tokens: (input, output). Cache writes cost 1.25x input (5-minute
# TTL), cache reads 0.1x input. Families price the ids not listed by exact name.
PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-8": (5.0, 25.0),
    "claude-opus-4-7": (5.0, 25.0),
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-sonnet-4-6": (3.0, 15.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
}
FAMILY_PRICES: dict[str, tuple[float, float]] = {
    "opus": (5.0, 25.0),
    "sonnet": (3.0, 15.0),
    "haiku": (1.0, 5.0),
}
CACHE_WRITE_MULTIPLIER = 1.25
CACHE_READ_MULTIPLIER = 0.1


def resolve_model(model: str | None) -> str:
    chosen = model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    if not isinstance(chosen, str) or not chosen.strip() or " " in chosen.strip():
        raise ModelConfigError(
            f"{chosen!r} is not a model id. Pass model='claude-sonnet-4-6' (or set {MODEL_ENV})."
        )
    return chosen.strip()


def price_of(model: str) -> tuple[tuple[float, float], bool]:
    """((input, output) $/MTok, exact?) for a model id; dated ids use their alias' price."""
    for name, price in PRICES.items():
        if model == name or model.startswith(name + "-"):
            return price, True
    for family, price in FAMILY_PRICES.items():
        if family in model:
            return price, False
    return max(PRICES.values()), False


def cost_usd(model: str, usage: Mapping[str, int]) -> float:
    (inp, out), _ = price_of(model)
    dollars = (
        usage.get("input_tokens", 0) * inp
        + usage.get("cache_write_tokens", 0) * inp * CACHE_WRITE_MULTIPLIER
        + usage.get("cache_read_tokens", 0) * inp * CACHE_READ_MULTIPLIER
        + usage.get("output_tokens", 0) * out
    ) / 1_000_000
    return round(dollars, 6)


def usage_of(model: str, raw: Any) -> dict[str, Any]:
    """Our usage dict from an SDK `usage` object, with its cost."""
    usage = {
        "input_tokens": int(getattr(raw, "input_tokens", 0) or 0),
        "output_tokens": int(getattr(raw, "output_tokens", 0) or 0),
        "cache_read_tokens": int(getattr(raw, "cache_read_input_tokens", 0) or 0),
        "cache_write_tokens": int(getattr(raw, "cache_creation_input_tokens", 0) or 0),
    }
    return {**usage, "cost_usd": cost_usd(model, usage)}


@dataclass(frozen=True)
class Endpoint:
    base_url: str | None
    api_key: str

    @property
    def offline(self) -> bool:
        host = urlparse(self.base_url or "").hostname or ""
        return host in ("127.0.0.1", "localhost", "::1") or host.endswith(".local")


def endpoint_from_env() -> Endpoint:
    base_url = os.environ.get("ANTHROPIC_BASE_URL") or None
    key = os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN") or ""
    candidate = Endpoint(base_url, key)
    if not key and candidate.offline:
        return Endpoint(base_url, "offline-fake-key")
    if not key:
        raise ModelConfigError(
            "No Anthropic API key. Set ANTHROPIC_API_KEY (e.g. `export "
            "ANTHROPIC_API_KEY=sk-ant-...` before starting Jupyter), or try it offline "
            "with `jupyter delegate demo`, which uses a scripted model."
        )
    return candidate


_clients: dict[tuple[int, str | None, str], AsyncAnthropic] = {}


def client_for(endpoint: Endpoint) -> AsyncAnthropic:
    """The shared client for this endpoint on the running event loop."""
    key = (id(asyncio.get_running_loop()), endpoint.base_url, endpoint.api_key)
    client = _clients.get(key)
    if client is None:
        from anthropic import AsyncAnthropic

        client = AsyncAnthropic(api_key=endpoint.api_key, base_url=endpoint.base_url)
        _clients[key] = client
    return client
