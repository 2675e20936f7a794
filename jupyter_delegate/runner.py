"""Where a round of a task's work runs: the `Runner` seam.

A decision that starts work (submit, request changes, resume) describes the round as a
`Round`: the repository and the task's id, plain data that pickles, because everything
else a round needs is in the task's journal. A runner carries it out: it holds the
task's lock for the round, runs it (rounds.py), writes through the journal, and serves
the task's control inbox meanwhile (control.py), so answers, pauses and cancels reach it
from any process.

- `EngineRunner` (the default) runs rounds on this process's engine thread, the
  manager's; the decision that starts a round holds the lock and hands it over.
- Anything else (`in_process = False`) gets the round after the decision let the lock
  go, and runs it wherever it likes by calling `run_round` there: another process, a
  Dask worker. The manager that decided follows the journal until the round ends.
- `ProcessRunner` (`runner="process"`) runs rounds in one worker process of this
  machine, kept warm, over the same repository and journal: the kernel keeps only the
  views and the decisions, so the agents' work (the SDK's streams, the tools, git) takes
  no turn of the kernel's interpreter lock from the user's cells. The worker streams each
  round's words and its journal's news back over a socket, so the views follow as closely
  as in-process (`serve` is the worker; the notebook runs rounds there by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .manager import Context, TaskManager
    from .task import Task, TaskEvent, TaskState


@dataclass(frozen=True)
class Round:
    """One round of a task's work, as any process can carry it out."""

    repo: str  # the user's checkout
    task_id: str
    why: str = ""  # "submitted", "changes requested", "resumed"


class Runner(Protocol):
    """Carries out rounds. `in_process`: the round runs in this process, under the lock
    the decision took; otherwise the runner's process takes the lock (`run_round`)."""

    in_process: bool

    def start(self, work: Round) -> None: ...


class EngineRunner:
    """Rounds on the manager's engine thread, in this process. Rounds started less than
    `gather_s` apart (a loop of submits: one every 2 ms or so) begin together when the
    burst pauses, at most `gather_at_most_s` after its first: a round that began at once
    would take the cores (its worktree's git, its sandbox, the SDK) from the caller's next
    submits. Measured: 64 submits in 0.1-0.3 s, against 0.7-1.1 s with each round begun
    at its submit, and the same wall to the last review (bench/submit.py). As Dask's
    client batches what it sends its scheduler every 2 ms."""

    in_process = True
    gather_s = 0.005
    gather_at_most_s = 0.25

    def __init__(self, manager: TaskManager) -> None:
        self._manager = manager
        self._lock = threading.Lock()
        self._gathered: list[Round] = []  # started, not yet begun on the engine
        self._first = self._last = 0.0  # when the burst's first and last were started

    def start(self, work: Round) -> None:
        with self._lock:
            self._last = time.monotonic()
            self._gathered.append(work)
            if len(self._gathered) > 1:
                return  # the burst's first start has its rounds begun
            self._first = self._last
        first_look = min(self.gather_s, self.gather_at_most_s)
        try:
            loop = self._manager._engine()
            loop.call_soon_threadsafe(loop.call_later, first_look, self._begin_gathered)
        except BaseException:  # no engine to begin it: said to the caller, nothing left
            with self._lock:
                self._gathered.remove(work)
            raise

    def _begin_gathered(self) -> None:
        """On the engine: begin the rounds gathered, once the burst paused (or went on
        for `gather_at_most_s`); otherwise look again when it might have."""
        with self._lock:
            wait = (
                min(self._last + self.gather_s, self._first + self.gather_at_most_s)
                - time.monotonic()
            )
            if wait <= 0:
                gathered, self._gathered = self._gathered, []
        if wait > 0:
            asyncio.get_running_loop().call_later(wait, self._begin_gathered)
            return
        for work in gathered:
            try:
                self._manager._launch(work)
            except Exception as exc:  # that task fails; the burst's other rounds begin
                log.exception("task %s's round could not begin", work.task_id)
                with contextlib.suppress(Exception):
                    self._manager._not_begun(work, f"its round could not begin: {exc}")


