"""Handoff: a task moved to another machine or clone of its repository, and received there.

`handoff` writes one bundle file (a tar) holding:

- `manifest.json`: the task's id, its base commit and branch, its branch head, the
  journal's head hash, where it came from (host, path) and when;
- `journal.jsonl`: the journal, as written, ending with the `handoff` event that
  records the move out (to which file, when, from where);
- `branch.bundle`: the task's branch as a git bundle, with its base commit as the
  prerequisite (absent when the branch holds no commit of its own), and the snapshots of
  its worktree step by step (`refs/delegate/steps/<id>`, snapshots.py) for replay;
- `record.json`: the task's notebook record (`compact_record`), for a reader that has
  no jupyter-delegate;
- `checks/`: the logs of its checks.

Only a task no process runs can be handed off (paused, interrupted, in review, failed for a
transient cause); the agent's uncommitted edits are committed first, through the commit
guard, so the branch holds all of its work. The journal (the truth) is checked on
arrival, not the manifest: `receive` verifies the chain, takes the branch head from the
last commit the journal records and refuses a bundle whose branch is elsewhere, and
refuses a repository without the base commit, each naming what failed. It then makes the
task folder, branch and worktree, journals the move in, and resumes the task (or leaves
it for review).

Not here: running the task (manager.py), the chain itself (journal.py). The harness's
git runs pinned (workspace.PINNED_CONFIG): a bundle names no program git would run.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DelegateError, RepoError
from .journal import Journal
from .outcome import Outcome
from .snapshots import STEPS_PREFIX
from .task import Task, TaskState
from .workspace import Workspace, pinned_argv, pinned_env

if TYPE_CHECKING:
    from .manager import TaskManager

S = TaskState
BUNDLE_FORMAT = 1
MANIFEST, JOURNAL, BRANCH, RECORD, CHECKS = (
    "manifest.json",
    "journal.jsonl",
    "branch.bundle",
    "record.json",
    "checks/",
)
MEMBER_LIMIT = 512 * 1024 * 1024  # no member of a bundle is bigger


class HandoffError(DelegateError):
    """A handoff refused, or a bundle that cannot be received: the message names what
    failed and what to do. Nothing was changed."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _here(workspace: Workspace) -> dict[str, str]:
    return {"host": socket.gethostname(), "path": str(workspace.root)}


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The harness's git, pinned: nothing in the repository or a bundle makes it run a
    program. Bundles are read as files (`protocol.file.allow`), never fetched from afar."""
    argv = pinned_argv("-c", "protocol.file.allow=always", *args)
    return subprocess.run(argv, cwd=cwd, env=pinned_env(), capture_output=True, text=True)


# -- out ----------------------------------------------------------------------------------
def handoff(manager: TaskManager, task: Task, path: str | os.PathLike[str]) -> Path:
    """Write `task` to the bundle file `path` (see the module); returns it."""
    from .manager import _try_lock

    target = Path(path).expanduser().resolve()
    if target.is_dir():
        raise HandoffError(f"{target} is a folder: give the bundle file's name (-o FILE).")
    if not target.parent.is_dir():
        raise HandoffError(f"{target.parent} does not exist: give -o a file in a folder that does.")
    context = manager._context(task)
    manager._settle_round(task, context)
    manager._refresh(task, context)
    _check_movable(task)  # a task this process runs is refused here, by its state
    fd = _try_lock(context.workspace.task_dir(task.id))
    if fd is None:
        manager._refresh(task, context)
        raise HandoffError(
            f"Task {task.id} is {task.state} and being run by another process, so it cannot "
            f"be handed off. Pause it first (`jupyter delegate pause {task.id}`), then hand "
            "it off."
        )
    with manager._holding(context, fd):
        manager._refresh(task, context)
        _check_movable(task)
        head = _commit_work(manager, task, context)
        manager._record(
            task,
            "handoff",
            {
                "direction": "out",
                "file": str(target),
                "head": head,
                "source": _here(context.workspace),
                "target": {"file": str(target)},
                "at": _now(),
            },
        )
        _write(task, context.workspace, head, target)
    return target


def _check_movable(task: Task) -> None:
    movable = (S.PAUSED, S.INTERRUPTED, S.REVIEW)
    if task.state in movable or (task.state == S.FAILED and task.transient):
        if task.handed_off:
            raise HandoffError(
                f"Task {task.id} was already handed off (to {task.handed_off}); it continues "
                "where that bundle is received."
            )
        return
    if task.state.active:
        why = "runs"
    elif task.state == S.FAILED:
        why = "failed for a cause that trying again will not fix"
    else:
        why = "is finished"
    raise HandoffError(
        f"Task {task.id} is {task.state}: it {why}, so it cannot be handed off. Only a task "
        "paused, interrupted, in review, or failed for a transient cause can be; pause a "
        f"running one first (`jupyter delegate pause {task.id}`)."
    )


def _commit_work(manager: TaskManager, task: Task, context: Any) -> str:
    """Commit what the agent left uncommitted in the worktree (through the commit guard),
    journaled as a commit: the branch then holds all of the task's work. Returns the
    branch head."""
    workspace: Workspace = context.workspace
    worktree = task.worktree
    if worktree is None or not worktree.exists():
        return task.head_commit or task.base_commit
    staged = workspace.stage(worktree)
    revert = manager.rounds._guard(task, context, staged) if staged.changes else []
    trailers = {"Delegate-Task": task.id, "Delegate-Journal": context.journal.head}
    head = workspace.commit(
        worktree, "delegate: work in progress at handoff", trailers, revert, staged=staged
    )
    if head != (task.head_commit or task.base_commit):
        manager._record(task, "commit", {"commit": head})
    return head


def _write(task: Task, workspace: Workspace, head: str, target: Path) -> None:
    from .notebook.record import compact_record

    manifest = {
        "format": BUNDLE_FORMAT,
        "task": task.id,
        "title": task.title,
        "base_commit": task.base_commit,
        "base_branch": task.base_branch,
        "branch": task.branch,
        "head": head,
        "journal_head": task.journal_head,
        "state": str(task.state),
        "from": _here(workspace),
        "at": _now(),
    }
    folder = workspace.task_dir(task.id)
    with tempfile.TemporaryDirectory(prefix="delegate-handoff-") as scratch:
        branch_file = Path(scratch) / BRANCH
        if head != task.base_commit:
            steps = STEPS_PREFIX + task.id  # the worktree's snapshots, for replay
            has_steps = _git(workspace.root, "rev-parse", "--verify", "--quiet", steps)
            made = _git(
                workspace.root,
                "bundle",
                "create",
                "--quiet",
                str(branch_file),
                f"refs/heads/{task.branch}",
                *([steps] if has_steps.returncode == 0 else []),
                f"^{task.base_commit}",
            )
            if made.returncode != 0:
                raise HandoffError(
                    f"git could not bundle task {task.id}'s branch {task.branch}: "
                    f"{made.stderr.strip()}. Nothing was written."
                )
        partial = target.with_name(target.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            _add(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
            tar.add(folder / "journal.jsonl", JOURNAL)
            if branch_file.exists():
                tar.add(branch_file, BRANCH)
            record = compact_record(task)
            _add(tar, RECORD, json.dumps(record, indent=2).encode())
            logs = folder / "checks"
            if logs.is_dir():
                for log in sorted(logs.glob("*.log")):
                    tar.add(log, CHECKS + log.name)
        os.replace(partial, target)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


# -- in -----------------------------------------------------------------------------------
def read_bundle(path: Path) -> dict[str, bytes]:
    """The members of a bundle file by name: regular files only, with the names a bundle
    has; anything else is refused."""
    if not path.is_file():
        raise HandoffError(f"No bundle file at {path}: give the file `handoff -o` wrote.")
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar.getmembers():
                found[member.name] = _member(tar, member, path)
    except (tarfile.TarError, OSError) as exc:
        raise HandoffError(
            f"{path} is not a task bundle ({exc}): give the file `jupyter delegate handoff "
            "ID -o FILE` wrote."
        ) from None
    for needed in (MANIFEST, JOURNAL):
        if needed not in found:
            raise HandoffError(f"{path} has no {needed}: it is not a whole task bundle.")
    return found


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    name = member.name
    log = name.startswith(CHECKS) and "/" not in name[len(CHECKS) :] and name.endswith(".log")
    known = name in (MANIFEST, JOURNAL, BRANCH, RECORD) or log
    if not member.isfile() or not known or member.size > MEMBER_LIMIT:
        raise HandoffError(
            f"{path} holds {name!r}, which no task bundle holds: it was not written by "
            "`jupyter delegate handoff`, or was changed since. Nothing was received."
        )
    handle = tar.extractfile(member)
    assert handle is not None
    return handle.read()


def receive(
    manager: TaskManager,
    path: str | os.PathLike[str],
    repo: str | os.PathLike[str] = ".",
    review_only: bool = False,
) -> Task:
    """Receive the task in the bundle file `path` into the repository `repo` (see the
    module), and continue it here (a paused, interrupted or transiently failed task runs
    a round, as `resume`), or with `review_only` just restore it. The same task received
    twice is not received again: the task here is returned."""
    from .manager import _try_lock

    source = Path(path).expanduser().resolve()
    members = read_bundle(source)
    try:
        manifest = json.loads(members[MANIFEST])
        task_id = str(manifest["task"])
    except (ValueError, KeyError, TypeError):
        raise HandoffError(
            f"{source}: its manifest cannot be read; it is not a task bundle."
        ) from None
    if not task_id.isalnum():
        raise HandoffError(f"{source}: its manifest names the task {task_id!r}, not a task id.")
    workspace = Workspace(repo)
    with tempfile.TemporaryDirectory(prefix="delegate-receive-") as scratch:
        journal_file = Path(scratch) / JOURNAL
        journal_file.write_bytes(members[JOURNAL])
        facts = _verified(journal_file, task_id, source)
        existing = workspace.task_dir(task_id) / "journal.jsonl"
        if existing.exists():
            return _already_here(manager, workspace, task_id, existing, members[JOURNAL], source)
        head = facts.head_commit or facts.base_commit
        _check_base(workspace, facts, source)
        branch_file = Path(scratch) / BRANCH
        if BRANCH in members:
            branch_file.write_bytes(members[BRANCH])
        _check_branch(workspace, facts, head, branch_file if BRANCH in members else None, source)
        folder = workspace.task_dir(task_id)
        fd = _try_lock(folder)
        if fd is None:
            raise HandoffError(f"Task {task_id}'s folder here is in use by another process.")
        try:
            _place(workspace, facts, head, branch_file if BRANCH in members else None, source)
            existing.write_bytes(members[JOURNAL])
            for name, data in members.items():
                if name.startswith(CHECKS):
                    (folder / "checks").mkdir(exist_ok=True)
                    (folder / name).write_bytes(data)
            task = manager._load(workspace, task_id)
        except BaseException:
            os.close(fd)
            raise
        context = manager._context(task)
        with manager._holding(context, fd):
            manager._record(
                task,
                "handoff",
                {
                    "direction": "in",
                    "file": str(source),
                    "head": head,
                    "source": dict(manifest.get("from") or {}),
                    "target": _here(workspace),
                    "at": _now(),
                },
            )
            if not review_only and task.state != S.REVIEW:
                manager._resume(task, context)
    return task


def _verified(journal_file: Path, task_id: str, source: Path) -> Task:
    """The task the bundle's journal holds, after its chain verified."""
    checked = Journal(journal_file).verify()
    if not checked.ok:
        raise HandoffError(
            f"{source}: the task's journal does not verify: line {checked.line}: "
            f"{checked.problem} (tampered or damaged). Nothing was received; hand it off "
            "again from where it came from."
        )
    events = list(Journal(journal_file).events())
    first = events[0].data if events and events[0].type == "task" else None
    if first is None:
        raise HandoffError(f"{source}: the journal has no task event; it is not a task's.")
    task = Task(id=task_id, outcome=Outcome.from_dict(first["outcome"]), repo=Path("."))
    for event in events:
        task.apply(event.typed)
    if not task.branch.startswith(f"delegate/{task_id}-"):
        raise HandoffError(
            f"{source}: the manifest names task {task_id}, but the journal is of the task on "
            f"{task.branch}. Nothing was received."
        )
    if not task.handed_off:
        raise HandoffError(
            f"{source}: the journal does not end handed off (no handoff event after the "
            "last move): it was not written by `jupyter delegate handoff`."
        )
    return task


