"""Replay data made by hand, in the shape of the replay contract (`Replay.to_dict`), for
the front-end tests: any number of steps, rounds, a compaction, a denied command, failing
then passing tests, thinking, and a worktree that grows a file at every edit (its diffs
are real unified diffs, made with difflib in git's layout). Tests of real tasks use
`jupyter_delegate.replaying`; these exercise the front ends at sizes no scripted task
reaches quickly (1,000 steps)."""

from __future__ import annotations

import difflib
import functools
import hashlib
from typing import Any

BASE = "calc.py"
BASE_TEXT = "def add(a, b):\n    return a - b\n"
HOSTILE = "All done </script><script>window.pwned = 1</script><!-- and & more"


def _diff(files: dict[str, str]) -> str:
    return "".join(_file_diff(path, files[path]) for path in sorted(files))


@functools.cache
def _file_diff(path: str, new: str) -> str:
    old = BASE_TEXT if path == BASE else ""
    if old == new:
        return ""
    lines = list(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            "/dev/null" if not old else f"a/{path}",
            f"b/{path}",
        )
    )
    head = [f"diff --git a/{path} b/{path}\n"]
    if not old:
        head.append("new file mode 100644\n")
    head.append("index 1111111..2222222 100644\n")
    return "".join(head + lines)


def _tree(files: dict[str, str]) -> str:
    return hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()


def synthetic_replay(n: int = 12, rounds: int = 2) -> dict[str, Any]:
    """A replay of `n` steps over `rounds` rounds, its diffs included."""
    files = {BASE: BASE_TEXT}
    steps: list[dict[str, Any]] = []
    diffs: dict[str, str] = {}
    cost = 0.0
    context = 1800
    per_round = max(1, n // rounds)
    for i in range(n):
        rnd = min(rounds, i // per_round + 1)
        notes: list[str] = []
        if i % per_round == 0 and rnd <= rounds and i // per_round < rounds:
            notes.append(f"round {rnd} began")
            if rnd > 1:
                notes.append("feedback received: also handle negative numbers")
        kind = i % 6
        tool: dict[str, Any] | None
        result: dict[str, Any] | None
        permissions: list[dict[str, Any]] = []
        text = thinking = ""
        if kind == 0:
            text = f"Let me look at the code (step {i + 1})."
            thinking = "The test says add(2, 3) should be 5; the function subtracts."
            tool = {"id": f"t{i}", "name": "bash", "input": {"command": f"cat {BASE}"}}
            result = _ok(files[BASE])
        elif kind == 1:
            files[BASE] = files[BASE].replace("a - b", "a + b")
            files[f"notes/step{i:04d}.txt"] = f"edit number {i}\n"
            tool = {
                "id": f"t{i}",
                "name": "write_file",
                "input": {"path": f"notes/step{i:04d}.txt", "content": f"edit number {i}\n"},
            }
            result = _ok(f"wrote notes/step{i:04d}.txt")
        elif kind == 2:
            tool = {"id": f"t{i}", "name": "bash", "input": {"command": "pytest -q"}}
            result = {**_ok("F.\n1 failed, 1 passed in 0.02s"), "exit_code": 1}
            permissions = [
                {"tool": "bash", "decision": "allow", "rule": "bash(pytest*)", "by": "policy"}
            ]
        elif kind == 3:
            tool = {"id": f"t{i}", "name": "bash", "input": {"command": "curl https://example.com"}}
            result = {
                "text": "Denied: network access is not allowed for this task.",
                "is_error": True,
                "exit_code": None,
                "denied": True,
                "sandbox": None,
            }
            permissions = [
                {"tool": "bash", "decision": "deny", "rule": "bash(curl*)", "by": "policy"}
            ]
        elif kind == 4:
            tool = {"id": f"t{i}", "name": "bash", "input": {"command": "pytest -q"}}
            result = _ok("..\n2 passed in 0.01s")
            permissions = [{"tool": "bash", "decision": "allow", "rule": None, "by": "user"}]
        else:
            text = "Tests pass; the change is ready."
            tool = None
            result = None
        if i == n - 1:  # the last words, with markup that must stay text
            text, tool, result, permissions = HOSTILE, None, None, []
        compaction = None
        if i and i % 25 == 0:
            compaction = {"by": "auto", "tokens_before": context, "tokens_after": 2400}
            context = 2400
        context += 350
        cost += 0.0031
        if i == n - 1:
            notes.append("checks: 1 passed")
            notes.append("state reached: review")
        tree = _tree(files)
        diffs.setdefault(tree, _diff(files))
        steps.append(
            {
                "index": i,
                "round": rnd,
                "at": 1_700_000_000.0 + 7 * i,
                "text": text,
                "thinking": thinking,
                "tool": tool,
                "result": result,
                "permissions": permissions,
                "cost_usd": round(cost, 6),
                "context_tokens": context,
                "compaction": compaction,
                "notes": notes,
                "tree": tree,
                "files": sorted(p for p in files if (BASE_TEXT if p == BASE else "") != files[p]),
            }
        )
    return {
        "version": 1,
        "task": {
            "id": "t0c0ffee",
            "name": "fix-add",
            "goal": "Make add() add.\ncheck: pytest -q",
            "repo": "/home/teacher/calc",
            "base": "0" * 40,
            "state": "review",
            "model": "claude-sonnet-4-5",
            "rounds": rounds,
        },
        "steps": steps,
        "diffs": diffs,
    }


def _ok(text: str) -> dict[str, Any]:
    return {"text": text, "is_error": False, "exit_code": 0, "denied": False, "sandbox": "bwrap"}
