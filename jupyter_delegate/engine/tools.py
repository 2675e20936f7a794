"""The agent's tools and their dispatch.

`read`, `write`, `edit`, `glob`, `grep` are the SDK's `agent_toolset_20260401` file tools
bound to the task's worktree (they resolve symlinks and refuse paths outside it); we do
not rewrite them, we only make their output speak in worktree-relative paths. `bash` is
our own: each command its own process group in the sandbox (`sandbox.py`), never the
toolset's persistent, unconfined shell. `skill` loads a skill's SKILL.md body or one of
its files, as pinned when the task started (progressive disclosure: the system prompt
holds only names and descriptions). `finish` ends the work; the loop handles it.

The SDK's file tools do their file I/O synchronously, so they do not run on the engine's
loop (where every task's coroutines run): each Toolbox has a worker, one daemon thread with
its own asyncio loop, made on the first file-tool call. A call that takes longer than the
command timeout (or than the time left in the task's budget) is abandoned with its worker,
whose thread may stay blocked in open() of a FIFO or on a hung mount, and the model is told;
the next call gets a fresh worker. After `MAX_ABANDONED_WORKERS` the task fails, so stuck
threads cannot pile up. `grep` is not among them: it is GNU grep in the sandbox. `write` is
checked for a non-regular file first (the SDK's `read` and `edit` check themselves); the
check runs on the worker too, as it stats the path.

Dispatch never raises for the model's mistakes: unknown tools and malformed input come
back as error results (`ToolOutput.malformed`) so the model can correct itself. Not here:
any limit on `bash`'s time beyond the command timeout (the loop checks the time budget
between model turns).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import os
import shlex
import stat
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..sandbox import Sandbox

FILE_TOOLS = ("read", "write", "edit", "glob", "grep")
MAX_ABANDONED_WORKERS = 3  # a round of a task fails when this many file-tool calls got stuck
_MAX_ERROR = 600
_T = TypeVar("_T")

BASH_TOOL: dict[str, Any] = {
    "name": "bash",
    "description": (
        "Run one shell command (bash -c) in the repository's worktree and return its exit "
        "code and merged stdout/stderr (long output keeps its head and tail). Each call is "
        "a fresh process: no state carries over between calls. There is no network. "
        "Do not commit: the harness commits your work when you finish."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The command line to run."},
            "timeout_ms": {
                "type": "integer",
                "description": "Optional timeout in milliseconds (capped by the budget).",
            },
        },
        "required": ["command"],
    },
}
FINISH_TOOL: dict[str, Any] = {
    "name": "finish",
    "description": (
        "Call when the outcome is reached (or cannot be). The harness then runs the checks "
        "itself and shows your summary, the diff and the check results to the user."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "summary": {
                "type": "string",
                "description": "What you changed and why, and anything the reviewer should know.",
            }
        },
        "required": ["summary"],
    },
}


_TEXTS = {"type": "array", "items": {"type": "string"}}
# Planning (planning.py): the planner answers with this instead of `finish`. Strict: the API
# holds its input to the schema; the harness checks the rest (names, cycles, scopes,
# budgets) and tells the agent what to fix.
PROPOSE_PLAN_TOOL: dict[str, Any] = {
    "name": "propose_plan",
    "description": (
        "Propose the plan: the outcome broken down into subtasks, each a small outcome an "
        "agent can reach alone in its own branch, with the checks that prove it, the paths "
        "it changes, a dollar budget, and the names of the subtasks it needs done first. "
        "Subtasks without a dependency between them run at the same time. The harness "
        "checks the plan and tells you what to fix; the user reviews and edits it."
    ),
    "strict": True,
    "input_schema": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "description": "The plan's title, a few words."},
            "summary": {"type": "string", "description": "Why this breakdown, briefly."},
            "subtasks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "name": {
                            "type": "string",
                            "description": "Short: a-z, 0-9, - and _ (it names a branch).",
                        },
                        "goal": {"type": "string"},
                        "checks": {**_TEXTS, "description": "Commands that must pass."},
                        "scope": {**_TEXTS, "description": "Paths it is expected to change."},
                        "budget_usd": {"type": "number"},
                        "depends_on": {**_TEXTS, "description": "Names of subtasks it needs."},
                    },
                    "required": ["name", "goal", "checks", "scope", "budget_usd", "depends_on"],
                },
            },
        },
        "required": ["title", "summary", "subtasks"],
    },
}


SKILL_OUTPUT_LIMIT = 60_000
GREP_LIMIT = 100_000  # bytes of matches, as the SDK's own grep


def skill_tool(names: Sequence[str]) -> dict[str, Any]:
    return {
        "name": "skill",
        "description": (
            "Load a skill listed in the system prompt: returns its instructions (SKILL.md) "
            "and the list of its other files. Call again with `file` to read one of them "
            "(e.g. references/guide.md). Scripts run with bash from the folder it names."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": list(names)},
                "file": {
                    "type": "string",
                    "description": "A file of the skill, relative to its folder (optional).",
                },
            },
            "required": ["name"],
        },
    }


@dataclass(frozen=True)
class ToolOutput:
    content: str | list[dict[str, Any]]
    is_error: bool = False
    malformed: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)


def _error(text: str, *, malformed: bool = False) -> ToolOutput:
    return ToolOutput(text[:_MAX_ERROR], is_error=True, malformed=malformed)


class _Stuck(Exception):
    """A call on a worker outlasted its timeout; it was cancelled, and the worker is done."""


class _Worker:
    """One daemon thread running its own asyncio loop, where coroutines that block in
    synchronous I/O run without blocking the caller's loop. Stopped, its thread ends once
    the call it is in (if any) returns; a daemon, it never holds the process open."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            if left := asyncio.all_tasks(loop):  # a cancelled call that has not ended yet
                for task in left:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        finally:
            loop.close()

    async def run(self, coroutine: Coroutine[Any, Any, _T], timeout_s: float) -> _T:
        """The coroutine's result, run here and awaited on the caller's loop; `_Stuck`
        after timeout_s. Cancelled or stuck, the call is cancelled (it stops at its next
        await, if its thread ever gets there)."""
        future = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            if future.cancelled():  # ours, not a TimeoutError the call itself raised
                raise _Stuck from None
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


