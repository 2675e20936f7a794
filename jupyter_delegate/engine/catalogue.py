"""Which model, and what it can do: the Models API, or a built-in table.

When a task is submitted the harness asks the endpoint's Models API
(`client.beta.models.retrieve`) for the model's limits and capabilities: its context
window (`max_input_tokens`), its output limit (`max_tokens`), and whether it compacts
server-side, thinks adaptively and takes an effort level. The answer is cached per
client (the process has one per endpoint, model.client_for) and model, and journaled in
the task's opening event, so every round and a resume use the same. The Models API's
answers for an endpoint are also kept on disk for a day (`stored_description`,
`keep_description`: `cache/models.json` in the user's delegate folder), so the first
submit of a fresh kernel neither imports the SDK nor asks the endpoint again. An id the catalogue
does not know fails the submit, listing the ids it does know. Where the catalogue cannot
be reached (an endpoint without it, a proxy), the built-in table below answers,
conservatively, and the review says so.

Also what a task asks of the model besides its id, checked against what the model can
do before anything is created: its effort (`resolve_effort`) and when its conversation is
compacted (`resolve_compact_at`). Where their defaults come from (the user's config) is
model.py's; what the loop does with them is loop.py's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelConfigError
from ..home import user_dir, write_atomic

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

    from .model import Endpoint

# A turn's output is streamed, and capped here whatever the model allows: a longer one
# is almost always a file written whole that `write` then `edit` would do better.
OUTPUT_CAP = 32_000
FROM_API = "the Models API"
FROM_TABLE = "the built-in table"
# How long the catalogue may take to answer before the table does.
CATALOGUE_TIMEOUT_S = 20.0
LEVELS = ("low", "medium", "high", "max")
# Compaction starts at this share of the window unless the task says otherwise: early
# enough that the turn that crosses it, and the compaction itself, still fit.
DEFAULT_COMPACT_SHARE = 0.6


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


# Conservative where unsure: the window every current model has without a beta header.
_TABLE: dict[str, tuple[int, int, bool, bool, tuple[str, ...]]] = {
    "opus": (200_000, 64_000, True, True, LEVELS),
    "sonnet": (200_000, 64_000, True, True, LEVELS),
    "haiku": (200_000, 64_000, False, False, ()),
}


def from_table(model: str) -> ModelInfo:
    """The built-in answer for `model`, by its family (sonnet when none is named)."""
    family = next((f for f in _TABLE if f in model), "sonnet")
    window, output, compaction, thinking, effort = _TABLE[family]
    return ModelInfo(model, window, output, compaction, thinking, effort, FROM_TABLE)


# Per client, so that two endpoints (or two fakes with different catalogues) never share
# an answer; a client gone takes its answers with it.
_cache: weakref.WeakKeyDictionary[AsyncAnthropic, dict[str, ModelInfo]] = (
    weakref.WeakKeyDictionary()
)


def cached_description(client: AsyncAnthropic, model: str) -> ModelInfo | None:
    """What `describe` answered before for `model` on `client` (kept), else None."""
    return _cache.get(client, {}).get(model)


async def describe(client: AsyncAnthropic, model: str) -> ModelInfo:
    """What `model` can do, from the endpoint's catalogue (cached), or the table when the
    catalogue cannot be reached. Raises ModelConfigError for an id the catalogue lacks.
    A table answer given because the endpoint did not answer at all (a dropped
    connection, a timeout, a server error) is not cached: the next task asks again."""
    import anthropic

    known = _cache.setdefault(client, {})
    if model in known:
        return known[model]
    try:
        found = await client.beta.models.retrieve(model, timeout=CATALOGUE_TIMEOUT_S)
    except anthropic.NotFoundError:
        listed = await _known_ids(client)
        if listed is None:  # no catalogue here at all
            return known.setdefault(model, from_table(model))
        raise ModelConfigError(
            f"Unknown model {model!r}: the endpoint serves {', '.join(listed) or 'none'}. "
            "Pass one of them (model=..., --model, JUPYTER_DELEGATE_MODEL, or `[model] "
            "default` in ~/.jupyter/delegate/config.toml)."
        ) from None
    except (TimeoutError, anthropic.APIConnectionError, anthropic.APIStatusError):
        return from_table(model)
    return known.setdefault(model, _info(model, found))


# -- kept on disk, for the next process ---------------------------------------------------
# {"format": 1, "answers": {ENDPOINT: {MODEL: {"learned": ISO-8601, "info": to_dict()}}}},
# ENDPOINT being the base URL and a hash of the key (never the key): two keys to one URL
# may be served different models.
STORE_FORMAT = 1
STORE_TTL_S = 24 * 3600  # an answer older than this is asked again
DEFAULT_BASE_URL = "https://api.anthropic.com"


def store_path() -> Path:
    """Where the catalogue's answers are kept between processes."""
    return user_dir() / "cache" / "models.json"


