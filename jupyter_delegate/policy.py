"""Permission rules and the decisions they make about tool calls.

Rules in the Claude Code style: `Tool` (every call of that tool) or `Tool(specifier)`:
for `Bash`, `Bash(git status)` matches that exact command and `Bash(pytest:*)` any
command starting with `pytest`; for the file tools the specifier is a glob on the path
(`Edit(src/**)`). Tool names match case-insensitively (`Bash` is the `bash` tool).
Evaluation: deny, then ask, then allow; no match allows (the sandbox confines commands,
and the file tools cannot leave the worktree).

This is the seam the engine asks through; richer matching (compound commands, modes,
protected files, sources of rules) grows here without touching the loop.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import DelegateError

Action = Literal["allow", "ask", "deny"]
_RULE = re.compile(r"^(?P<tool>[A-Za-z_][A-Za-z0-9_-]*)(?:\((?P<spec>.+)\))?$")
_PATH_KEYS = ("file_path", "path", "pattern")


class PolicyError(DelegateError):
    """A permission rule is malformed."""


@dataclass(frozen=True)
class Rule:
    tool: str
    spec: str | None = None

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = _RULE.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise PolicyError(
                f"Permission rule {text!r} is not of the form Tool or Tool(specifier), "
                "e.g. 'Bash', 'Bash(pytest:*)', 'Edit(src/**)'."
            )
        return cls(match.group("tool").lower(), match.group("spec"))

    def matches(self, tool: str, tool_input: Mapping[str, Any]) -> bool:
        if tool.lower() != self.tool:
            return False
        if self.spec is None:
            return True
        if self.tool == "bash":
            command = str(tool_input.get("command", "")).strip()
            if self.spec.endswith(":*"):
                prefix = self.spec[:-2].strip()
                return command == prefix or command.startswith(prefix + " ")
            return command == self.spec.strip()
        target = next((str(tool_input[k]) for k in _PATH_KEYS if k in tool_input), "")
        return fnmatch.fnmatch(target, self.spec)

    def __str__(self) -> str:
        return self.tool if self.spec is None else f"{self.tool}({self.spec})"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    rule: str | None = None


@dataclass(frozen=True)
class Policy:
    allow: tuple[Rule, ...] = ()
    ask: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()

    @classmethod
    def from_rules(
        cls, allow: Iterable[str] = (), ask: Iterable[str] = (), deny: Iterable[str] = ()
    ) -> Policy:
        def parse(rules: Iterable[str]) -> tuple[Rule, ...]:
            return tuple(Rule.parse(r) for r in ([rules] if isinstance(rules, str) else rules))

        return cls(parse(allow), parse(ask), parse(deny))

    def decide(self, tool: str, tool_input: Mapping[str, Any]) -> Decision:
        for action, rules in (("deny", self.deny), ("ask", self.ask), ("allow", self.allow)):
            for rule in rules:
                if rule.matches(tool, tool_input):
                    return Decision(action, f"rule {rule}", str(rule))  # type: ignore[arg-type]
        return Decision("allow", "no rule matched")

    def remembering(self, rule: str) -> Policy:
        """This policy with the ask rule `rule` turned into an allow rule."""
        parsed = Rule.parse(rule)
        return replace(
            self, allow=(*self.allow, parsed), ask=tuple(r for r in self.ask if r != parsed)
        )

    def to_dict(self) -> dict[str, list[str]]:
        return {k: [str(r) for r in getattr(self, k)] for k in ("allow", "ask", "deny")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Iterable[str]]) -> Policy:
        return cls.from_rules(data.get("allow", ()), data.get("ask", ()), data.get("deny", ()))


@dataclass(frozen=True)
class PermissionRequest:
    """A tool call waiting for a human: answer with `task.answer(request_id, allow)`."""

    request_id: str
    tool: str
    input: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
