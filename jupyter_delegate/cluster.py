"""Rounds on a Dask cluster: `DaskRunner`, a runner (runner.py) whose rounds run on workers.

`DaskRunner(client_or_address)` is given to `TaskManager(runner=...)` (or
`delegate(..., runner=...)`). When a decision starts a round, `start` takes the task's
lock here (this process is then the one writer of the task's journal on this machine,
through the mirror below) and submits `run_on_worker` with a `Payload`: the repository as a
git bundle (the task's branch when it has one, and its base commit under a temporary
ref), the task's journal as written, the round's description, and the names of two
queues. Nothing secret travels: the model's API key reaches a worker only through the
worker's own environment, as its client is made there (engine/model.py).

On the worker (`run_on_worker`): a scratch clone from the bundle in a folder of the
worker's own (`JUPYTER_DELEGATE_WORKER_DIR`, else the worker's `local_directory`; never
the user's checkout, even on the same machine), the journal written into the clone's task
folder, the task's worktree at the clone's own `Workspace.worktree_path(task_id)` (the path
the journal's first line names is the client's and is not used there), and `run_round` on
it with a TaskManager of the worker's. It journals where it runs first (a `runner` event).
The sandbox is the journal's (the tier decided at submit): a worker where bubblewrap
cannot confine commands refuses to run them (the round fails saying so, as on a machine of
the user's), never runs them unconfined. A thread streams each journal line it appends
home, and appends the control requests sent from home to the clone's inbox, where its
manager serves them. When the round ends it
returns a git bundle of the task's branch (from the tip it started at) and the journal's
head and digest, and removes the clone.

Streaming is a pair of `distributed.Queue`s per round (home <- worker: batches of journal
lines, then an end mark; home -> worker: inbox lines). Measured with
bench/cluster_stream.py on a LocalCluster of processes: a Queue carries a line in about
1 ms, worker events (`log_event` / `subscribe_topic`) in 0.04 ms. Queues are chosen
anyway: a journal line costs an fsync and a step costs a model turn (hundreds of ms), so a
millisecond is not felt, while a Queue keeps what it holds until it is taken (a client
that lags or reconnects loses nothing; events not yet subscribed to are lost), is ordered
and serves both directions with one mechanism; the worker sends a batch per poll, so a
burst of lines is one put. distributed.Pub/Sub is gone from distributed 2026.x.

At home (`_Mirror`, a thread): each line is checked against the chain before it is written
(its `prev` is the mirror's head, its `seq` the next, its hash recomputed with
journal.chain_hash, the line exactly as journal.py writes it) and appended to the task's
journal in the user's repository byte for byte, so the manager's `_follow`, the notebook
and the CLI read a local journal; `_follow` tells the task's subscribers (the notebook's
live view) of each line as the round would have here (task.Retelling). The lines that end
the round (from its first state change to a state that is not active: review, paused,
failed...) are held back until the result is received: the bundle is verified (its branch
is the task's alone, at the commit the mirrored journal's last `commit` event names; every
commit it brings that names a journal head by its `Delegate-Journal` trailer names one
present in the mirror, the tip among them) in a throw-away repository that borrows the
user's objects, then fetched into the user's repository and the task's local worktree is
made or moved on (a fast forward), and only then are those lines written. A line that fails
the chain or a bundle that fails verification is refused: the round on the worker is
cancelled, nothing is fetched, and the task fails here with an error saying what failed.

A worker lost mid-round (killed, its machine gone) is taken over. Each round's payload
names a third queue holding one token, which the first run of the round takes before it
does anything; when the worker running it dies, the scheduler runs the function again
elsewhere, and that rerun, finding no token, returns `Superseded` at once (or the scheduler
gives up with KilledWorker). Either way home takes the lines the dead worker sent before it
died, then submits the round again from the journal as mirrored here (the conversation as
far as journaled: a tool call without a result gets an error result, journal.py) and the
task's branch as last fetched (or the base), naming the lost worker; the new worker
journals its `runner` event with `moved_from` (the review flags it: task.py) and then a
user turn telling the agent that its changes to files since the last commit were lost
with the worker (they were: only commits come home) and to check the files. Work in
progress is not yet committed to a side ref at each step boundary. Measured by hand (a
203-file clone of this project, one file changed per step: read-tree, add -A into a
private index, write-tree, commit-tree, update-ref, bundle of the step's commit): about
40-50 ms and 1 KB per step on a loaded 2-core machine, against a model turn of hundreds
of ms or more; cheap enough, and the better answer (the edits would survive a lost
worker), but not done: it needs the side ref verified and fetched at home like the
result, and the new worker's worktree checked out at it. A worker lost after
the round's commit but before its result came home fails the task (transient; nothing
fetched), since that commit is not here to go on from. A worker that the scheduler gave up
on but that still runs (a partition) is not stopped; what it sends is not read.

The process that submitted may die (a kernel restarted) while the round goes on: the
round's future is published on the scheduler (`publish_dataset`, so it outlives its
client), and the task's folder holds `cluster.json` (the scheduler, the published name,
the queues, the branch and tips the result is verified against) while the round runs.
What the mirror takes from the queue it first appends to `cluster-spool.jsonl` (synced),
so a mirror that dies between taking lines and writing them (or while it holds the lines
that end the round) loses nothing. A task whose journal says it runs, whose lock nobody
holds and whose folder has that note is taken up by the next process that loads it
(`TaskManager.get` -> `reattach`, instead of marking it interrupted): it reads the spool
(the lines not yet in the journal), then the queue, and finishes the round as the first
would have (verify, fetch, release). Both notes are removed when the round ends here.

Not here: running a round (rounds.py, runner.run_round), the chain itself (journal.py).
Not yet: a round that ends paused or failed with edits the harness did not commit leaves them on
the worker (they are not bundled); submodules are not checked out on workers; a task's
runner is known to the process that submitted it, so a round that another process starts
(the CLI's `resume`) runs there, not on the cluster; any process that loads a task whose
mirror died takes it up, a short-lived one too (the CLI's `list`): when it exits, the next
one does (the spool keeps what it took), but loading waits for the scheduler's connect
timeout when the scheduler is gone; control requests posted while no process mirrors the
round are forwarded only if posted after the new one took it up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import control
from .errors import DelegateError
from .journal import GENESIS, canonical, chain_hash
from .runner import Round
from .task import TaskState
from .workspace import Workspace

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)
S = TaskState
BASE_REF = "refs/delegate/cluster/base"  # the base commit, in the bundle sent to a worker
WORKER_DIR_ENV = "JUPYTER_DELEGATE_WORKER_DIR"
ENDS_ROUND = frozenset(s.value for s in S if not s.active)
POLL_S = 0.05
ROUND_FILE = "cluster.json"  # in the task's folder while a round runs on the cluster
SPOOL_FILE = "cluster-spool.jsonl"  # what the mirror took from the queue, kept on disk
MAX_TAKEOVERS = 3  # a round lost with more workers than this fails


class ClusterError(DelegateError):
    """A round on the cluster could not be started or was refused: the message names what
    failed and what to do."""


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            "Running tasks on a Dask cluster needs Dask's distributed scheduler, which is "
            "not installed. Install it with `pip install 'jupyter-delegate[dask]'` (or "
            "`pip install 'dask[distributed]'`), then try again."
        ) from None
    return distributed


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _git(cwd: Path, *args: str) -> str:
    """The harness's pinned git (handoff._git); raises ClusterError when it fails."""
    from .handoff import _git as pinned

    done = pinned(cwd, *args)
    if done.returncode != 0:
        raise ClusterError(f"git {' '.join(args[:2])} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout


# -- what travels ------------------------------------------------------------------------
@dataclass(frozen=True)
class Payload:
    """What a worker gets for a round: plain data, no secret."""

    work: Round
    branch: str
    base_commit: str
    base_branch: str | None
    tip: str  # the branch's head at the start of the round (the base commit when none)
    has_branch: bool
    bundle: bytes  # the branch (if any) and the base commit under BASE_REF, whole history
    journal: bytes
    outbox: str  # queue: worker -> home
    inbox: str  # queue: home -> worker
    claim: str = ""  # queue holding one token: the first run of the round takes it
    moved_from: str = ""  # the worker this round was lost on, when it is taken over
    note: str = ""  # what the agent is told then (runner.run_round)
    keep: bool = False  # leave the worker's folder (tests, debugging)
    where: Mapping[str, Any] = field(default_factory=dict)  # extra for the `runner` event


@dataclass(frozen=True)
class Result:
    """What a worker returns when the round ends."""

    state: str
    worker: str
    host: str
    folder: str  # the worker's scratch clone
    worktree: str  # the task's worktree there
    journal_head: str
    journal_sha256: str
    has_branch: bool
    tip: str
    bundle: bytes | None  # the branch from the payload's tip to `tip`; None when unchanged


@dataclass(frozen=True)
class Superseded:
    """What a run of a round returns when it finds the round's claim taken: the scheduler
    ran it again because the worker that first took it died (home takes the round over)."""

    worker: str


# -- on the worker -----------------------------------------------------------------------
def worker_folder(task_id: str) -> Path:
    """Where a round of `task_id` lives on this worker: a new folder under
    `JUPYTER_DELEGATE_WORKER_DIR` or the Dask worker's local directory."""
    root = os.environ.get(WORKER_DIR_ENV)
    if not root:
        from distributed import get_worker

        root = str(Path(get_worker().local_directory) / "jupyter-delegate")
    folder = Path(root) / f"{task_id}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    return folder


def clone_for_round(payload: Payload, folder: Path) -> Workspace:
    """A clone of the user's repository as the payload carries it, with the task's journal
    and (when it has a branch) its worktree at this clone's own worktree path."""
    task_id = payload.work.task_id
    bundle = folder / "in.bundle"
    bundle.write_bytes(payload.bundle)
    root = folder / "repo"
    root.mkdir()
    _git(root, "init", "--quiet")
    _git(root, "fetch", "--quiet", "--no-tags", str(bundle), "+refs/*:refs/*")
    bundle.unlink()
    if payload.base_branch and payload.base_branch != payload.branch:
        _git(root, "checkout", "--quiet", "-B", payload.base_branch, payload.base_commit)
    else:
        _git(root, "checkout", "--quiet", "--detach", payload.base_commit)
    workspace = Workspace(root)
    journal = workspace.task_dir(task_id) / "journal.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_bytes(payload.journal)
    if payload.has_branch:
        path = workspace.worktree_path(task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(root, "worktree", "add", "--quiet", str(path), payload.branch)
    return workspace


def run_on_worker(payload: Payload) -> Result | Superseded:
    """Run the payload's round on this Dask worker (see the module)."""
    from .manager import TaskManager
    from .runner import run_round

    distributed = _distributed()
    worker = distributed.get_worker()
    if payload.claim and not distributed.Queue(payload.claim).get(batch=True):
        return Superseded(str(worker.address))  # a rerun after the first one's worker died
    task_id = payload.work.task_id
    folder = worker_folder(task_id)
    try:
        workspace = clone_for_round(payload, folder)
        task_dir = workspace.task_dir(task_id)
        outbox, inbox = distributed.Queue(payload.outbox), distributed.Queue(payload.inbox)
        stop = threading.Event()
        stream = threading.Thread(
            target=_stream,
            args=(task_dir, len(payload.journal), outbox, inbox, stop),
            name=f"jupyter-delegate-stream-{task_id}",
            daemon=True,
        )
        stream.start()
        where = {
            "runner": "dask",
            "worker": str(worker.address),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "folder": str(folder),
            "at": _now(),
            **payload.where,
        }
        if payload.moved_from:
            where["moved_from"] = payload.moved_from
        work = Round(str(workspace.root), task_id, payload.work.why)
        manager = TaskManager(via="runner")
        try:
            state = run_round(work, manager, where, payload.note)
            task = manager.get(task_id, workspace.root)
            assert task.worktree == workspace.worktree_path(task_id)  # this clone's, not home's
        finally:
            stop.set()
            stream.join()
        journal = (task_dir / "journal.jsonl").read_bytes()
        has_branch = workspace.has_branch(payload.branch)
        tip = payload.tip
        bundle: bytes | None = None
        if has_branch:
            tip = _git(workspace.root, "rev-parse", f"refs/heads/{payload.branch}").strip()
        if has_branch and tip != payload.tip:
            out = folder / "out.bundle"
            _git(
                workspace.root,
                "bundle",
                "create",
                "--quiet",
                str(out),
                f"refs/heads/{payload.branch}",
                f"^{payload.tip}",
            )
            bundle = out.read_bytes()
        outbox.put({"end": True})
        return Result(
            state=str(state),
            worker=str(worker.address),
            host=socket.gethostname(),
            folder=str(folder),
            worktree=str(workspace.worktree_path(task_id)),
            journal_head=_last_hash(journal),
            journal_sha256=hashlib.sha256(journal).hexdigest(),
            has_branch=has_branch,
            tip=tip,
            bundle=bundle,
        )
    finally:
        if not payload.keep:
            shutil.rmtree(folder, ignore_errors=True)


def _stream(task_dir: Path, offset: int, outbox: Any, inbox: Any, stop: threading.Event) -> None:
    """Send each whole journal line appended after `offset` home, a batch per poll, and
    append the control requests home sends to the clone's inbox; until `stop`, then the
    rest."""
    journal = task_dir / "journal.jsonl"
    while True:
        stopping = stop.is_set()
        with journal.open("rb") as handle:
            handle.seek(offset)
            tail = handle.read()
        whole = tail[: tail.rfind(b"\n") + 1]
        if whole:
            outbox.put({"lines": [line.decode() for line in whole.splitlines(keepends=True)]})
            offset += len(whole)
        for line in inbox.get(batch=True):
            fd = os.open(task_dir / control.INBOX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        if stopping:
            return
        stop.wait(POLL_S)


# -- at home -------------------------------------------------------------------------------
class DaskRunner:
    """Rounds on a Dask cluster (see the module). `client_or_address`: a
    `distributed.Client`, or the scheduler's address ("tcp://host:8786") to connect to.
    `keep_worker_folders`: leave each round's clone on its worker (for a look at it)."""

    in_process = False

    def __init__(self, client_or_address: Client | str, *, keep_worker_folders: bool = False):
        distributed = _distributed()
        self._own_client = isinstance(client_or_address, str)
        if isinstance(client_or_address, str):
            self.client = distributed.Client(client_or_address)
        else:
            self.client = client_or_address
        self.keep = keep_worker_folders
        # The rounds run so far, by task id: each one's Result (or None when refused).
        self.results: dict[str, list[Result | None]] = {}
        self._mirrors: list[_Mirror] = []

    def close(self) -> None:
        """Close the client this runner connected itself (not one it was given), and forget
        it as the runner of its cluster."""
        with _runners_lock:
            for key in [k for k, v in _runners.items() if v is self]:
                del _runners[key]
        if self._own_client:
            self.client.close()

    def start(self, work: Round) -> None:
        from .manager import _try_lock

        workspace = Workspace(work.repo)
        fd = _try_lock(workspace.task_dir(work.task_id))
        if fd is None:
            raise ClusterError(
                f"Task {work.task_id} is being worked on by another process; its round was "
                "not sent to the cluster."
            )
        mirror = _Mirror(self, workspace, work, fd)
        self._mirrors.append(mirror)
        mirror.start()

    def payload(
        self, workspace: Workspace, work: Round, moved_from: str = "", note: str = ""
    ) -> Payload:
        """The round as a worker gets it (see `Payload`), from the journal and the task's
        branch here."""
        folder = workspace.task_dir(work.task_id)
        journal = (folder / "journal.jsonl").read_bytes()
        first = json.loads(journal.split(b"\n", 1)[0])["data"]
        branch, base = str(first["branch"]), str(first["base_commit"])
        has_branch = workspace.has_branch(branch)
        root = workspace.root
        tip = _git(root, "rev-parse", f"refs/heads/{branch}").strip() if has_branch else base
        token = secrets.token_hex(4)
        ref = f"{BASE_REF}/{work.task_id}-{token}"
        with tempfile.TemporaryDirectory(prefix="delegate-cluster-") as scratch:
            bundle = Path(scratch) / "round.bundle"
            _git(root, "update-ref", ref, base)
            try:
                refs = [f"refs/heads/{branch}"] if has_branch else []
                _git(root, "bundle", "create", "--quiet", str(bundle), *refs, ref)
            finally:
                _git(root, "update-ref", "-d", ref)
            data = bundle.read_bytes()
        name = f"jupyter-delegate-{work.task_id}-{token}"
        return Payload(
            work=work,
            branch=branch,
            base_commit=base,
            base_branch=first.get("base_branch"),
            tip=tip,
            has_branch=has_branch,
            bundle=data,
            journal=journal,
            outbox=f"{name}-out",
            inbox=f"{name}-in",
            claim=f"{name}-claim",
            moved_from=moved_from,
            note=note,
            keep=self.keep,
        )

    def submit(self, payload: Payload) -> Any:
        _distributed().Queue(payload.claim, client=self.client).put(True)
        return self.client.submit(run_on_worker, payload, pure=False, **placement(payload))

    def check_resources(self, resources: Mapping[str, Any]) -> None:
        """Refuse `resources` (resources.py) when no worker of the cluster declares them
        all (a round asking for them would wait for ever)."""
        check_resources(self.client, resources)

    # Seams for tests that play the network between worker and home.
    def received(self, line: str) -> str:
        """A journal line as it arrives from the worker."""
        return line

    def returned(self, result: Result) -> Result:
        """A round's result as it arrives from the worker."""
        return result


def placement(payload: Payload) -> dict[str, Any]:
    """The keyword arguments of `Client.submit` that place a round: the task's declared
    resources (its journal's first line, resources.py) as Dask worker resources."""
    first = json.loads(payload.journal.split(b"\n", 1)[0])["data"]
    resources = first.get("resources") or {}
    return {"resources": dict(resources)} if resources else {}


def check_resources(client: Any, resources: Mapping[str, Any]) -> None:
    """Refuse `resources` when no worker of `client`'s cluster declares them all."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    offered = [dict(w.get("resources") or {}) for w in workers.values()]
    if any(all(o.get(k, 0) >= v for k, v in resources.items()) for o in offered):
        return
    from .resources import text

    seen = sorted(
        {", ".join(f"{k}={v:g}" for k, v in sorted(o.items())) or "none" for o in offered}
    )
    raise ClusterError(
        f"No worker of the cluster declares {text(dict(resources))} "
        f"({', '.join(f'{k}={v:g}' for k, v in resources.items())}); its "
        f"{len(offered)} worker(s) declare: {'; '.join(seen) or 'no workers'}. Start "
        'workers with `dask worker SCHEDULER --resources "cpus=N memory=BYTES"`, or ask '
        "for less."
    )


_runners: dict[str, DaskRunner] = {}
_runners_lock = threading.Lock()


def runner_for(given: Any) -> Any:
    """The runner `given` names: a Runner as it is; a `distributed.Client` or a scheduler
    address, the DaskRunner of that cluster (one per cluster in this process); None, the
    `[cluster] address` of the user's config when set, else None (the manager's own)."""
    if given is None:
        given = cluster_address()
        if given is None:
            return None
    if hasattr(given, "start") and hasattr(given, "in_process"):
        return given
    if isinstance(given, str):
        key = given.strip()
        if not key:
            raise ClusterError("The cluster address is empty: give tcp://HOST:PORT.")
    else:
        distributed = _distributed()
        if not isinstance(given, distributed.Client):
            raise ClusterError(
                f"runner= takes a Runner, a distributed.Client or a scheduler address "
                f"(tcp://HOST:PORT), not {type(given).__name__}."
            )
        key = f"client:{id(given)}"
    with _runners_lock:
        known = _runners.get(key)
        if known is None:
            try:
                known = _runners[key] = DaskRunner(given)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(
                    f"Could not connect to the Dask scheduler at {given}: {exc}. Start it "
                    "(`dask scheduler`) or give the address it prints."
                ) from None
        return known


def cluster_address() -> str | None:
    """`[cluster] address` of the user's config.toml, when set."""
    from .home import user_dir
    from .policy import config_table, read_toml

    path = user_dir() / "config.toml"
    table = config_table(read_toml(path), "cluster", ("address",), str(path), ClusterError)
    address = table.get("address")
    if address is not None and not isinstance(address, str):
        raise ClusterError(f"{path}: [cluster] address must be a string (tcp://HOST:PORT).")
    return address or None


def reattach(workspace: Workspace, task_id: str) -> DaskRunner | None:
    """Take up, in this process, the mirror of a round on the cluster that another process
    started and no longer mirrors (it died: a kernel restarted); the runner it is on, or
    None when there is no such round (no note of one, its lock held, the scheduler or the
    round gone). What the dead process had taken from the queue but not written is lost:
    the mirror then refuses the next line, and the task fails saying so."""
    from .manager import _try_lock

    folder = workspace.task_dir(task_id)
    try:
        known = json.loads((folder / ROUND_FILE).read_text())
    except (OSError, ValueError):
        return None
    fd = _try_lock(folder)
    if fd is None:
        return None
    try:
        runner: DaskRunner = runner_for(str(known["scheduler"]))
        future = runner.client.get_dataset(str(known["dataset"]))
        payload = Payload(
            work=Round(str(workspace.root), task_id, "reattached"),
            branch=str(known["branch"]),
            base_commit=str(known["base_commit"]),
            base_branch=known.get("base_branch"),
            tip=str(known["tip"]),
            has_branch=bool(known["has_branch"]),
            bundle=b"",
            journal=(folder / "journal.jsonl").read_bytes(),
            outbox=str(known["outbox"]),
            inbox=str(known["inbox"]),
            claim=str(known["claim"]),
        )
    except Exception as exc:  # no scheduler there, the round forgotten, a bad note
        log.warning("task %s: the round on the cluster cannot be taken up: %r", task_id, exc)
        os.close(fd)
        return None
    mirror = _Mirror(runner, workspace, payload.work, fd, attach=(payload, future))
    runner._mirrors.append(mirror)
    mirror.start()
    return runner


class Refused(ClusterError):
    """What came back from the worker failed verification."""


class _Mirror(threading.Thread):
    """One round at home: submit it, mirror its journal, forward the inbox, receive the
    result (see the module). Holds the task's lock here until the round ends."""

    def __init__(
        self,
        runner: DaskRunner,
        workspace: Workspace,
        work: Round,
        fd: int,
        attach: tuple[Payload, Any] | None = None,
    ) -> None:
        super().__init__(name=f"jupyter-delegate-mirror-{work.task_id}", daemon=True)
        self.runner, self.workspace, self.work, self.fd = runner, workspace, work, fd
        self.attach = attach  # a round another process started: its payload and future
        self.folder = workspace.task_dir(work.task_id)
        self.journal = self.folder / "journal.jsonl"
        self.held: list[str] = []  # the lines that end the round, written once verified
        self.hashes: set[str] = set()
        self.last_commit: str | None = None
        self.state = ""
        self.inbox_name = ""
        self.worker = ""  # the worker the last mirrored `runner` event names
        self.inbox_offset = 0

    def run(self) -> None:
        results = self.runner.results.setdefault(self.work.task_id, [])
        future = None
        try:
            if self.attach is None:
                payload = self.runner.payload(self.workspace, self.work)
            else:
                payload, future = self.attach
            self.inbox_offset = _size(self.folder / control.INBOX)
            for _ in range(MAX_TAKEOVERS + 1):
                self._chain_from(payload.journal)
                self.inbox_name = payload.inbox
                if future is None:
                    future = self._submit(payload)
                lost = self._mirror(payload, future)
                if lost is None:
                    break
                payload, future = self._take_over(payload, lost), None
            else:
                raise ClusterError(f"the round was lost with {MAX_TAKEOVERS + 1} workers")
            result = self.runner.returned(future.result())
            self._receive(payload, result)
            results.append(result)
        except BaseException as exc:
            results.append(None)
            if future is not None:
                self._stop_worker(future)
            self._fail(exc)
        finally:
            self._forget(future)
            os.close(self.fd)

    def _submit(self, payload: Payload) -> Any:
        """Submit the round, published on the scheduler so that it outlives this process,
        and note in the task's folder what another process needs to take the mirror up."""
        future = self.runner.submit(payload)
        name = payload.claim.removesuffix("-claim")
        self.runner.client.publish_dataset(future, name=name, override=True)
        known = {
            "scheduler": str(self.runner.client.scheduler.address),
            "dataset": name,
            "branch": payload.branch,
            "base_commit": payload.base_commit,
            "base_branch": payload.base_branch,
            "tip": payload.tip,
            "has_branch": payload.has_branch,
            "outbox": payload.outbox,
            "inbox": payload.inbox,
            "claim": payload.claim,
        }
        with contextlib.suppress(OSError):
            (self.folder / SPOOL_FILE).unlink()  # a lost round's: all of it was taken
        path = self.folder / ROUND_FILE
        path.with_suffix(".tmp").write_text(json.dumps(known, indent=1) + "\n")
        path.with_suffix(".tmp").replace(path)
        return future

    def _forget(self, future: Any) -> None:
        """The round is over here: no one needs to take it up."""
        for name in (ROUND_FILE, SPOOL_FILE):
            with contextlib.suppress(OSError):
                (self.folder / name).unlink()
        if future is not None:
            with contextlib.suppress(Exception):
                for name in self.runner.client.list_datasets():
                    if name.startswith(f"jupyter-delegate-{self.work.task_id}-"):
                        self.runner.client.unpublish_dataset(name)

    def _mirror(self, payload: Payload, future: Any) -> str | None:
        """Mirror the round's stream until its end mark; or, when the worker running it
        is lost, the lines it sent before it died, and say which worker that was."""
        distributed = _distributed()
        outbox = distributed.Queue(payload.outbox, client=self.runner.client)
        inbox = distributed.Queue(payload.inbox, client=self.runner.client)
        ended = False
        spooled = self._spooled() if self.attach is not None else []
        while not ended:
            self.inbox_offset = self._forward(inbox, self.inbox_offset)
            done = future.done()
            taken = outbox.get(batch=True)  # what is there, at once (no timeout error)
            self._spool(taken)
            messages = [(m, True) for m in spooled] + [(m, False) for m in taken]
            spooled = []
            for message, before in messages:
                ended = ended or bool(message.get("end"))
                for line in message.get("lines", ()):
                    if not before or _seq(line) > self.seq:  # a spool's: maybe written
                        self._take(self.runner.received(line))
            if ended:
                return None
            if done:  # over, and all it sent before it ended has been taken: no end mark
                if self._worker_died(future):
                    return self.worker or "a worker lost before it journaled"
                raise self._lost(future)
            if not taken:
                time.sleep(POLL_S)
        return None

    def _spool(self, messages: list[Any]) -> None:
        """Keep what was taken from the queue on disk (synced) before acting on it: a
        process that dies now loses nothing, as the one that takes the round up reads it
        (the lines held back, what was taken but not yet written)."""
        if not messages:
            return
        fd = os.open(self.folder / SPOOL_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, "".join(json.dumps(m) + "\n" for m in messages).encode())
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def _spooled(self) -> list[Any]:
        try:
            text = (self.folder / SPOOL_FILE).read_text()
        except OSError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def _worker_died(self, future: Any) -> bool:
        """Whether the round ended without a result because its worker died: the
        scheduler's rerun found the claim taken, or it gave up (KilledWorker)."""
        if future.status == "finished":
            return isinstance(future.result(), Superseded)
        if future.status == "error":
            with contextlib.suppress(Exception):
                return isinstance(future.exception(timeout=5), _distributed().KilledWorker)
        return False

    def _take_over(self, payload: Payload, lost: str) -> Payload:
        """The round again, for another worker: from the journal as mirrored here and the
        task's branch as last fetched; the agent told what was lost."""
        if self.held or self.last_commit not in (None, payload.tip):
            commit = (self.last_commit or "")[:10]
            raise ClusterError(
                f"the worker running it ({lost}) was lost after it committed the round's work "
                f"({commit}), which never came home; `resume` runs the round again from the "
                "last commit here"
            )
        log.warning("task %s: worker %s lost mid-round; taking it over", self.work.task_id, lost)
        at = f"commit {payload.tip[:10]}"
        if payload.tip == payload.base_commit:
            at += " (the task's base: nothing of it was committed yet)"
        note = (
            f"[harness] The machine running this task (Dask worker {lost}) was lost in the "
            "middle of this round, and the round goes on from the journal on another one. "
            f"Your changes to files since the last commit were lost with it: the files are "
            f"as of {at}. The tool results above say what was done on the lost machine, not "
            "what the files hold now: check them and redo what is still needed."
        )
        return self.runner.payload(self.workspace, self.work, moved_from=lost, note=note)

    # -- the journal ---------------------------------------------------------------------
    def _chain_from(self, journal: bytes) -> None:
        self.head, self.seq = GENESIS, 0
        for line in journal.splitlines():
            raw = json.loads(line)
            self.head, self.seq = raw["hash"], raw["seq"]
            self.hashes.add(self.head)
        self.size = len(journal)

    def _take(self, line: str) -> None:
        """Check `line` against the chain; write it, or hold it when it ends the round."""
        try:
            raw = json.loads(line)
            body = {k: raw[k] for k in ("seq", "ts", "type", "data", "prev")}
            claimed = raw["hash"]
        except (ValueError, KeyError, TypeError):
            raise Refused(f"line {self.seq + 1} from the worker is not a journal event") from None
        if raw["seq"] != self.seq + 1 or raw["prev"] != self.head:
            raise Refused(f"line {self.seq + 1} from the worker does not link to the mirror's")
        if chain_hash(self.head, body) != claimed:
            raise Refused(f"line {self.seq + 1} from the worker does not match its hash")
        if canonical({**body, "hash": claimed}) + "\n" != line:
            raise Refused(f"line {self.seq + 1} from the worker is not as a journal writes it")
        self.head, self.seq = claimed, raw["seq"]
        self.hashes.add(claimed)
        if raw["type"] == "commit":
            self.last_commit = str(raw["data"].get("commit"))
        if raw["type"] == "state":
            self.state = str(raw["data"].get("state"))
        if raw["type"] == "runner":
            self.worker = str(raw["data"].get("worker") or "")
        if self.held or (raw["type"] == "state" and self.state in ENDS_ROUND):
            self.held.append(line)
        else:
            self._write(line)

    def _write(self, *lines: str) -> None:
        """Append verified lines to the journal here, synced, then witness those a human
        acts upon (audit.py), as the harness does for the lines it writes itself."""
        from .audit import STEP_TYPES, witness
        from .journal import Event

        data = "".join(lines).encode()
        if not data:
            return
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND)
        try:
            if os.fstat(fd).st_size != self.size:
                raise Refused(f"{self.journal} was written by another process meanwhile")
            os.write(fd, data)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self.size += len(data)
        for line in lines:
            event = Event(**json.loads(line))
            if event.type not in STEP_TYPES:
                witness(self.workspace.state_dir, self.work.task_id, event)

    def _forward(self, inbox: Any, offset: int) -> int:
        """Send the inbox's new whole lines to the worker."""
        path = self.folder / control.INBOX
        if _size(path) <= offset:
            return offset
        with path.open("rb") as handle:
            handle.seek(offset)
            tail = handle.read()
        whole = tail[: tail.rfind(b"\n") + 1]
        for line in whole.decode().splitlines(keepends=True):
            inbox.put(line)
        return offset + len(whole)

    # -- the result ----------------------------------------------------------------------
    def _receive(self, payload: Payload, result: Result) -> None:
        """Verify the result against the mirror; fetch the branch, make or move the
        worktree, then write the held lines."""
        written = self.journal.read_bytes() + "".join(self.held).encode()
        if result.journal_head != self.head:
            raise Refused(
                f"the worker's journal ends at {result.journal_head[:12]}, the mirror at "
                f"{self.head[:12]}"
            )
        if hashlib.sha256(written).hexdigest() != result.journal_sha256:
            raise Refused("the worker's journal and the mirror differ")
        expected = self.last_commit or payload.tip
        if result.tip != expected:
            raise Refused(
                f"the worker's branch is at {result.tip[:10]}, but the journal's last commit "
                f"is {expected[:10]}"
            )
        if result.bundle is not None:
            self._verify_bundle(payload, result)
        elif result.tip != payload.tip:
            raise Refused("the worker's branch moved, but it sent no bundle of it")
        if result.has_branch:
            self._place(payload, result)
        self._write(*self.held)

    def _verify_bundle(self, payload: Payload, result: Result) -> None:
        assert result.bundle is not None
        with tempfile.TemporaryDirectory(prefix="delegate-verify-") as scratch:
            bundle = Path(scratch) / "result.bundle"
            bundle.write_bytes(result.bundle)
            check = Path(scratch) / "check.git"
            _git(Path(scratch), "init", "--quiet", "--bare", str(check))
            objects = Path(self.workspace.common_dir) / "objects"
            (check / "objects" / "info" / "alternates").write_text(f"{objects}\n")
            try:
                heads = _git(check, "bundle", "list-heads", str(bundle))
                listed: dict[str, str] = {}
                for line in heads.splitlines():
                    sha, _, ref = line.partition(" ")
                    listed[ref.strip()] = sha
                if listed != {f"refs/heads/{payload.branch}": result.tip}:
                    raise Refused(
                        f"the bundle holds {sorted(listed) or 'nothing'}, not the task's "
                        f"branch at {result.tip[:10]}"
                    )
                _git(check, "fetch", "--quiet", "--no-tags", str(bundle), "+refs/*:refs/*")
                log_ = _git(
                    check,
                    "log",
                    "--format=%H %(trailers:key=Delegate-Journal,valueonly,separator=%x2C)",
                    result.tip,
                    f"^{payload.tip}",
                )
            except ClusterError as exc:
                raise Refused(f"the bundle cannot be read: {exc}") from None
        named: dict[str, list[str]] = {}
        for line in log_.splitlines():
            sha, _, trailer = line.partition(" ")
            named[sha] = [h.strip() for h in trailer.split(",") if h.strip()]
        if not named.get(result.tip):
            raise Refused(f"the branch's tip {result.tip[:10]} names no journal head")
        for sha, given in named.items():
            unknown = [h for h in given if h not in self.hashes]
            if unknown:
                raise Refused(
                    f"commit {sha[:10]} names journal head {unknown[0][:12]}, which the "
                    "mirrored journal does not hold"
                )

    def _place(self, payload: Payload, result: Result) -> None:
        """The task's branch at the result's tip here, and its worktree."""
        root = self.workspace.root
        branch, tip = payload.branch, result.tip
        path = self.workspace.worktree_path(self.work.task_id)
        incoming = f"refs/delegate/incoming/{self.work.task_id}"
        with self.workspace.locked():
            if result.bundle is not None:
                with tempfile.TemporaryDirectory(prefix="delegate-fetch-") as scratch:
                    bundle = Path(scratch) / "result.bundle"
                    bundle.write_bytes(result.bundle)
                    _git(
                        root,
                        "fetch",
                        "--quiet",
                        "--no-tags",
                        "--no-write-fetch-head",
                        str(bundle),
                        f"+refs/heads/{branch}:{incoming}",
                    )
            try:
                if not self.workspace.has_branch(branch):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _git(root, "worktree", "add", "--quiet", "-b", branch, str(path), tip)
                elif path.exists():
                    _git(path, "merge", "--quiet", "--ff-only", tip)
                else:
                    _git(root, "update-ref", f"refs/heads/{branch}", tip, payload.tip)
                    _git(root, "worktree", "add", "--quiet", str(path), branch)
            finally:
                if result.bundle is not None:
                    _git(root, "update-ref", "-d", incoming)

    # -- failures ------------------------------------------------------------------------
    def _lost(self, future: Any) -> ClusterError:
        try:
            error = repr(future.exception(timeout=5))
        except BaseException as exc:  # cancelled, lost: what was raised says so
            error = repr(exc)
        return ClusterError(f"the round on the cluster ended without a result: {error}")

    def _stop_worker(self, future: Any) -> None:
        """Cancel the round on the worker (its result will not be used)."""
        with contextlib.suppress(Exception):
            by = control.requester("cluster")
            request = {"action": "cancel", "args": {}, "by": by, "posted": time.time()}
            request["request_id"] = secrets.token_hex(4)
            inbox = _distributed().Queue(self.inbox_name, client=self.runner.client)
            inbox.put(json.dumps(request, sort_keys=True) + "\n")
        with contextlib.suppress(Exception):
            future.cancel()

    def _fail(self, exc: BaseException) -> None:
        """The task fails here, with what failed; the held lines are dropped."""
        from .audit import witness
        from .journal import Journal

        refused = isinstance(exc, Refused)
        what = "refused what the worker sent" if refused else "could not run the round"
        error = (
            f"The cluster runner {what}: {exc}. Nothing was fetched into {self.workspace.root}; "
            "the journal here holds what was verified."
        )
        log.warning("task %s: %s", self.work.task_id, error)
        with contextlib.suppress(Exception):
            journal = Journal(self.journal)
            data: dict[str, Any] = {"state": "failed", "reason": "the task failed", "error": error}
            if not refused:
                data["transient"] = True
            witness(self.workspace.state_dir, self.work.task_id, journal.append("state", data))
            journal.close()


def _last_hash(journal: bytes) -> str:
    lines = journal.splitlines()
    return str(json.loads(lines[-1])["hash"]) if lines else GENESIS


def _seq(line: str) -> int:
    """A streamed line's `seq` (the chain check is `_take`'s; a line it cannot read
    counts as new, so that `_take` refuses it)."""
    try:
        return int(json.loads(line)["seq"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