def _already_here(
    manager: TaskManager,
    workspace: Workspace,
    task_id: str,
    existing: Path,
    journal: bytes,
    source: Path,
) -> Task:
    """The bundle's task is known here: the same task (its journal here continues the
    bundle's, as after an earlier receive) is returned as it is; another is refused."""
    here = existing.read_bytes()
    if here.startswith(journal):
        return manager.get(task_id, workspace.root)
    raise HandoffError(
        f"A task {task_id} already exists in {workspace.root}, and it is not the task in "
        f"{source} (their journals differ). Nothing was received; receive it into another "
        "clone, or reject and remove the task here first."
    )


def _check_base(workspace: Workspace, facts: Task, source: Path) -> None:
    found = _git(workspace.root, "cat-file", "-e", f"{facts.base_commit}^{{commit}}")
    if found.returncode != 0:
        branch = facts.base_branch or "its base branch"
        raise RepoError(
            f"{source}: the repository at {workspace.root} does not have the task's base "
            f"commit {facts.base_commit[:10]} (of {branch}). Fetch the branch {branch} first "
            f"(`git fetch origin {facts.base_branch or ''}`), then receive it again. "
            "Nothing was received."
        )


def _check_branch(
    workspace: Workspace, facts: Task, head: str, branch_file: Path | None, source: Path
) -> None:
    """The bundle's branch must be where the journal says (its last commit)."""
    if branch_file is None:
        if head != facts.base_commit:
            raise HandoffError(
                f"{source}: the bundle holds no branch, but the journal says the task's "
                f"branch is at {head[:10]}. Nothing was received."
            )
        return
    verified = _git(workspace.root, "bundle", "verify", "--quiet", str(branch_file))
    if verified.returncode != 0:
        raise HandoffError(
            f"{source}: git cannot use the bundle's branch here: {verified.stderr.strip()}. "
            f"Fetch the task's base branch {facts.base_branch or ''} first. Nothing was "
            "received."
        )
    heads = _git(workspace.root, "bundle", "list-heads", str(branch_file)).stdout
    listed: dict[str, str] = {}
    for line in heads.splitlines():
        sha, _, ref = line.partition(" ")
        listed[ref.strip()] = sha
    found = listed.get(f"refs/heads/{facts.branch}")
    if found != head:
        raise HandoffError(
            f"{source}: branch head mismatch: the bundle's branch {facts.branch} is at "
            f"{(found or 'nothing')[:10]}, but the journal's last commit is {head[:10]} "
            "(tampered or damaged). Nothing was received."
        )


