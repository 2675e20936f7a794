"""Replay: a recorded task stepped through from its journal, judged against what git says
of the branch at that point (the round's commits), the task's own usage, and the journal.
Tasks run through the scripted fake; the worktree's snapshots come from the real engine
and real git, and an agent that plants a filter and an fsmonitor never gets them run."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CHECK, FIXED, SANDBOX, Factory
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate import replay as jd_replay
from jupyter_delegate.cli import main
from jupyter_delegate.journal import GENESIS, Journal, chain_hash
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.policy import Policy
from jupyter_delegate.replaying import Replay, ReplayError, replay
from jupyter_delegate.snapshots import Snapshots
from jupyter_delegate.testing import FakeMessagesAPI, load_scenario
from jupyter_delegate.workspace import Workspace

DIFF = ("--no-ext-diff", "--no-textconv", "--ignore-submodules=all")
SUB = "\n\ndef sub(a, b):\n    return a - b\n"
NOTES = "# Notes\n\nadd() subtracted.\n"
BASH_CHANGE = "printf 'Fixed by an agent.\\n' >> README.md"
# Round 1: a write, an edit, a bash command that changes a file, a read; round 2: a write.
TWO_ROUNDS: list[dict[str, Any]] = [
    {"text": "Notes first.", "tools": [{"write": {"file_path": "NOTES.md", "content": NOTES}}]},
    {
        "text": "The operator is wrong.",
        "tools": [{"edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}}],
    },
    {"tools": [{"bash": {"command": BASH_CHANGE}}]},
    {"tools": [{"read": {"file_path": "calc.py"}}, {"bash": {"command": CHECK}}]},
    {"tools": [{"finish": {"summary": "add() adds."}}]},
    {"tools": [{"write": {"file_path": "calc.py", "content": FIXED + SUB}}]},
    {"tools": [{"finish": {"summary": "Added sub()."}}]},
]


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def git_diff(repo: git.Repo, start: str, end: str) -> str:
    return str(repo.git.diff(*DIFF, start, end))


def two_round_task(make_manager: Factory, repo: git.Repo, **submit: Any) -> Any:
    manager, _ = make_manager(TWO_ROUNDS)
    task = manager.submit(
        Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir, **submit
    )
    assert task.wait(timeout=90) == TaskState.REVIEW, task.error
    task.request_changes("Add a sub() too.")
    assert task.wait(timeout=90) == TaskState.REVIEW, task.error
    return task


def step_of(found: Replay, name: str, round_: int = 1, nth: int = 0) -> int:
    """The index of the `nth` step calling `name` in round `round_`."""
    matching = [
        s.index for s in found.steps if s.tool and s.tool.name == name and s.round == round_
    ]
    return matching[nth]


def test_jd_replay_stays_the_function_once_its_module_is_imported() -> None:
    """The module is `replaying`, so importing it never rebinds `jd.replay` (a module
    named `replay` did, in whichever process imported it first)."""
    import importlib

    import jupyter_delegate as jd

    importlib.import_module("jupyter_delegate.replaying")
    assert callable(jd.replay) and jd.replay.__module__ == "jupyter_delegate"


def test_stepping_forward_and_back_shows_the_branchs_diff_at_each_round_and_each_change(
    repo: git.Repo, make_manager: Factory
) -> None:
    task = two_round_task(make_manager, repo)
    first, second = (r.head for r in task.review_rounds())
    assert first and second and first != second
    found = jd_replay(task)

    names = [s.tool.name if s.tool else None for s in found.steps]
    assert names == ["write", "edit", "bash", "read", "bash", "finish", "write", "finish"]
    assert [s.round for s in found.steps] == [1, 1, 1, 1, 1, 1, 2, 2]
    assert found.steps[0].text == "Notes first." and found.steps[0].notes[0] == "round 1 began"
    assert (
        found.steps[3].text == "" and found.steps[4].context_tokens == found.steps[3].context_tokens
    )
    # Forward, then back: each step's diff is the branch's at that point, and the same both ways.
    forward = [found.diff_at(i) for i in range(len(found))]
    backward = [found.diff_at(i) for i in reversed(range(len(found)))][::-1]
    assert forward == backward
    end_of_round_1 = step_of(found, "finish", 1)
    assert forward[end_of_round_1].rstrip("\n") == git_diff(repo, task.base_commit, first)
    assert forward[-1].rstrip("\n") == git_diff(repo, task.base_commit, second)
    assert forward[step_of(found, "write", 2)] == forward[-1]
    # In between: exactly the files changed so far, the one bash changed included.
    assert found.steps[0].files == ["NOTES.md"]
    assert "+# Notes" in forward[0] and "calc.py" not in forward[0]
    assert found.steps[1].files == ["NOTES.md", "calc.py"]
    bash_step = step_of(found, "bash", 1)
    assert found.steps[bash_step].files == ["NOTES.md", "README.md", "calc.py"]
    assert "+Fixed by an agent." in forward[bash_step]
    assert "+Fixed by an agent." not in forward[bash_step - 1]
    assert forward[bash_step + 1] == forward[bash_step]  # a read changes nothing
    # Each changing step has its snapshot, a real tree of this repository.
    for step in found.steps:
        assert not step.reconstructed
        if step.tool and step.tool.name in ("write", "edit", "bash"):
            assert repo.git.cat_file("-t", step.tree) == "tree"
    assert found.steps[end_of_round_1].tree == repo.commit(first).tree.hexsha
    # Cost so far never goes down and ends at the task's; notes say what happened.
    costs = [s.cost_usd for s in found.steps]
    assert costs == sorted(costs) and costs[0] > 0
    assert costs[-1] == pytest.approx(task.usage.cost_usd)
    notes = " | ".join(n for s in found.steps for n in s.notes)
    assert "checks passed: 1/1" in notes and "review: ready for review" in notes
    assert "round 2 began" in found.steps[step_of(found, "write", 2)].notes
    assert "feedback received: Add a sub() too." in found.steps[step_of(found, "write", 2)].notes
    result = found.steps[bash_step + 2].result  # the check, after the read
    assert result is not None and result.exit_code == 0 and result.sandbox
    assert found.task == {
        "id": task.id,
        "name": None,
        "goal": "Make add() add.",
        "repo": str(Path(repo.working_dir).resolve()),
        "base": task.base_commit,
        "state": "review",
        "model": task.model,
        "rounds": 2,
    }


def test_snapshots_change_neither_the_commits_nor_the_journals_verification(
    repo: git.Repo, make_manager: Factory
) -> None:
    task = two_round_task(make_manager, repo)
    first, second = (r.head for r in task.review_rounds())
    # The branch is base -> round 1 -> round 2, as without snapshots; the steps live apart.
    assert repo.git.rev_list(f"{task.base_commit}..{second}").split() == [second, first]
    steps = repo.git.rev_list(f"refs/delegate/steps/{task.id}").split()
    assert first not in steps and task.base_commit in steps
    assert "Delegate-Task" not in repo.git.log("--format=%B", f"refs/delegate/steps/{task.id}")
    # The worktree's own index is the harness's, and it is clean against the branch.
    assert task.worktree is not None
    assert git.Repo(task.worktree).git.status("--porcelain") == ""
    assert Journal(task.journal_path).verify().ok
    code, out = cli("audit", "verify", task.id, "--repo", repo.working_dir)
    assert code == 0, out
    results = [e.data for e in Journal(task.journal_path).events() if e.type == "tool_result"]
    assert {"tree" in r for r in results if r["name"] in ("write", "edit", "bash")} == {True}
    assert not any("tree" in r for r in results if r["name"] in ("read", "finish"))


def rechained_without_trees(source: Path, target: Path) -> None:
    """`source` as a journal from before snapshots: no `tree`, and a chain that verifies."""
    prev, lines = GENESIS, []
    for line in source.read_text().splitlines():
        raw = json.loads(line)
        raw["data"].pop("tree", None)
        body = {k: raw[k] for k in ("seq", "ts", "type", "data", "prev")}
        body["prev"] = prev
        prev = chain_hash(prev, body)
        lines.append(json.dumps({**body, "hash": prev}))
    target.write_text("\n".join(lines) + "\n")


def test_a_journal_without_trees_is_rebuilt_from_the_file_tools_and_anchored_at_commits(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    task = two_round_task(make_manager, repo)
    first, second = (r.head for r in task.review_rounds())
    old = tmp_path / "journal.jsonl"
    rechained_without_trees(task.journal_path, old)
    assert Journal(old).verify().ok
    found = replay(old, repo=repo.working_dir)
    assert found.warnings == []
    assert found.steps[0].reconstructed and found.steps[0].tree.startswith("reconstructed:")
    assert found.diff_at(0) == (
        "diff --git a/NOTES.md b/NOTES.md\nnew file mode 100644\n--- /dev/null\n+++ b/NOTES.md\n"
        "@@ -0,0 +1,3 @@\n+# Notes\n+\n+add() subtracted.\n"
    )
    assert found.steps[1].files == ["NOTES.md", "calc.py"] and "+    return a + b" in found.diff_at(
        1
    )
    bash_step = step_of(found, "bash", 1)
    assert any("not shown (no snapshot)" in n for n in found.steps[bash_step].notes)
    assert "README.md" not in found.steps[bash_step].files  # what bash did is not in the journal
    # Each round's last step is its commit, exactly.
    end_of_round_1 = step_of(found, "finish", 1)
    assert not found.steps[end_of_round_1].reconstructed
    assert found.diff_at(end_of_round_1).rstrip("\n") == git_diff(repo, task.base_commit, first)
    assert found.diff_at(len(found) - 1).rstrip("\n") == git_diff(repo, task.base_commit, second)
    data = found.to_dict(diffs=True)
    assert set(data["diffs"]) == {s["tree"] for s in data["steps"] if s["tree"]}


def test_a_compaction_shows_on_the_step_after_it(repo: git.Repo) -> None:
    big = "python3 -c \"print('log line ' * 700)\""
    turns = [{"tools": [{"bash": {"command": big}}]} for _ in range(5)]
    turns += [{"tools": [{"finish": {"summary": "done"}}]}]
    spec = {
        "name": "c",
        "models": [{"id": "claude-sonnet-4-6", "compaction": False}],
        "turns": turns,
    }
    fake = FakeMessagesAPI(load_scenario(spec))
    manager = TaskManager(client=fake.async_client(max_retries=0), sandbox=SANDBOX)
    task = manager.submit(
        Outcome("Fix add.", checks=("true",)), repo=repo.working_dir, compact_at=6000
    )
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    assert task.compactions >= 1
    found = replay(task)
    compacted = [s for s in found.steps if s.compaction is not None]
    assert len(compacted) == task.compactions
    step = compacted[0]
    assert step.compaction is not None and step.compaction.by == "harness"
    assert step.compaction.tokens_after < step.compaction.tokens_before
    before = found.steps[step.index - 1]
    assert step.context_tokens < before.context_tokens  # the context shrank there
    assert step.cost_usd > before.cost_usd  # the summarising turn is paid for
    assert found.steps[-1].cost_usd == pytest.approx(task.usage.cost_usd)


def test_permissions_show_on_their_steps_and_a_running_task_replays_so_far(
    repo: git.Repo, make_manager: Factory
) -> None:
    turns = [
        {
            "tools": [
                {"edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}}
            ]
        },
        {"tools": [{"bash": {"command": CHECK}}]},
        {"tools": [{"finish": {"summary": "fixed"}}]},
    ]
    manager, _ = make_manager(turns)
    policy = Policy.from_rules(ask=["Bash"], deny=["Edit(calc.py)"])
    task = manager.submit(Outcome("Fix", checks=(CHECK,)), repo=repo.working_dir, policy=policy)
    assert task.wait(timeout=60) == TaskState.WAITING
    running = replay(task)  # while it waits for an answer
    assert running.task["state"] == "waiting" and len(running) == 2
    denied, asked = running.steps
    assert denied.result is not None and denied.result.denied and denied.files == []
    assert [vars(p) for p in denied.permissions] == [
        {"tool": "edit", "decision": "deny", "rule": None, "by": "policy"}
    ]
    assert asked.result is None and [p.decision for p in asked.permissions] == ["pending"]
    task.answer(task.pending()[0].request_id, True)
    assert task.wait(timeout=60) == TaskState.REVIEW
    done = replay(task)
    allowed = done.steps[1].permissions
    assert [(p.decision, p.by) for p in allowed] == [("allow", "human")]
    assert done.steps[1].result is not None and done.steps[1].result.exit_code == 1


def test_a_task_received_from_another_clone_replays_with_its_snapshots(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    task = two_round_task(make_manager, repo)
    here = replay(task)
    bundle = task.handoff(tmp_path / "task.delegate")
    other = git.Repo.clone_from(repo.working_dir, tmp_path / "other")
    received = TaskManager(sandbox="none").receive(bundle, other.working_dir, review_only=True)
    there = jd_replay(received.id, repo=other.working_dir)
    assert len(there) == len(here) + 0 and not any(s.reconstructed for s in there.steps)
    assert [s.tree for s in there.steps] == [s.tree for s in here.steps]
    assert [there.diff_at(i) for i in range(len(there))] == [
        here.diff_at(i) for i in range(len(here))
    ]
    assert "received from" in " ".join(there.steps[-1].notes)
    assert there.task["repo"] == str(Path(other.working_dir).resolve())


def test_the_cli_prints_the_step_list_and_the_json_and_refuses_bad_input_in_a_line(
    repo: git.Repo, make_manager: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = two_round_task(make_manager, repo, name="fix-add")
    root = repo.working_dir
    code, out = cli("replay", "fix-add", "--repo", root)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{task.id}  review  Make add() add.")
    assert "8 steps in 2 round(s)" in lines[1]
    bash_line = next(line for line in lines if " bash " in line and "README" in line)
    assert bash_line.split()[:2] == ["2", "r1"] and "exit 0" in bash_line
    assert "3 file(s) changed" in bash_line and "$0.0" in bash_line and " tok" in bash_line
    code, out = cli("replay", task.id, "--repo", root, "--json")
    data = json.loads(out)
    assert code == 0 and data["version"] == 1 and len(data["steps"]) == 8
    step = data["steps"][2]
    assert set(step) >= {"index", "round", "at", "text", "thinking", "tool", "result"}
    assert step["tool"]["input"] == {"command": BASH_CHANGE} and step["result"]["exit_code"] == 0
    assert data["diffs"][step["tree"]] == replay(task).diff_at(2)
    capsys.readouterr()
    # Bad input: one line each, saying what to do.
    for argv, expected in (
        (("replay", "nope", "--repo", root), "No task 'nope'"),
        (("replay", str(tmp_path / "missing.jsonl")), "No journal at"),
        (
            ("replay", task.id, "--repo", root, "--html", str(tmp_path / "no" / "x.html")),
            "does not exist",
        ),
    ):
        code, _ = cli(*argv)
        err = capsys.readouterr().err
        assert code == 2 and expected in err and err.count("\n") == 1, err


def test_a_tampered_journal_is_replayed_up_to_its_first_bad_line_with_a_warning(
    repo: git.Repo, make_manager: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = two_round_task(make_manager, repo)
    copy = tmp_path / "journal.jsonl"
    lines = task.journal_path.read_text().splitlines()
    at = next(
        i for i, line in enumerate(lines) if '"type":"tool_result"' in line and "README" not in line
    )
    tampered = json.loads(lines[at + 6])
    tampered["data"]["tampered"] = True
    lines[at + 6] = json.dumps(tampered)
    copy.write_text("\n".join(lines) + "\n")
    found = replay(copy, repo=repo.working_dir)
    assert len(found.warnings) == 1 and f"line {at + 7} does not verify" in found.warnings[0]
    assert 0 < len(found) < 8
    code, out = cli("replay", str(copy), "--repo", repo.working_dir)
    assert code == 0 and out.startswith(task.id)
    assert "warning:" in capsys.readouterr().err


def test_replay_refuses_what_is_no_task_journal(tmp_path: Path) -> None:
    empty = tmp_path / "journal.jsonl"
    empty.write_text("")
    with pytest.raises(ReplayError, match="holds no task event first"):
        replay(empty)


# -- the harness's git never runs what the agent planted ----------------------------------
def planted(marker: Path) -> str:
    """A nested repository whose configuration runs `touch MARKER-how` as an fsmonitor, a
    clean filter and hooks, and a .gitattributes naming the filter for every file."""
    runs = {
        "core.fsmonitor": f"touch {marker}-fsmonitor; false",
        "filter.x.clean": f"touch {marker}-clean; cat",
        "filter.x.process": f"touch {marker}-process",
        "core.hooksPath": "hooks",
    }
    config = " && ".join(f"git config {key} '{value}'" for key, value in runs.items())
    return (
        f"mkdir -p evil/hooks && (cd evil && git init -q && {config}) && "
        f"printf '#!/bin/sh\\ntouch {marker}-hook\\n' > evil/hooks/reference-transaction && "
        "chmod +x evil/hooks/reference-transaction && "
        "printf '* filter=x\\n' > .gitattributes && echo data > data.txt"
    )


def test_a_planted_filter_and_fsmonitor_never_run_in_a_snapshot(
    user_repo: git.Repo, outside_tmp: Path, make_manager: Factory
) -> None:
    """The agent plants the configuration, points the worktree's `.git` at it (a write the
    user allowed), changes files while it points there, then puts it back. Every step is
    snapshotted; nothing planted runs. A git that followed `.git` would have run it."""
    marker = outside_tmp / "MARK"
    root = Path(user_repo.working_dir)
    admin = Path(user_repo.git_dir) / "worktrees"
    redirect = "gitdir: evil/.git\n"
    made: list[Any] = []

    def script(body: dict[str, Any], turn: int) -> dict[str, Any]:
        original = f"gitdir: {admin / made[0].id}\n"  # what git wrote for the worktree
        return [
            {"tools": [{"bash": {"command": planted(marker)}}]},
            {"tools": [{"write": {"file_path": ".git", "content": redirect}}]},
            {"tools": [{"bash": {"command": "echo more >> data.txt && touch calc.py"}}]},
            {"tools": [{"write": {"file_path": "calc.py", "content": FIXED}}]},
            {"tools": [{"write": {"file_path": ".git", "content": original}}]},
            {"tools": [{"finish": {"summary": "done"}}]},
        ][turn]

    manager, _ = make_manager(script)
    policy = Policy.from_rules(allow=["Write(.git)"])
    made.append(manager.submit(Outcome("Fix.", checks=("true",)), repo=str(root), policy=policy))
    task = made[0]
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    found = replay(task)
    snapped = [s for s in found.steps if s.tool and s.tool.name in ("write", "bash")]
    assert len(snapped) == 5 and all(s.tree and not s.reconstructed for s in snapped)
    assert (task.worktree / ".git").read_text() == f"gitdir: {admin / task.id}\n"
    assert found.steps[2].files == [".gitattributes", "data.txt"]  # not evil/, a repository
    assert found.diff_at(2).count("+more") == 1 and "calc.py" in found.steps[3].files
    assert sorted(p.name for p in outside_tmp.iterdir() if p.name.startswith("MARK")) == []
    # Armed: a git that follows the worktree's `.git` to the planted config runs it.
    (task.worktree / ".git").write_text(redirect)
    subprocess.run(
        ["git", "add", "-A"],
        cwd=task.worktree,
        env={"PATH": "/usr/bin:/bin", "GIT_INDEX_FILE": str(outside_tmp / "scratch.index")},
        capture_output=True,
        check=False,
    )
    (task.worktree / ".git").write_text(f"gitdir: {admin / task.id}\n")
    assert any(p.name.startswith("MARK") for p in outside_tmp.iterdir())


def test_a_filter_the_configuration_defines_is_not_run_by_a_snapshot(
    user_repo: git.Repo, outside_tmp: Path
) -> None:
    """A filter the repository's configuration defines, named by a .gitattributes in the
    agent's tree: `git add` would run it; the snapshot stores the bytes as they are."""
    marker = outside_tmp / "MARK-clean"
    root = Path(user_repo.working_dir)
    user_repo.git.config("filter.x.clean", f"touch {marker}; tr a-z A-Z")
    user_repo.git.config("filter.x.required", "true")
    workspace = Workspace(root)
    made = workspace.create("t1", "filters", None)
    (made.path / ".gitattributes").write_text("*.txt filter=x\n")
    (made.path / "data.txt").write_text("lower\n")
    snapshots = Snapshots(workspace, "t1", made.path, made.base_commit)
    tree = snapshots.take()
    assert not marker.exists()
    assert user_repo.git.cat_file("blob", f"{tree}:data.txt") == "lower"
    snapshots.flush()
    assert user_repo.git.ls_tree("refs/delegate/steps/t1").split() == [
        "040000",
        "tree",
        tree,
        "00001",
    ]
    assert git.Repo(made.path).git.status("--porcelain") == "?? .gitattributes\n?? data.txt".strip()
    # Armed: the same add through git's ordinary path runs the filter.
    scratch = outside_tmp / "scratch.index"
    subprocess.run(
        ["git", "add", "-A"],
        cwd=made.path,
        env={"PATH": "/usr/bin:/bin", "GIT_INDEX_FILE": str(scratch), "HOME": str(outside_tmp)},
        capture_output=True,
        check=False,
    )
    assert marker.exists()