def stored_description(endpoint: Endpoint, model: str) -> ModelInfo | None:
    """What the Models API of `endpoint` answered for `model` within STORE_TTL_S, as kept
    on disk by any process; None when nothing usable is kept (no file, a corrupt one, an
    entry too old or malformed)."""
    try:
        entry = _read_store()["answers"][_endpoint_key(endpoint)][model]
        if not _fresh(entry["learned"]):
            return None
        info = ModelInfo.from_dict(entry["info"])
    except (LookupError, TypeError, ValueError, AttributeError):  # none, or malformed
        return None
    return info if info.source == FROM_API and info.id == model else None


def keep_description(endpoint: Endpoint, info: ModelInfo) -> None:
    """Keep the Models API's answer `info` for `endpoint` on disk (a table answer is not
    kept: the endpoint is asked again next time). Other processes may write at once: the
    file is rewritten whole under an flock, keeping their fresh answers and dropping stale
    ones; a corrupt file is replaced. Never fails: a cache that cannot be written is only
    slower."""
    if info.source != FROM_API:
        return
    path = store_path()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed
            answers = _read_store().get("answers", {})
            kept: dict[str, dict[str, Any]] = {}
            for endpoint_key, models in answers.items() if isinstance(answers, dict) else ():
                for model, entry in models.items() if isinstance(models, dict) else ():
                    if isinstance(entry, dict) and _fresh(entry.get("learned")):
                        kept.setdefault(endpoint_key, {})[model] = entry
            learned = datetime.now(UTC).isoformat(timespec="seconds")
            kept.setdefault(_endpoint_key(endpoint), {})[info.id] = {
                "learned": learned,
                "info": info.to_dict(),
            }
            store = {"format": STORE_FORMAT, "answers": kept}
            write_atomic(path, json.dumps(store, indent=1, sort_keys=True) + "\n")


def _endpoint_key(endpoint: Endpoint) -> str:
    key = hashlib.sha256(endpoint.api_key.encode()).hexdigest()[:16]
    return f"{(endpoint.base_url or DEFAULT_BASE_URL).rstrip('/')} key-sha256:{key}"


def _fresh(learned: Any) -> bool:
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(learned)).total_seconds()
    except (TypeError, ValueError):
        return False
    return 0 <= age < STORE_TTL_S


def _read_store() -> dict[str, Any]:
    try:
        store = json.loads(store_path().read_text())
    except (OSError, ValueError):  # none yet, unreadable, or corrupt: as if empty
        return {}
    if not isinstance(store, dict) or store.get("format") != STORE_FORMAT:
        return {}
    answers = store.get("answers")
    return store if isinstance(answers, dict) else {}


