"""Which model, and what it can do: the Models API, or a built-in table.

When a task is submitted the harness asks the endpoint's Models API
(`client.beta.models.retrieve`) for the model's limits and capabilities: its context
window (`max_input_tokens`), its output limit (`max_tokens`), and whether it compacts
server-side, thinks adaptively and takes an effort level. The answer is cached per
process, endpoint and model, and journaled in the task's opening event, so every round
and a resume use the same. An id the catalogue does not know fails the submit, listing
the ids it does know. Where the catalogue cannot be reached (an endpoint without it, a
proxy), the built-in table below answers, conservatively, and the review says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ModelConfigError

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

# A turn's output is streamed, and capped here whatever the model allows: a longer one
# is almost always a file written whole that `write` then `edit` would do better.
OUTPUT_CAP = 32_000
FROM_API = "the Models API"
FROM_TABLE = "the built-in table"


@dataclass(frozen=True)
class ModelInfo:
    """What a model can do, and where that was learned (`source`)."""

    id: str
    max_input_tokens: int
    max_tokens: int
    compaction: bool = False  # server-side compaction (context management compact_20260112)
    thinking: bool = False  # adaptive thinking
    effort: tuple[str, ...] = ()  # the effort levels it takes
    source: str = FROM_TABLE

    @property
    def output_tokens(self) -> int:
        """The `max_tokens` a turn asks for."""
        return min(self.max_tokens, OUTPUT_CAP)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "effort": list(self.effort)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        return cls(
            id=str(data["id"]),
            max_input_tokens=int(data["max_input_tokens"]),
            max_tokens=int(data["max_tokens"]),
            compaction=bool(data.get("compaction", False)),
            thinking=bool(data.get("thinking", False)),
            effort=tuple(data.get("effort", ())),
            source=str(data.get("source", FROM_TABLE)),
        )


_LEVELS = ("low", "medium", "high", "max")
# Conservative where unsure: the window every current model has without a beta header.
_TABLE: dict[str, tuple[int, int, bool, bool, tuple[str, ...]]] = {
    "opus": (200_000, 64_000, True, True, _LEVELS),
    "sonnet": (200_000, 64_000, True, True, _LEVELS),
    "haiku": (200_000, 64_000, False, False, ()),
}


def from_table(model: str) -> ModelInfo:
    """The built-in answer for `model`, by its family (sonnet when none is named)."""
    family = next((f for f in _TABLE if f in model), "sonnet")
    window, output, compaction, thinking, effort = _TABLE[family]
    return ModelInfo(model, window, output, compaction, thinking, effort, FROM_TABLE)


_cache: dict[tuple[str, str], ModelInfo] = {}


async def describe(client: AsyncAnthropic, model: str) -> ModelInfo:
    """What `model` can do, from the endpoint's catalogue (cached), or the table when the
    catalogue cannot be reached. Raises ModelConfigError for an id the catalogue lacks."""
    import anthropic

    key = (str(client.base_url), model)
    if key in _cache:
        return _cache[key]
    try:
        found = await client.beta.models.retrieve(model)
    except anthropic.NotFoundError:
        known = await _known_ids(client)
        if known is None:  # no catalogue here at all
            return _cache.setdefault(key, from_table(model))
        listed = ", ".join(known) or "none"
        raise ModelConfigError(
            f"Unknown model {model!r}: the endpoint serves {listed}. Pass one of them "
            "(model=..., --model, or JUPYTER_DELEGATE_MODEL)."
        ) from None
    except (TimeoutError, anthropic.APIConnectionError, anthropic.APIStatusError):
        return _cache.setdefault(key, from_table(model))
    return _cache.setdefault(key, _info(model, found))


async def _known_ids(client: AsyncAnthropic) -> list[str] | None:
    """Every model id the catalogue lists, or None when it has no catalogue."""
    import anthropic

    try:
        return [m.id async for m in client.beta.models.list(limit=100)]
    except (anthropic.APIConnectionError, anthropic.APIStatusError):
        return None


def _info(model: str, found: Any) -> ModelInfo:
    table = from_table(model)
    capabilities = getattr(found, "capabilities", None)

    def supported(name: str) -> bool | None:
        capability = getattr(capabilities, name, None)
        return None if capability is None else bool(getattr(capability, "supported", False))

    context = getattr(capabilities, "context_management", None)
    compact = getattr(context, "compact_20260112", None)
    compaction = bool(getattr(compact, "supported", False)) if compact is not None else None
    effort_capability = getattr(capabilities, "effort", None)
    levels = tuple(
        level
        for level in _LEVELS
        if getattr(getattr(effort_capability, level, None), "supported", False)
    )
    thinking = supported("thinking")
    return ModelInfo(
        id=model,
        max_input_tokens=int(found.max_input_tokens or table.max_input_tokens),
        max_tokens=int(found.max_tokens or table.max_tokens),
        compaction=table.compaction if compaction is None else compaction,
        thinking=table.thinking if thinking is None else thinking,
        effort=levels if effort_capability is not None else table.effort,
        source=FROM_API,
    )