class Toolbox:
    """The tools of one task, bound to its worktree and sandbox."""

    def __init__(
        self,
        worktree: Path,
        sandbox: Sandbox,
        command_timeout_s: float,
        skills: Sequence[Mapping[str, Any]] = (),
        deadline: float | None = None,
        check_plan: Callable[[Any], str | None] | None = None,
    ) -> None:
        """`check_plan`: the task plans (planning.py): `propose_plan` replaces `finish`, and
        this says what is wrong with a proposal (None: nothing)."""
        from anthropic.lib.tools.agent_toolset import AgentToolContext

        self.worktree = worktree.resolve()
        self.sandbox = sandbox
        self.command_timeout_s = command_timeout_s
        # When the task's time budget ends (time.monotonic()); the loop sets it.
        self.deadline = deadline
        self._context = AgentToolContext(workdir=str(self.worktree))
        self._file_tools: dict[str, Any] = {}  # made on first use: each costs about 0.8 ms
        self._worker: _Worker | None = None  # where the SDK's file tools run
        self._abandoned = 0  # workers left behind with a stuck call
        self.skills = {skill["name"]: skill for skill in skills}
        self.check_plan = check_plan

    def close(self) -> None:
        """Stop the file tools' worker (its thread ends when its call, if any, returns).
        Safe to call twice; a later file-tool call would start a new worker."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def definitions(self) -> list[dict[str, Any]]:
        file_tools = [copy.deepcopy(dict(d)) for d in _file_tool_definitions()]  # shared
        skills = [skill_tool(list(self.skills))] if self.skills else []
        if self.check_plan is not None:  # planning: commands never run (plan mode)
            return [*file_tools, *skills, copy.deepcopy(PROPOSE_PLAN_TOOL)]
        return [*file_tools, BASH_TOOL, *skills, FINISH_TOOL]

    def _file_tool_named(self, name: str) -> Any:
        if name not in self._file_tools:
            self._file_tools[name] = _file_tool_makers()[name](self._context)
        return self._file_tools[name]

    async def call(
        self, name: str, tool_input: object, on_output: Callable[[bytes], None] | None = None
    ) -> ToolOutput:
        """Run one tool call. `on_output` hears a command's output as it is read (bash
        only; see `Sandbox.run`)."""
        if not isinstance(tool_input, dict):
            return _error(f"{name}: input must be a JSON object.", malformed=True)
        if name == "bash":
            return await self._bash(tool_input, on_output)
        if name in FILE_TOOLS:
            return await self._file_tool(name, tool_input)
        if name == "skill" and self.skills:
            return self._skill(tool_input)
        known = ", ".join(t["name"] for t in self.definitions())
        return _error(f"Unknown tool {name!r}. The tools are: {known}.", malformed=True)

    async def _file_tool(self, name: str, tool_input: dict[str, Any]) -> ToolOutput:
        from anthropic.lib.tools import ToolError

        if name == "grep":
            return await self._grep(tool_input)
        timeout_s = self.command_timeout_s
        if self.deadline is not None:
            timeout_s = min(timeout_s, self.deadline - time.monotonic())
            if timeout_s <= 0:
                return _error(f"{name}: not run: the task's time budget has run out.")
        tool = self._file_tool_named(name)
        worker = self._worker = self._worker or _Worker(f"file tools {self.worktree.name}")
        try:
            result = await worker.run(self._run_file_tool(name, tool, tool_input), timeout_s)
        except _Stuck:
            self._abandon(worker)
            return self._stuck(name, timeout_s)
        except asyncio.CancelledError:  # the task was cancelled or stopped
            self._abandon(worker)
            raise
        except ToolError as exc:
            return _error(self._relative(str(exc)))
        except (ValueError, TypeError) as exc:
            detail = exc.__cause__ or exc
            return _error(f"{name}: invalid input: {detail}", malformed=True)
        if isinstance(result, str):
            text = self._relative(result)
            return ToolOutput(text or "no matches")
        return ToolOutput([dict(block) for block in result])

    async def _run_file_tool(self, name: str, tool: Any, tool_input: dict[str, Any]) -> Any:
        """One SDK file tool's call, on the worker's loop."""
        from anthropic.lib.tools import ToolError

        if name == "write" and (refusal := self._not_a_regular_file(tool_input)):
            raise ToolError(refusal)
        return await tool.call(tool_input)

    def _abandon(self, worker: _Worker) -> None:
        """Leave the worker to its call (which may never return); the next call gets a
        fresh one."""
        worker.stop()
        if self._worker is worker:
            self._worker = None
        self._abandoned += 1

    def _stuck(self, name: str, timeout_s: float) -> ToolOutput:
        took = f"{round(timeout_s, 1):g} s"
        if self._abandoned >= MAX_ABANDONED_WORKERS:
            from .loop import TaskFailed

            raise TaskFailed(
                f"The agent's file tools got stuck {self._abandoned} times (the last, "
                f"`{name}`, was abandoned after {took}); the task stopped so stuck threads "
                "do not pile up in this process. Something in its worktree blocks whoever "
                "opens it (a FIFO, a device, a hung mount): see the calls with `jupyter "
                "delegate show ID`. Its worktree is kept: reject the task to remove it. The "
                "stuck threads end with the process (restart the kernel)."
            )
        if timeout_s < self.command_timeout_s:
            took += ", the time left in the task's budget"
        return ToolOutput(
            f"{name}: took longer than {took} and was abandoned. Something it touches may "
            "block whoever opens it (a FIFO, a device, a hung mount): look with bash "
            "(`ls -l`, `stat`), whose commands are killed at their timeout, and use bash "
            "rather than the file tools for that path.",
            is_error=True,
            meta={"timed_out": True},
        )

    def _not_a_regular_file(self, tool_input: dict[str, Any]) -> str:
        """Why `write` must not open its path: an existing path that is not a regular file
        (open() of a FIFO would block until the call is abandoned, a device never ends)."""
        path = tool_input.get("file_path")
        if not isinstance(path, str):
            return ""  # the tool's own validation answers
        target = Path(path) if os.path.isabs(path) else self.worktree / path
        try:
            mode = target.stat().st_mode
        except OSError:
            return ""  # absent (it will be created) or unreachable (the tool says why)
        if stat.S_ISREG(mode):
            return ""
        return f"write: {path}: not a regular file; write refuses FIFOs, sockets and devices."

    async def _grep(self, tool_input: dict[str, Any]) -> ToolOutput:
        """Search file contents with GNU grep, run like any command: in the sandbox, its own
        process group, killed at the command timeout. Not in-process: a pathological
        pattern holds Python's regex engine (and the GIL) for as long as it backtracks, and
        a FIFO in the tree blocks a reader that opens it."""
        pattern, path = tool_input.get("pattern"), tool_input.get("path")
        if not isinstance(pattern, str) or not pattern:
            return _error("grep: 'pattern' must be a non-empty string.", malformed=True)
        if path is not None and not isinstance(path, str):
            return _error("grep: 'path' must be a string.", malformed=True)
        from ..policy import resolve

        where = resolve(self.worktree, path or ".")
        if where is None:
            return _error(f"grep: {path} is outside the repository.")
        command = (
            "grep -rnI --devices=skip --exclude-dir=.git --color=never -P -e "
            f"{shlex.quote(pattern)} -- {shlex.quote(where)} 2>&1 | head -c {GREP_LIMIT}"
        )
        result = await self.sandbox.run(command, timeout_s=self.command_timeout_s)
        text = result.output
        if result.timed_out:
            return _error(f"grep: timed out after {self.command_timeout_s:g} s.")
        if text.startswith("grep: ") and "\n" not in text.strip():
            return _error(text.strip())  # a malformed pattern, say
        lines = [line.removeprefix("./") for line in text.splitlines()]
        kept = [line for line in lines if not _in_secret(line)]
        return ToolOutput("\n".join(kept) or "no matches")

    async def _bash(
        self, tool_input: dict[str, Any], on_output: Callable[[bytes], None] | None = None
    ) -> ToolOutput:
        command = tool_input.get("command")
        if not isinstance(command, str) or not command.strip():
            return _error("bash: 'command' must be a non-empty string.", malformed=True)
        timeout_s = self.command_timeout_s
        timeout_ms = tool_input.get("timeout_ms")
        if timeout_ms is not None:
            if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
                return _error("bash: 'timeout_ms' must be a positive integer.", malformed=True)
            timeout_s = min(timeout_s, timeout_ms / 1000)
        started = time.monotonic()
        result = await self.sandbox.run(command, timeout_s=timeout_s, on_output=on_output)
        if result.over_quota_mb:
            from .loop import TaskFailed

            raise TaskFailed(
                f"The agent's worktree grew by {result.over_quota_mb:.0f} MB, over its quota; "
                f"the command was `{command[:200]}`. The task stopped so the disk does not "
                "fill; its worktree is kept: reject the task to remove it."
            )
        text = f"exit code {result.exit_code}\n{result.output}"
        if result.timed_out:
            text = f"timed out after {timeout_s:g} s (process group killed)\n{result.output}"
        return ToolOutput(
            text,
            is_error=result.exit_code != 0,
            meta={
                "exit_code": result.exit_code,
                "sandbox": result.tier,
                "timed_out": result.timed_out,
                "duration_s": round(time.monotonic() - started, 3),
            },
        )

    def _skill(self, tool_input: dict[str, Any]) -> ToolOutput:
        from ..context.skills import read_pinned, split_front_matter
        from ..errors import ContextError

        name, file = tool_input.get("name"), tool_input.get("file")
        if not isinstance(name, str) or name not in self.skills:
            known = ", ".join(self.skills)
            return _error(f"skill: 'name' must be one of: {known}.", malformed=True)
        if file is not None and (not isinstance(file, str) or not file.strip()):
            return _error("skill: 'file' must be a path inside the skill's folder.", malformed=True)
        skill = self.skills[name]
        meta = {"skill": name, **({"file": file} if file else {})}
        try:
            content = read_pinned(skill, file.strip().removeprefix("./") if file else "SKILL.md")
        except ContextError as exc:
            return ToolOutput(str(exc)[:_MAX_ERROR], is_error=True, meta=meta)
        if b"\0" in content[:8192]:
            text = f"{file} is a binary file of {len(content)} bytes (in {skill['folder']})."
        elif file:
            text = content.decode("utf-8", errors="replace")
        else:
            body = split_front_matter(content.decode("utf-8", errors="replace"), Path())[1]
            others = sorted(f for f in skill["files"] if f != "SKILL.md")
            listing = "\n".join(f"- {f}" for f in others) or "(none)"
            text = (
                f"# Skill: {name}\n(folder: {skill['folder']})\n\n{body.strip()}\n\n"
                f"Its other files (read one with the skill tool and `file`):\n{listing}"
            )
        if len(text) > SKILL_OUTPUT_LIMIT:
            text = text[:SKILL_OUTPUT_LIMIT] + f"\n[cut at {SKILL_OUTPUT_LIMIT} characters]"
        return ToolOutput(text, meta=meta)

    def _relative(self, text: str) -> str:
        return text.replace(str(self.worktree) + "/", "").replace(str(self.worktree), ".")

    def local(self, call: Mapping[str, Any]) -> dict[str, Any]:
        """The call with its file paths as the file tools see them: commands see the
        worktree at the user's checkout's path (sandbox.seen_at), so a path the agent
        copied from a command's output names the worktree's file, not the checkout's."""
        seen = str(self.sandbox.seen_at)
        tool_input = call.get("input")
        if seen == str(self.worktree) or not isinstance(tool_input, dict):
            return dict(call)
        mapped = dict(tool_input)
        for key in ("file_path", "path"):
            value = mapped.get(key)
            if isinstance(value, str) and (value == seen or value.startswith(seen + "/")):
                mapped[key] = str(self.worktree) + value[len(seen) :]
        return {**call, "input": mapped}


