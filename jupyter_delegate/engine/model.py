"""The model side: which model, which endpoint, which client, and what a turn costs.

Which model, and what a task asks of it by default, are settings: the call's (`model=`,
`--model`, `effort`, `compact_at`), else `JUPYTER_DELEGATE_MODEL` (the model only), else
the `[model]` table of the user's `config.toml` (`default`, `effort`, `compact_at`), else
`DEFAULT_MODEL` and the model's own defaults (`model_settings`).

One `AsyncAnthropic` per (base URL, key) per event loop, shared by every task on it.
Offline (tests, demo, tutorials) the endpoint is the scripted fake Messages API, over
loopback (`ANTHROPIC_BASE_URL`) or in-process (a client passed to the manager): the
engine cannot tell, which is the point. `anthropic` is imported lazily: it takes about a
second, and `%load_ext` must stay fast.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
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


@dataclass(frozen=True)
class ModelSettings:
    """The `[model]` table of the user's config.toml: the default model, and the effort and
    compaction point a task asks for when it does not say (None: not set there)."""

    default: str | None = None
    effort: str | None = None
    compact_at: str | int | None = None


def model_settings() -> ModelSettings:
    """The user's `[model]` settings, checked (a malformed one fails here, naming the file)."""
    from ..home import user_dir
    from ..policy import config_table, read_toml
    from .catalogue import check_compact_at, check_effort

    path = user_dir() / "config.toml"
    keys = ("default", "effort", "compact_at")
    table = config_table(read_toml(path), "model", keys, str(path), ModelConfigError)
    default = table.get("default")
    if default is not None and (not isinstance(default, str) or not _is_model_id(default)):
        raise ModelConfigError(f"{path}: [model] default must be a model id, not {default!r}.")
    effort = table.get("effort")
    if effort is not None:
        check_effort(effort, f"{path}: [model] effort")
    compact_at = table.get("compact_at")
    if compact_at is not None:
        check_compact_at(compact_at, f"{path}: [model] compact_at")
    return ModelSettings(default.strip() if default else None, effort, compact_at)


def resolve_model(model: str | None, settings: ModelSettings | None = None) -> str:
    """The model id a task uses: `model`, else $JUPYTER_DELEGATE_MODEL, else `[model]
    default` of the user's config, else DEFAULT_MODEL."""
    settings = settings or ModelSettings()
    chosen = model or os.environ.get(MODEL_ENV) or settings.default or DEFAULT_MODEL
    if not isinstance(chosen, str) or not _is_model_id(chosen):
        raise ModelConfigError(
            f"{chosen!r} is not a model id. Pass model='{DEFAULT_MODEL}' (or set {MODEL_ENV}, "
            "or `[model] default` in ~/.jupyter/delegate/config.toml)."
        )
    return chosen.strip()


def _is_model_id(text: str) -> bool:
    return bool(text.strip()) and " " not in text.strip()


def price_of(model: str) -> tuple[tuple[float, float], bool]:
    """((input, output) $/MTok, exact?) for a model id; dated ids use their alias' price.
    Not exact: guessed from the model's family (or, with none named, the dearest price)."""
    for name, price in PRICES.items():
        if model == name or model.startswith(name + "-"):
            return price, True
    for family, price in FAMILY_PRICES.items():
        if family in model:
            return price, False
    return max(PRICES.values()), False


def price_guessed(models: Iterable[str]) -> bool:
    """Whether the cost of turns served by `models` rests on a guessed price."""
    return any(not price_of(model)[1] for model in models)


PRICE_GUESSED = "price guessed from the model family"


def usd_text(cost_usd: float) -> str:
    """A cost as every view says it ($0.0312, $12.50): the live view, the board, the
    record's fallbacks, and, in TypeScript, the card and the sidebar (`formatCost` in
    labextension/src/model.ts, the same rule)."""
    return f"${cost_usd:.{4 if cost_usd < 1 else 2}f}"


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
    """Our usage dict from an SDK `usage` object, with its cost. A turn in which the API
    compacted the conversation lists the compaction's own sampling in `iterations`, which
    the top-level figures leave out (the SDK's BetaIterationsUsage): it is added, so the
    compaction is paid for too."""
    compactions = [
        part for part in getattr(raw, "iterations", None) or [] if part.type == "compaction"
    ]
    usage = {
        name: sum(int(getattr(part, field, 0) or 0) for part in [raw, *compactions])
        for name, field in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_read_tokens", "cache_read_input_tokens"),
            ("cache_write_tokens", "cache_creation_input_tokens"),
        )
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


def known_client(endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> AsyncAnthropic | None:
    """The client `client_for` gives on `loop` for this endpoint, if one was made (any
    thread may ask; none is made here)."""
    return _clients.get((id(loop), endpoint.base_url, endpoint.api_key))


def client_for(endpoint: Endpoint) -> AsyncAnthropic:
    """The shared client for this endpoint on the running event loop."""
    key = (id(asyncio.get_running_loop()), endpoint.base_url, endpoint.api_key)
    client = _clients.get(key)
    if client is None:
        from anthropic import AsyncAnthropic

        client = AsyncAnthropic(api_key=endpoint.api_key, base_url=endpoint.base_url)
        _clients[key] = client
    return client