def _place(
    workspace: Workspace, facts: Task, head: str, branch_file: Path | None, source: Path
) -> None:
    """The task's branch at `head` (fetched from the bundle) and its worktree."""
    if workspace.has_branch(facts.branch):
        raise HandoffError(
            f"{source}: the repository at {workspace.root} already has a branch "
            f"{facts.branch} but no task {facts.id}: delete or rename that branch first. "
            "Nothing was received."
        )
    path = workspace.worktree_path(facts.id)
    with workspace.locked():
        if branch_file is not None:
            ref = f"refs/delegate/incoming/{facts.id}"
            listed = _git(workspace.root, "bundle", "list-heads", str(branch_file)).stdout
            steps = STEPS_PREFIX + facts.id
            carried = [f"+{steps}:{steps}"] if f" {steps}\n" in listed else []
            fetched = _git(
                workspace.root,
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                str(branch_file),
                f"refs/heads/{facts.branch}:{ref}",
                *carried,
            )
            if fetched.returncode != 0:
                raise HandoffError(
                    f"{source}: git could not read the bundle's branch: "
                    f"{fetched.stderr.strip()}. Nothing was received."
                )
            _git(workspace.root, "update-ref", "-d", ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        made = _git(
            workspace.root, "worktree", "add", "--quiet", "-b", facts.branch, str(path), head
        )
        if made.returncode != 0:
            raise HandoffError(
                f"git could not make task {facts.id}'s worktree at {path}: "
                f"{made.stderr.strip()}. Nothing was received."
            )
    workspace.check_out_submodules(path, head)
