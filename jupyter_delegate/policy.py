"""Permission rules, protected files and modes: the decisions made about each tool call.

Rules in the Claude Code style: `Tool` (every call of that tool) or `Tool(specifier)`.
For `Bash` the specifier is a command: `Bash(git status)` matches exactly, `Bash(pytest:*)`
any command whose words start with `pytest`. For the file tools (`Read`, `Write`, `Edit`,
`Glob`, `Grep`) it is a gitignore-style glob on the path relative to the repository root,
matched after `..` and symlinks are resolved (`Edit(src/**)`, `Read(**/*.py)`).

A compound command (`&&`, `||`, `;`, `|`, `$(...)`, backticks, `bash -c`, `sh -c`,
`env X=1 cmd`) is split into its parts: it is allowed only if every part is, and denied
or asked if any part is.

Evaluation: deny rules, then protected files, then the mode's hard limits, then ask rules
(unless the user granted the call for the task), then allow rules, then the mode's
default:

    default  sandboxed commands and in-scope edits are allowed; out-of-scope edits ask
    ask      every write and command asks (allow rules still let calls through)
    plan     read only: writes and commands are denied
    auto     nothing asks; deny rules and protected files still hold

Rules come from the user's config (`config.toml` in the user's folder, see home.py), the
call, and the repository's `.jupyter-delegate.toml`. A repository can only tighten: its
allow rules are ignored (and reported), and it can only choose a stricter mode. Nothing
else in a repository (AGENTS.md, a skill's `allowed-tools`) adds a permission.

A question answered "allow for this task" grants the rule it showed (`rules_for`): for a
command, its prefix (`Bash(pytest:*)`, `Bash(git status:*)`, one rule per command of a
compound line); for a file tool, that file (`Edit(docs/notes.md)`). A granted rule lets
through what it matches even where an ask rule would ask (the user was asked and said
yes), never what a deny rule, a protected file or plan mode refuses.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import lru_cache, wraps
from pathlib import Path, PurePosixPath
from typing import Any, Literal, ParamSpec, TypeVar

from .errors import DelegateError
from .home import user_dir
from .outcome import in_scope

Action = Literal["allow", "ask", "deny"]
MODES = ("auto", "default", "ask", "plan")  # from loosest to strictest
FILE_TOOLS = frozenset({"read", "write", "edit", "glob", "grep"})
WRITE_TOOLS = frozenset({"write", "edit"})
CHANGING_TOOLS = frozenset({"write", "edit", "bash"})
REPO_CONFIG = ".jupyter-delegate.toml"
P = ParamSpec("P")
R = TypeVar("R")

# Never written by any tool unless an explicit rule names them; bound read-only in the
# sandbox; changes to them are not committed.
PROTECTED = (
    ".git",
    ".git/**",
    ".gitmodules",
    ".gitattributes",
    ".github/workflows/**",
    ".github/actions/**",
    ".github/copilot-instructions.md",
    ".github/instructions/**",
    "CODEOWNERS",
    ".husky/**",
    ".devcontainer/**",
    ".gitlab-ci.yml",
    ".circleci/**",
    ".travis.yml",
    "Jenkinsfile",
    "azure-pipelines.yml",
    ".buildkite/**",
    ".env*",
    "AGENTS.md",
    "AGENTS.override.md",
    "CLAUDE.md",
    "GEMINI.md",
    ".cursorrules",
    ".cursor/**",
    ".windsurfrules",
    ".clinerules",
    ".agents/skills/**",
    "skills.lock",
    ".claude/**",
    "SKILL.md",
    ".mcp.json",
    ".vscode/**",
    ".idea/**",
    REPO_CONFIG,
    "setup.py",
    ".npmrc",
    ".pypirc",
    ".pre-commit-config.yaml",
)
# Also never read: they hold secrets.
SECRET = (".env*",)

_RULE = re.compile(r"^(?P<tool>[A-Za-z_][A-Za-z0-9_-]*)(?:\((?P<spec>.+)\))?$")
_PATH_KEYS = ("file_path", "path")
_WRAPPERS = frozenset({"env", "exec", "command", "nohup", "time", "builtin"})
_SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class PolicyError(DelegateError):
    """A permission rule, mode or config file is malformed."""


# -- globs and paths ------------------------------------------------------------------------
@lru_cache(maxsize=512)
def _spec(*patterns: str) -> Any:
    """gitignore-style patterns, through pathspec (git's wildmatch): `**` any depth, `*`
    within a name, a pattern without a slash matches at any depth, and a folder matches
    everything below it. Matched case-insensitively (`.GIT/hooks` is `.git/hooks` on a
    case-insensitive disk), so patterns and paths are lowered."""
    import pathspec

    return pathspec.PathSpec.from_lines("gitignore", [p.lower() for p in patterns])


def glob_match(pattern: str, path: str) -> bool:
    return bool(_spec(pattern).match_file(path.lower()))


def is_protected(path: str) -> bool:
    return bool(_spec(*PROTECTED).match_file(path.lower()))


def is_secret(path: str) -> bool:
    return bool(_spec(*SECRET).match_file(path.lower()))


def resolve(worktree: Path | None, path: str) -> str | None:
    """`path` relative to the worktree after `..` and symlinks, or None when outside."""
    if worktree is None:
        return str(PurePosixPath(os.path.normpath(path)))
    root = realpath(os.fspath(worktree)).rstrip("/")  # strings: Path objects cost more
    full = realpath(os.path.join(root or "/", path))  # than the two realpaths (bench: step)
    if full == (root or "/"):
        return "."
    if full.startswith(root + "/"):
        return full[len(root) + 1 :]
    return None


_O_PATH = getattr(os, "O_PATH", 0)


def realpath(path: str) -> str:
    """`os.path.realpath(path)`, asked of the kernel when the path exists: one open with
    O_PATH and a read of its /proc/self/fd link, three system calls where realpath makes
    one lstat per component (a deep worktree made that the cost of a decision). Anything
    else (a path that does not exist yet, no /proc, no O_PATH) goes to os.path.realpath."""
    if _O_PATH and not path.startswith("//"):
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except OSError:
            return os.path.realpath(path)
        try:
            found = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            found = ""
        finally:
            os.close(fd)
        if found.startswith("/") and not found.endswith(" (deleted)"):
            return found
    return os.path.realpath(path)


# -- commands ---------------------------------------------------------------------------------
def split_command(command: str) -> list[list[str]] | None:
    """The simple commands inside a command line, as word lists (in lists, pipelines,
    subshells, loops, command and process substitutions, assignments, redirections and
    `bash -c` / `eval` scripts), parsed by bashlex, a port of bash's own parser. None when
    it cannot be parsed, which no allow rule then matches."""
    parsed = _parsed(command)
    return None if parsed is None else [list(words) for words in parsed]


@lru_cache(maxsize=512)  # an agent runs the same commands again and again (the checks)
def _parsed(command: str) -> tuple[tuple[str, ...], ...] | None:
    parts: list[list[str]] = []
    try:
        _split_into(command, parts, depth=0)
    except Exception:  # bashlex's ParsingError, or a construct it does not parse (case):
        return None  # unparseable is safe here, as no allow rule matches it
    return tuple(tuple(words) for words in parts)


def _split_into(command: str, parts: list[list[str]], depth: int) -> None:
    import bashlex

    if depth > 8:
        raise ValueError("nested too deeply")
    if not command.strip():
        return
    for tree in bashlex.parse(command):
        _visit(tree, parts, depth)


def _visit(node: Any, parts: list[list[str]], depth: int) -> None:
    """Collect the simple commands under a bashlex node, depth first."""
    if node.kind == "command":
        words = [p.word for p in node.parts if p.kind == "word"]
        simple = _unwrap(words)
        if simple and simple[0] in _SHELLS and "-c" in simple[1:]:
            script = simple[simple.index("-c") + 1 :]
            _split_into(script[0] if script else "", parts, depth + 1)
        elif simple and simple[0] == "eval":
            _split_into(" ".join(simple[1:]), parts, depth + 1)
        elif simple:
            parts.append(simple)
    for child in _children(node):
        _visit(child, parts, depth)


def _children(node: Any) -> list[Any]:
    found: list[Any] = []
    for name in ("parts", "list", "command", "output", "heredoc"):
        value = getattr(node, name, None)
        if isinstance(value, list):
            found += [v for v in value if hasattr(v, "kind")]
        elif hasattr(value, "kind"):
            found.append(value)
    return found


def _unwrap(words: list[str]) -> list[str]:
    """Drop leading assignments and wrappers: `env -i X=1 nohup cmd` is `cmd`."""
    i = 0
    while i < len(words):
        word = words[i]
        option_of_wrapper = word.startswith("-") and i > 0 and words[i - 1] in _WRAPPERS
        if not (_ASSIGNMENT.match(word) or option_of_wrapper or word in _WRAPPERS):
            break
        i += 1
    return words[i:]


# Commands whose second word names what they do (`git status`, `npm test`): their prefix
# is two words, so allowing `git status` does not allow `git push`.
_SUBCOMMANDS = frozenset(
    {
        "git",
        "npm",
        "pnpm",
        "yarn",
        "cargo",
        "go",
        "uv",
        "pip",
        "pip3",
        "poetry",
        "hatch",
        "make",
        "docker",
        "podman",
        "kubectl",
        "conda",
        "mamba",
        "pixi",
        "dotnet",
        "gradle",
        "mvn",
        "bundle",
        "rake",
        "jupyter",
        "apt",
        "apt-get",
        "brew",
        "gh",
        "npx",
        "just",
    }
)
_PYTHONS = re.compile(r"^python(\d+(\.\d+)?)?$")


def command_prefix(words: Sequence[str]) -> list[str]:
    """The words that say which program a simple command runs, and what it is asked to do:
    `pytest -q tests` is `pytest`; `git commit -m x` is `git commit`; `python -m pytest -q`
    is `python -m pytest`."""
    if not words:
        return []
    if _PYTHONS.match(words[0]) and len(words) > 2 and words[1] == "-m":
        return list(words[:3])
    if words[0] in _SUBCOMMANDS and len(words) > 1 and not words[1].startswith("-"):
        return list(words[:2])
    return list(words[:1])


def _glob_escape(path: str) -> str:
    """`path` as a gitignore pattern matching just that path."""
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", path)
    return "\\" + escaped if escaped.startswith(("!", "#")) else escaped


def rules_for(tool: str, tool_input: Mapping[str, Any], worktree: Path | None = None) -> list[str]:
    """The rules "allow for this task" grants for this call, as shown to the user: each
    command's prefix for `bash` (`bash(pytest:*)`), the file for a file tool
    (`edit(docs/a.md)`); none when the call cannot be named so (a command that does not
    parse, a path outside the worktree, another tool)."""
    tool = tool.lower()
    if tool == "bash":
        parts = split_command(str(tool_input.get("command", "")))
        rules: list[str] = []
        for words in parts or []:
            prefix = command_prefix(words)
            rule = f"bash({shlex.join(prefix)}:*)"
            if prefix and rule not in rules:
                rules.append(rule)
        return rules
    if tool in FILE_TOOLS:
        raw = next((str(tool_input[k]) for k in _PATH_KEYS if tool_input.get(k)), None)
        path = resolve(worktree, raw) if raw else None
        return [f"{tool}({_glob_escape(path)})"] if path and path != "." else []
    return []


# -- rules ------------------------------------------------------------------------------------
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

    def matches_command(self, words: list[str]) -> bool:
        if self.tool != "bash":
            return False
        if self.spec is None:
            return True
        if self.spec.endswith(":*"):
            prefix = shlex.split(self.spec[:-2])
            return words[: len(prefix)] == prefix
        return words == shlex.split(self.spec)

    def matches_path(self, tool: str, path: str) -> bool:
        if self.tool != tool:
            return False
        return self.spec is None or glob_match(self.spec, path)

    def __str__(self) -> str:
        return self.tool if self.spec is None else f"{self.tool}({self.spec})"


def _parse_rules(rules: Iterable[str] | str) -> tuple[Rule, ...]:
    return tuple(Rule.parse(r) for r in ([rules] if isinstance(rules, str) else rules))


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
    mode: str = "default"
    ignored: tuple[str, ...] = ()  # what a repository tried and was not granted
    granted: tuple[Rule, ...] = ()  # what the user allowed for this task when asked

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PolicyError(f"Unknown mode {self.mode!r}; the modes are {', '.join(MODES)}.")

    @classmethod
    def from_rules(
        cls,
        allow: Iterable[str] = (),
        ask: Iterable[str] = (),
        deny: Iterable[str] = (),
        mode: str = "default",
    ) -> Policy:
        return cls(_parse_rules(allow), _parse_rules(ask), _parse_rules(deny), mode)

    # -- deciding ---------------------------------------------------------------------------
    def decide(
        self,
        tool: str,
        tool_input: Mapping[str, Any],
        *,
        worktree: Path | None = None,
        scope: Iterable[str] = (),
    ) -> Decision:
        tool = tool.lower()
        if tool == "bash":
            return self._decide_command(str(tool_input.get("command", "")))
        if tool in FILE_TOOLS:
            raw = next((str(tool_input[k]) for k in _PATH_KEYS if tool_input.get(k)), ".")
            path = resolve(worktree, raw)
            if path is None:
                return Decision("deny", f"{raw} is outside the repository")
            return self._decide_path(tool, path, tuple(scope))
        return self._fallback(tool)

    def _decide_command(self, command: str) -> Decision:
        parts = split_command(command)
        words_list = parts if parts is not None else [[command]]
        for words in words_list:
            if rule := _first(self.deny, lambda r, w=words: r.matches_command(w)):
                return Decision("deny", f"rule {rule} matches `{shlex.join(words)}`", str(rule))
        if self.mode == "plan":
            return Decision("deny", "plan mode is read only")
        granted = [
            w for w in words_list if _first(self.granted, lambda r, w=w: r.matches_command(w))
        ]
        for words in words_list if self.mode != "auto" else []:
            if words in granted:
                continue
            if rule := _first(self.ask, lambda r, w=words: r.matches_command(w)):
                return Decision("ask", f"rule {rule} matches `{shlex.join(words)}`", str(rule))
        allowed = parts is not None and all(
            words in granted or _first(self.allow, lambda r, w=words: r.matches_command(w))
            for words in parts
        )
        if allowed:
            return Decision("allow", "every part is allowed by a rule")
        if self.mode == "ask":
            return Decision("ask", "ask mode: every command asks", "bash")
        return Decision("allow", f"{self.mode} mode: commands run in the sandbox")

    def _decide_path(self, tool: str, path: str, scope: tuple[str, ...]) -> Decision:
        if rule := _first(self.deny, lambda r: r.matches_path(tool, path)):
            return Decision("deny", f"rule {rule} matches {path}", str(rule))
        explicit = _first(self.allow, lambda r: r.spec is not None and r.matches_path(tool, path))
        if tool in WRITE_TOOLS and is_protected(path) and not explicit:
            return Decision("deny", f"{path} is a protected file")
        if is_secret(path) and not explicit:
            return Decision("deny", f"{path} may hold secrets")
        if tool in WRITE_TOOLS and self.mode == "plan":
            return Decision("deny", "plan mode is read only")
        if granted := _first(self.granted, lambda r: r.matches_path(tool, path)):
            return Decision("allow", f"you allowed {granted} for this task")
        asking = _first(self.ask, lambda r: r.matches_path(tool, path))
        if asking and self.mode != "auto":
            return Decision("ask", f"rule {asking} matches {path}", str(asking))
        if _first(self.allow, lambda r: r.matches_path(tool, path)):
            return Decision("allow", "allowed by a rule")
        if tool in WRITE_TOOLS and self.mode == "ask":
            return Decision("ask", "ask mode: every write asks", tool)
        if tool in WRITE_TOOLS and self.mode == "default" and not in_scope(path, scope):
            return Decision("ask", f"{path} is outside the scope ({', '.join(scope)})", None)
        return Decision("allow", f"{self.mode} mode")

    def denies_writing(self, path: str) -> str | None:
        """The deny rule naming paths that forbids writing `path` (repository relative)
        with a file tool (`Edit(tests/**)`, `Write(tests/**)`), or None. The commit guard
        keeps a change to such a path out of the commit whatever made it, a command
        included. A rule naming no path (`Edit`) is about the tool, not the files."""
        rule = _first(
            self.deny,
            lambda r: r.spec is not None and any(r.matches_path(t, path) for t in WRITE_TOOLS),
        )
        return None if rule is None else str(rule)

    def _fallback(self, tool: str) -> Decision:
        if rule := _first(self.deny, lambda r: r.tool == tool and r.spec is None):
            return Decision("deny", f"rule {rule}", str(rule))
        return Decision("allow", "not a guarded tool")

    # -- changing ---------------------------------------------------------------------------
    def granting(self, rules: Iterable[str]) -> Policy:
        """This policy with `rules` granted for the task: they let through what they match
        where an ask rule or the mode would ask (deny rules, protected files and plan mode
        still refuse)."""
        return replace(self, granted=(*self.granted, *_parse_rules(list(rules))))

    def remembering(self, rule: str) -> Policy:
        """This policy with the ask rule `rule` turned into an allow rule (how a journal
        written before `granting` replays "remember")."""
        parsed = Rule.parse(rule)
        return replace(
            self, allow=(*self.allow, parsed), ask=tuple(r for r in self.ask if r != parsed)
        )

    def tightened_by(self, repo: Mapping[str, Any], source: str) -> Policy:
        """Add a repository's deny and ask rules; refuse its allow rules and looser modes."""
        perms = _section(repo, source)
        ignored = [f"{source}: allow rule {r!r} ignored" for r in _strings(perms, "allow", source)]
        mode = str(perms.get("mode", self.mode))
        if mode not in MODES:
            raise PolicyError(f"{source}: unknown mode {mode!r}; modes: {', '.join(MODES)}.")
        if MODES.index(mode) < MODES.index(self.mode):
            ignored.append(f"{source}: mode {mode!r} is looser than {self.mode!r}; ignored")
            mode = self.mode
        return replace(
            self,
            ask=(*self.ask, *_parse_rules(_strings(perms, "ask", source))),
            deny=(*self.deny, *_parse_rules(_strings(perms, "deny", source))),
            mode=mode,
            ignored=(*self.ignored, *ignored),
        )

    def merged_with(self, other: Policy) -> Policy:
        """Both sets of rules; `other`'s mode when it is not the default."""
        return Policy(
            (*self.allow, *other.allow),
            (*self.ask, *other.ask),
            (*self.deny, *other.deny),
            other.mode if other.mode != "default" else self.mode,
            (*self.ignored, *other.ignored),
            (*self.granted, *other.granted),
        )

    def to_dict(self) -> dict[str, Any]:
        rules = {k: [str(r) for r in getattr(self, k)] for k in ("allow", "ask", "deny")}
        granted = {"granted": [str(r) for r in self.granted]} if self.granted else {}
        return {**rules, "mode": self.mode, "ignored": list(self.ignored), **granted}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        policy = cls.from_rules(
            data.get("allow", ()),
            data.get("ask", ()),
            data.get("deny", ()),
            data.get("mode", "default"),
        )
        granted = _parse_rules(data.get("granted", ()))
        return replace(policy, ignored=tuple(data.get("ignored", ())), granted=granted)


def _first(rules: Iterable[Rule], test: Any) -> Rule | None:
    return next((r for r in rules if test(r)), None)


def _section(config: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    perms = config.get("permissions", {})
    if not isinstance(perms, Mapping):
        raise PolicyError(f"{source}: [permissions] must be a table.")
    return perms


def _strings(perms: Mapping[str, Any], key: str, source: str) -> list[str]:
    value = perms.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{source}: permissions.{key} must be a list of rule strings.")
    return value


# The config files read so far by the call in `reads_config_once` (None: outside one).
_config_reads: ContextVar[dict[Path, dict[str, Any]] | None] = ContextVar(
    "config_reads", default=None
)


def reads_config_once(func: Callable[P, R]) -> Callable[P, R]:
    """Within a call of `func`, each config file is read once: a submit reads the user's
    and the repository's files for several of their tables, and on a busy engine every
    read waits for the GIL (bench/RESULTS.md, submit)."""

    @wraps(func)
    def once(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _config_reads.set({})
        try:
            return func(*args, **kwargs)
        finally:
            _config_reads.reset(token)

    return once


def read_toml(path: Path) -> dict[str, Any]:
    reads = _config_reads.get()
    if reads is not None and path in reads:
        return copy.deepcopy(reads[path])
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        config = {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path} is not valid TOML ({exc}); fix or remove it.") from None
    if reads is not None:
        reads[path] = copy.deepcopy(config)
    return config


def config_table(
    config: Mapping[str, Any],
    name: str,
    keys: Sequence[str],
    source: str,
    error: type[DelegateError] = PolicyError,
) -> Mapping[str, Any]:
    """The `[name]` table of a config file read from `source`, checked to be a table
    holding only `keys` (`error` says what is wrong and what it takes)."""
    table = config.get(name, {})
    known = ", ".join(keys)
    if not isinstance(table, Mapping):
        raise error(f"{source}: [{name}] must be a table (of {known}).")
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise error(f"{source}: unknown key(s) in [{name}]: {', '.join(unknown)}; known: {known}.")
    return table


def effective_policy(call: Policy, repo_root: Path) -> Policy:
    """The user's config, then the call's rules, tightened by the repository's file."""
    user_path = user_dir() / "config.toml"
    user = _section(read_toml(user_path), str(user_path))
    base = Policy.from_rules(
        _strings(user, "allow", str(user_path)),
        _strings(user, "ask", str(user_path)),
        _strings(user, "deny", str(user_path)),
        str(user.get("mode", "default")),
    )
    repo_file = repo_root / REPO_CONFIG
    return base.merged_with(call).tightened_by(read_toml(repo_file), str(repo_file))


@dataclass(frozen=True)
class PermissionRequest:
    """A tool call waiting for a human: answer with `task.answer(request_id, allow)`.
    `rules`: what "allow for this task" grants (`task.answer(..., remember=True)`), as
    shown to the user (`rules_for`)."""

    request_id: str
    tool: str
    input: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    rules: tuple[str, ...] = ()

    def covers(self, rule: str) -> bool:
        """Whether `rule` matches this call (a command: any of its parts)."""
        parsed = Rule.parse(rule)
        if str(parsed) in self.rules:
            return True
        tool = self.tool.lower()
        if tool == "bash":
            parts = split_command(str(self.input.get("command", ""))) or []
            return any(parsed.matches_command(words) for words in parts)
        raw = next((str(self.input[k]) for k in _PATH_KEYS if self.input.get(k)), None)
        return raw is not None and parsed.matches_path(tool, raw.removeprefix("./"))