async def _known_ids(client: AsyncAnthropic) -> list[str] | None:
    """Every model id the catalogue lists, or None when it has no catalogue."""
    import anthropic

    try:
        page = client.beta.models.list(limit=100, timeout=CATALOGUE_TIMEOUT_S)
        return [m.id async for m in page]
    except (TimeoutError, anthropic.APIConnectionError, anthropic.APIStatusError):
        return None


# -- what a task asks of the model ---------------------------------------------------------
def check_effort(effort: Any, where: str = "effort") -> str:
    """`effort` if it is an effort level at all (whichever model), else ModelConfigError."""
    if effort not in LEVELS:
        raise ModelConfigError(
            f"{where} must be one of {', '.join(LEVELS)}, not {effort!r}. Example: "
            "--effort high (effort='high' in Python)."
        )
    return str(effort)


def resolve_effort(effort: str | None, info: ModelInfo, default: str | None = None) -> str | None:
    """The effort a task asks for: `effort`, refused unless the model takes it; else the
    configured `default` where the model takes it; else None (the model's own default)."""
    if effort is None:
        return default if default in info.effort else None
    check_effort(effort)
    if effort not in info.effort:
        takes = f"takes {', '.join(info.effort)}" if info.effort else "takes no effort setting"
        raise ModelConfigError(
            f"Model {info.id} {takes} (as {info.source} says), so effort {effort!r} cannot "
            "be used. Pick one it takes, leave effort out, or choose another model."
        )
    return effort


_TOKENS = re.compile(r"^\s*(\d[\d_]*)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def check_compact_at(value: Any, where: str = "compact_at") -> str | int:
    """`value` if it reads as TOKENS (120000), PERCENT of the window ("60%") or "off" (0:
    never compact), whatever the model; else ModelConfigError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value == "off":
        return 0
    if isinstance(value, str) and (_TOKENS.match(value) or _PERCENT.match(value)):
        return value
    raise ModelConfigError(
        f"{where} is a number of input tokens (120000), a share of the model's window "
        f"('60%') or 'off', not {value!r}."
    )


def default_compact_at(info: ModelInfo) -> int:
    """Where compaction starts when the task does not say: DEFAULT_COMPACT_SHARE of the
    window."""
    return int(info.max_input_tokens * DEFAULT_COMPACT_SHARE)


def resolve_compact_at(value: str | int | None, info: ModelInfo, where: str = "compact_at") -> int:
    """The input tokens at which the task's conversation is compacted: `value` as tokens
    or as a percentage of the model's window, which it must be above 0 and below; None:
    `default_compact_at`."""
    if value is None:
        return default_compact_at(info)
    if check_compact_at(value, where) == 0:
        return 0  # never: a prompt past the window then fails the task
    check_compact_at(value, where)
    window = info.max_input_tokens
    percent = _PERCENT.match(value) if isinstance(value, str) else None
    if percent:
        tokens = int(window * float(percent.group(1)) / 100)
    else:
        tokens = int(str(value).strip().replace("_", ""))
    if not 0 < tokens < window:
        raise ModelConfigError(
            f"{where} {value!r} is {tokens} tokens; it must be above 0 and below the window "
            f"of {info.id}, {window} input tokens (as {info.source} says). Example: "
            f"--compact-at {default_compact_at(info)} or --compact-at 60%."
        )
    return tokens


def limits_text(info: ModelInfo, effort: str | None, compact_at: int | None) -> str:
    """What the review says of the model: its limits and where they came from, the effort
    and when the conversation is compacted."""
    parts = [
        f"window {info.max_input_tokens:,} tokens",
        f"output {info.max_tokens:,} ({info.output_tokens:,} a turn)",
    ]
    if compact_at == 0:
        parts.append("never compacted")
    elif compact_at is not None:
        how = "server-side" if info.compaction else "by the harness"
        parts.append(f"compacted at {compact_at:,} ({how})")
    parts.append(f"effort {effort}" if effort else "effort: the model's default")
    return f"{info.id}: {', '.join(parts)}; limits from {info.source}"


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
        for level in LEVELS
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
