"""What the user asks for: an `Outcome` (goal, checks, scope, constraints) and its `Budget`.

Also the `%%delegate` cell format, because a cell body is only another way to write an
outcome:

    Add CSV export to the orders report.
    check: pytest -q tests/test_report.py
    scope: shop/report/, tests/

Free text is the goal; `check:` lines (repeatable) are commands that must pass; `scope:`
lines (repeatable, comma separated) name the paths the agent is expected to change;
`constraint:` lines are extra rules stated to the agent. Nothing here runs anything.

`Outcome.in_scope` is the one place a path is matched against the scope: the policy asks
it before a write, the review to flag a changed file outside the scope.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

from .errors import OutcomeError

_KEYWORD_LINE = re.compile(r"^\s*(check|scope|constraint)\s*:(.*)$", re.IGNORECASE)
# A check's own timeout, as a trailing shell comment: `pytest -q  # timeout=300`.
_CHECK_TIMEOUT = re.compile(r"#\s*timeout\s*=\s*(\S*)\s*$")


@dataclass(frozen=True)
class Budget:
    """Limits on one task. Steps and minutes count per round of work (a request for changes
    starts a new round); dollars count over the whole task."""

    max_steps: int = 60
    max_usd: float = 3.0
    max_minutes: float = 30.0
    command_timeout_s: float = 120.0  # each of the agent's commands
    check_timeout_s: float = 600.0  # each check, unless it says `# timeout=N`

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise OutcomeError(
                    f"Budget {f.name} must be a positive number, got {value!r}. "
                    f"Example: Budget({f.name}={f.default})."
                )

    @classmethod
    def from_options(cls, **options: float | None) -> Budget:
        """A budget from command-line style options, where None means "not given"."""
        return cls.from_dict({k: v for k, v in options.items() if v is not None})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OutcomeError(
                f"Unknown budget field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
            )
        return cls(**dict(data))


@dataclass(frozen=True)
class Outcome:
    """A goal stated as an outcome: what must be true when the agent is done."""

    goal: str
    checks: tuple[str, ...] = ()
    scope: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)

    def __post_init__(self) -> None:
        if not isinstance(self.goal, str) or not self.goal.strip():
            raise OutcomeError(
                "The outcome has no goal. State what must be true when the agent is done, "
                "e.g. 'Make tests/test_cart.py pass without changing the tests.'"
            )
        object.__setattr__(self, "goal", self.goal.strip())
        for name in ("checks", "scope", "constraints"):
            object.__setattr__(self, name, _clean_list(name, getattr(self, name)))
        for path in self.scope:
            if path.startswith("/") or ".." in path.split("/"):
                raise OutcomeError(
                    f"Scope entry {path!r} must be a path relative to the repository root "
                    "without '..', e.g. 'src/report/'."
                )
        if not isinstance(self.budget, Budget):
            raise OutcomeError(f"budget must be a Budget, got {type(self.budget).__name__}.")
        for check in self.checks:
            check_timeout(check, self.budget.check_timeout_s)  # raises when malformed

    @classmethod
    def from_cell(cls, text: str, *, budget: Budget | None = None) -> Outcome:
        """Parse a `%%delegate` cell body (see the module docstring)."""
        goal_lines: list[str] = []
        parts: dict[str, list[str]] = {"check": [], "scope": [], "constraint": []}
        for number, line in enumerate(text.splitlines(), start=1):
            match = _KEYWORD_LINE.match(line)
            if not match:
                goal_lines.append(line)
                continue
            key, value = match.group(1).lower(), match.group(2).strip()
            if not value:
                raise OutcomeError(
                    f"Line {number}: '{key}:' has nothing after it. "
                    f"Write e.g. '{key}: {_EXAMPLES[key]}' or remove the line."
                )
            if key == "scope":
                parts[key].extend(p.strip() for p in value.split(",") if p.strip())
            else:
                parts[key].append(value)
        goal = "\n".join(goal_lines).strip()
        if not goal:
            raise OutcomeError(
                "The cell states no goal: write what must be true when the agent is done, "
                "then optional 'check:' and 'scope:' lines."
            )
        return cls(
            goal=goal,
            checks=tuple(parts["check"]),
            scope=tuple(parts["scope"]),
            constraints=tuple(parts["constraint"]),
            budget=budget or Budget(),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(
            goal=data["goal"],
            checks=tuple(data.get("checks", ())),
            scope=tuple(data.get("scope", ())),
            constraints=tuple(data.get("constraints", ())),
            budget=Budget.from_dict(data.get("budget", {})),
        )

    def in_scope(self, path: str) -> bool:
        """Whether `path` (relative to the repository root) is one the agent is expected
        to change: under a scope entry, or any path when the outcome names no scope."""
        return in_scope(path, self.scope)

    @property
    def title(self) -> str:
        """The goal's first line, short enough for a listing."""
        first = self.goal.splitlines()[0]
        return first if len(first) <= 72 else first[:71] + "…"


def in_scope(path: str, scope: Sequence[str]) -> bool:
    """`Outcome.in_scope` for a scope given as its entries (the policy is given those).

    An entry is a gitignore-style pattern anchored at the repository root: a file
    (`calc.py`), a folder with or without `/` (`docs/`, `docs`), or a glob (`src/*.py`,
    `src/**`, `**/test_*.py`). Matched case-insensitively, as the policy matches paths
    (`SRC/A.py` is `src/a.py` on a case-insensitive disk)."""
    return not scope or bool(_scope_spec(tuple(scope)).match_file(path.lower()))


@lru_cache(maxsize=256)
def _scope_spec(scope: tuple[str, ...]) -> Any:
    import pathspec

    entries = [s.removeprefix("./") for s in scope]
    patterns = ["/" + (s if "*" in s else s.rstrip("/")).lower() for s in entries]
    return pathspec.PathSpec.from_lines("gitignore", patterns)


def check_timeout(check: str, default: float) -> float:
    """The seconds a check may run: its `# timeout=N` comment (bash ignores it), else
    `default` (the budget's check_timeout_s)."""
    match = _CHECK_TIMEOUT.search(check)
    if match is None:
        return default
    text = match.group(1).removesuffix("s")
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise OutcomeError(
            f"Check {check!r}: '# timeout={match.group(1)}' must be a positive number of "
            "seconds, e.g. 'pytest -q  # timeout=300'."
        )
    return seconds


_EXAMPLES = {"check": "pytest -q", "scope": "src/", "constraint": "do not add dependencies"}


def _clean_list(name: str, values: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    cleaned = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise OutcomeError(
                f"Every entry of {name} must be a non-empty string, got {value!r}. "
                f"Example: {name}=[{_EXAMPLES[name.rstrip('s')]!r}]."
            )
        cleaned.append(value.strip())
    return tuple(cleaned)