def run_round(
    work: Round,
    manager: TaskManager | None = None,
    where: Mapping[str, Any] | None = None,
    note: str = "",
    on_event: Callable[[TaskEvent], None] | None = None,
) -> TaskState:
    """Carry out `work` here: take the task's lock, run the round on this process's
    engine, and return the state it ended in (review, failed, paused, cancelled, ...).
    What a runner in another process or on another machine calls. `where`: the data of a
    `runner` event (events.RanOn) to journal first, under the lock: where the round runs.
    `note`: what the harness tells the agent then, as a user turn (a round taken over from
    a lost worker: what was lost with it). `on_event`: hears the task's events meanwhile."""
    from .manager import TaskManager

    manager = manager or TaskManager(via="runner")
    task = manager.claim(work)
    unsubscribe = task.subscribe(on_event) if on_event is not None else None
    try:
        try:
            if where is not None:
                manager._record(task, "runner", where)
            if note:
                manager._record(task, "user", {"content": [{"type": "text", "text": note}]})
            manager._launch(work)
        except BaseException:  # not begun: the lock goes, for home to settle the task
            manager._let_go(task)
            raise
        return manager.until_round_ends(task)
    finally:
        if unsubscribe is not None:  # a warm worker keeps the task for its next round
            unsubscribe()


log = logging.getLogger(__name__)

# Where rounds run, by name: `runner=` of submit and delegate, `[notebook] runner`.
NAMED = ("process", "kernel")


def notebook_runner() -> str:
    """Where a notebook's rounds run: `[notebook] runner` of the user's config.toml,
    "process" (a worker process: the default) or "kernel" (the kernel's own engine)."""
    from .errors import UsageError
    from .home import user_dir
    from .policy import config_table, read_toml

    path = user_dir() / "config.toml"
    table = config_table(read_toml(path), "notebook", ("runner",), str(path), UsageError)
    named = table.get("runner", "process")
    if named not in NAMED:
        raise UsageError(
            f'{path}: [notebook] runner must be "process" (rounds in a worker process, the '
            f'default) or "kernel" (in the kernel itself), not {named!r}.'
        )
    return str(named)


# -- rounds in a worker process of this machine --------------------------------------------
# What a worker streams back as it is (the journal never holds it); every other event of
# the round only says the journal grew, and the kernel reads the journal.
STREAMED = frozenset({"text", "thinking", "tool_output"})
# The worker's program: `serve` on the socket whose descriptor is its argument.
WORKER = "import sys; from jupyter_delegate.runner import serve; serve(int(sys.argv[1]))"


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    channel: socket.socket
    # The rounds it runs by their number here (each message names its round's), so a
    # late word of a round that ended never reaches the task's next round.
    rounds: dict[int, tuple[Task, Context]] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)  # it said so