@functools.cache
def _file_tool_makers() -> dict[str, Callable[[Any], Any]]:
    from anthropic.lib.tools.agent_toolset import (
        beta_edit_tool,
        beta_glob_tool,
        beta_grep_tool,
        beta_read_tool,
        beta_write_tool,
    )

    makers = (beta_read_tool, beta_write_tool, beta_edit_tool, beta_glob_tool, beta_grep_tool)
    return dict(zip(FILE_TOOLS, makers, strict=True))


@functools.cache
def _file_tool_definitions() -> tuple[Mapping[str, Any], ...]:
    """The file tools' definitions, made once: they do not depend on the worktree (only
    the tools' calls do), and making the tools costs pydantic a schema each time."""
    from anthropic.lib.tools.agent_toolset import AgentToolContext

    context = AgentToolContext(workdir=".")
    return tuple(_file_tool_makers()[name](context).to_dict() for name in FILE_TOOLS)


def describe_input(tool_input: Any) -> str:
    """A tool call's input in a few words: its command, path or pattern."""
    if isinstance(tool_input, dict):
        for key in ("command", "file_path", "pattern"):
            if key in tool_input:
                return str(tool_input[key])[:100]
    return json.dumps(tool_input)[:100]


def _in_secret(grep_line: str) -> bool:
    from ..policy import is_secret

    return is_secret(grep_line.split(":", 1)[0])