class ProcessRunner:
    """Rounds in one worker process of this machine (`serve`, in `python -c WORKER`),
    started on first use (or by `warm`) and kept for the next: its own engine, its own
    interpreter lock. The decision that starts a round lets the task's lock go; the
    worker takes it, runs the round over the same repository and journal, and says over
    its socket what the round streams (words, reasoning, a command's output: `STREAMED`)
    and when the journal grew, which the manager then reads and tells its views; and
    when the round ended. Each round brings this process's environment as it is then
    (the worker takes it), so a key or endpoint set in a cell after the worker started
    reaches the model as it would from here (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL). When
    this process ends, so does the worker (its socket closes), and its rounds are
    interrupted, as the kernel's own would be; when the worker dies, the rounds it ran
    are marked interrupted here."""

    in_process = False
    follow_every_s = 1.0  # news comes over the socket; the poll only backs it up
    streams = True  # its words are told on the engine: so is the journal's poll (_follow)

    def __init__(self, manager: TaskManager) -> None:
        self._manager = manager
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._numbers = itertools.count(1)

    def warm(self, wait: bool = False) -> None:
        """Start the worker now, so the first round need not wait for its start (its
        imports: about 0.1 s, then the SDK's, about 0.5 s more, while rounds may already
        start); `wait`: return once it is ready, everything loaded (a batch measured
        from then on does not share the cores with the imports)."""
        with self._lock:
            worker = self._running_worker()
        if wait and not worker.ready.wait(60):
            raise RuntimeError("the worker process did not start within 60 s")

    @property
    def pid(self) -> int | None:
        """The worker's process id, while one runs."""
        worker = self._worker
        return None if worker is None else worker.process.pid

    def start(self, work: Round) -> None:
        task = self._manager.get(work.task_id, work.repo)
        context = self._manager._context(task)
        # The environment as it is now, as a round run here would read it: a key or an
        # endpoint set in a cell after the worker started reaches its rounds.
        with self._lock:
            number = next(self._numbers)
            request = {"round": asdict(work), "number": number, "environ": dict(os.environ)}
            worker = self._running_worker()
            worker.rounds[number] = (task, context)
            with contextlib.suppress(OSError):  # it died just now: its reader settles it
                worker.channel.sendall(json.dumps(request).encode() + b"\n")

    def posted(self, task: Task) -> None:
        """A request was posted to `task`'s inbox: the worker, running its round, acts
        on it now rather than at its next look (every 0.1 s)."""
        with self._lock:
            worker = self._worker
            if worker is None:
                return
            numbers = [n for n, (known, _) in worker.rounds.items() if known is task]
            with contextlib.suppress(OSError):
                for number in numbers:
                    worker.channel.sendall(json.dumps({"inbox": number}).encode() + b"\n")

    def close(self) -> None:
        """Stop the worker (its rounds are interrupted) and wait for it to exit."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            with contextlib.suppress(OSError):
                worker.channel.shutdown(socket.SHUT_RDWR)
            worker.process.wait()

    def _running_worker(self) -> _Worker:
        """The worker, started when there is none (under `_lock`)."""
        if self._worker is not None and self._worker.process.poll() is None:
            return self._worker
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a kernel interrupt (SIGINT) is not for it
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = self._worker = _Worker(process, ours)
        threading.Thread(
            target=self._read, args=(worker,), name="jupyter-delegate-worker", daemon=True
        ).start()
        return worker

    def _read(self, worker: _Worker) -> None:
        """The worker's messages, a batch per read, handed to the engine in order; when
        its socket closes (or says what cannot be read), the worker is lost."""
        loop = self._manager._engine()
        pending = b""
        try:
            while chunk := worker.channel.recv(1 << 16):
                *lines, pending = (pending + chunk).split(b"\n")
                messages = [json.loads(line) for line in lines]
                if any("ready" in message for message in messages):
                    worker.ready.set()
                    messages = [message for message in messages if "ready" not in message]
                if messages:
                    loop.call_soon_threadsafe(self._deliver, worker, messages)
        except (OSError, ValueError):
            log.exception("the worker process's socket broke; its rounds are interrupted")
        finally:
            worker.channel.close()
            worker.process.kill()  # gone already, or no longer heard
            worker.process.wait()
            loop.call_soon_threadsafe(self._lost, worker)

    def _deliver(self, worker: _Worker, messages: list[dict[str, Any]]) -> None:
        """On the engine: tell the views each streamed event, read the journal where it
        grew (once for a run of news about one task), settle rounds that ended."""
        manager = self._manager
        for index, message in enumerate(messages):
            number = message["number"]
            found = worker.rounds.get(number)
            if found is None:
                continue
            task, context = found
            if "live" in message:
                with context.fold_lock:
                    if context.retelling.live(message["live"], message["data"]):
                        task.emit(message["live"], message["data"])
                continue
            following = messages[index + 1] if index + 1 < len(messages) else {}
            if "news" in message and "news" in following and following["number"] == number:
                continue  # the next one reads the journal as far
            if "error" in message:
                manager._settle_stopped(task, context, "", error=message["error"])
            else:
                manager._refresh(task, context)
            if "ended" in message or "error" in message:
                worker.rounds.pop(number, None)
                if context.news is not None:  # the follow sees the end at once
                    context.news.set()

    def _lost(self, worker: _Worker) -> None:
        """On the engine, when the worker's socket closed: the rounds it still ran are
        interrupted (resumable), and the next round starts a new worker."""
        with self._lock:
            if self._worker is worker:
                self._worker = None
            lost, worker.rounds = list(worker.rounds.values()), {}
        code = worker.process.returncode
        why = "the worker process running it stopped" + (
            f" (exit code {code})" if code not in (None, 0) else ""
        )
        for task, context in lost:
            try:
                self._manager._settle_stopped(task, context, why)
            except Exception:  # the others are settled all the same
                log.exception("task %s: could not mark it interrupted", task.id)
            if context.news is not None:
                context.news.set()


def serve(fd: int) -> None:
    """The worker: run each round the socket `fd` brings, each on a thread of its own
    that waits for it, on one manager; say what the rounds stream and journal. When the
    socket closes (the process that started it ended), exit at once, as the rounds would
    have ended with that process."""
    from .manager import TaskManager

    channel = socket.socket(fileno=fd)
    channel.set_inheritable(False)  # no process it starts holds it (commands, git)
    manager = TaskManager(via="runner")
    sending = threading.Lock()

    def send(message: Mapping[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        with sending, contextlib.suppress(OSError):
            channel.sendall(data)

    # The SDK (about 0.5 s of imports) is loaded now, while no round waits for it; a
    # round that comes meanwhile starts (its worktree) and waits for it only at its first
    # request. Then the worker says it is ready: nothing left to load.
    threading.Thread(target=_import_sdk, args=(send,), name="import-sdk", daemon=True).start()

    running: dict[int, Task] = {}  # the rounds by their number, while they run

    def carry_out(work: Round, number: int) -> None:
        key = {"number": number}

        def forward(event: TaskEvent) -> None:
            if event.kind in STREAMED:
                send({**key, "live": event.kind, "data": event.data})
            else:
                send({**key, "news": True})

        def claimed(event: TaskEvent) -> None:  # its events come once it is claimed
            if number not in running:
                running[number] = manager.get(work.task_id, work.repo)
            forward(event)

        where = {"runner": "process", "host": socket.gethostname(), "pid": os.getpid()}
        try:
            state = run_round(work, manager, where, on_event=claimed)
        except Exception as exc:  # not begun: said home, where the task is settled
            send({**key, "error": f"its worker process could not run it: {exc}"})
            return
        finally:
            running.pop(number, None)
        send({**key, "ended": str(state)})

    with channel.makefile("rb") as requests:
        for line in requests:
            request = json.loads(line)
            if "inbox" in request:  # something was posted to a running round's inbox
                if (task := running.get(request["inbox"])) is not None:
                    manager.look_at_inbox(task)
                continue
            work = Round(**request["round"])
            _adopt(request["environ"])
            threading.Thread(
                target=carry_out,
                args=(work, request["number"]),
                name=f"round-{work.task_id}",
                daemon=True,
            ).start()
    os._exit(0)


def _import_sdk(send: Callable[[Mapping[str, Any]], None]) -> None:
    try:
        import anthropic  # noqa: F401
    finally:  # ready either way: a round that needs a missing SDK says so itself
        send({"ready": os.getpid()})


def _adopt(environ: Mapping[str, str]) -> None:
    """Make this process's environment the one the starting process has now, touching
    only what changed (most rounds: nothing, so no thread sees the environment move)."""
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    for key, value in environ.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
