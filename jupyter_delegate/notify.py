"""Notifications: telling the user, away from the notebook, that a task needs them.

When a task starts waiting for an answer, reaches review (with its checks' verdict),
fails or is interrupted, the process that saw it happen (the one running the task; for
an interruption, the one that found its runner gone) sends one notice to what the
`[notify]` table of the user's config.toml names (home.py):

    [notify]
    webhooks = [
      "https://example.com/hook",                                  # JSON, as below
      {url = "https://ntfy.sh/my-topic", format = "ntfy"},         # ntfy's JSON publishing
      {url = "https://hooks.slack.com/services/...", format = "slack"},  # {"text": ...}
    ]
    command = "my-notifier --urgent"  # run with the notice as JSON on stdin (no shell)
    link_base = "https://box.example:8888"  # the Jupyter server: links to its /delegate/
    timeout_s = 10  # per delivery attempt (default 10)

The notice (`Notice`, its JSON the "json" format's body and the command's stdin): the
event ("question", "review", "failed", "interrupted"), the task (id, name, title), repo,
state, verdict (in review), question (request id, tool, command or path, why it asks),
error (failed), why the state changed, and the link to the phone page when `link_base`
is set. Secrets are redacted from it as from the journal (`journal.redact`, with the
task's known secrets), and a webhook's URL (which may hold a token) is never journaled:
a target is named by its host.

Every delivery runs on its own daemon thread, with a timeout per attempt and retries
with backoff (0.5 s, 2 s, 8 s), so it never blocks the task or the engine. A delivery
that fails for good is reported to `on_failure` (the manager journals it as a
`notify_failed` event, under the task's lock). A malformed `[notify]` is refused at
submit, naming the file and what to fix.

Not here: deciding when to notify (manager.py, where states change), the JupyterLab
notification and the sidebar's bell (labextension/src/notify.ts, from the task records).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from .errors import NotifyConfigError
from .journal import redact, secret_values

log = logging.getLogger(__name__)

Format = Literal["json", "ntfy", "slack"]
FORMATS: tuple[str, ...] = ("json", "ntfy", "slack")
KEYS = ("webhooks", "command", "link_base", "timeout_s")
BACKOFF_S = (0.5, 2.0, 8.0)  # waits before the 2nd, 3rd and 4th attempt
DEFAULT_TIMEOUT_S = 10.0
# The states a notice is sent for, and the event each is told as.
EVENTS = {
    "waiting": "question",
    "review": "review",
    "failed": "failed",
    "interrupted": "interrupted",
}


@dataclass(frozen=True)
class Webhook:
    url: str
    format: Format = "json"

    @property
    def target(self) -> str:
        """How the journal names it: its host and format, never its URL (which may hold a
        token, as Slack's do)."""
        return f"webhook {urlsplit(self.url).hostname} ({self.format})"


@dataclass(frozen=True)
class NotifySettings:
    """The user's `[notify]` table, checked."""

    webhooks: tuple[Webhook, ...] = ()
    command: tuple[str, ...] = ()  # shlex-split
    link_base: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def any(self) -> bool:
        return bool(self.webhooks or self.command)


def notify_settings() -> NotifySettings:
    """The user's `[notify]` settings; NotifyConfigError names the file and the fix."""
    from .home import user_dir
    from .policy import PolicyError, config_table, read_toml

    path = user_dir() / "config.toml"
    source = str(path)
    try:
        config = read_toml(path)
    except PolicyError as exc:
        raise NotifyConfigError(str(exc)) from None
    table = config_table(config, "notify", KEYS, source, NotifyConfigError)
    hooks = table.get("webhooks", [])
    if not isinstance(hooks, list):
        raise NotifyConfigError(
            f'{source}: [notify] webhooks must be a list of URLs or {{url = "...", format = '
            f'"json"|"ntfy"|"slack"}} tables, not {hooks!r}.'
        )
    webhooks = tuple(_webhook(item, source) for item in hooks)
    command: tuple[str, ...] = ()
    if "command" in table:
        text = table["command"]
        try:
            command = tuple(shlex.split(text)) if isinstance(text, str) else ()
        except ValueError as exc:
            raise NotifyConfigError(f"{source}: [notify] command does not parse ({exc}).") from None
        if not command:
            raise NotifyConfigError(
                f'{source}: [notify] command must be a command line (command = "notify-me '
                f'--urgent"), not {text!r}.'
            )
    link_base = table.get("link_base")
    if link_base is not None and not _is_http_url(link_base):
        raise NotifyConfigError(
            f"{source}: [notify] link_base must be your Jupyter server's http(s) URL "
            f'(link_base = "https://box.example:8888"), not {link_base!r}.'
        )
    timeout = table.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise NotifyConfigError(
            f"{source}: [notify] timeout_s must be a number of seconds above 0, not {timeout!r}."
        )
    return NotifySettings(webhooks, command, link_base, float(timeout))


def _webhook(item: Any, source: str) -> Webhook:
    if isinstance(item, str):
        item = {"url": item}
    if not isinstance(item, Mapping):
        raise NotifyConfigError(
            f"{source}: each of [notify] webhooks is a URL or a table {{url, format}}, "
            f"not {item!r}."
        )
    unknown = sorted(set(item) - {"url", "format"})
    if unknown:
        raise NotifyConfigError(
            f"{source}: unknown key(s) in a [notify] webhook: {', '.join(unknown)}; "
            "known: url, format."
        )
    url, format_ = item.get("url"), item.get("format", "json")
    if not _is_http_url(url):
        shown = "a URL with a secret" if isinstance(url, str) and url else repr(url)
        raise NotifyConfigError(
            f"{source}: a [notify] webhook's url must be an http(s) URL, not {shown}."
        )
    if format_ not in FORMATS:
        raise NotifyConfigError(
            f"{source}: a [notify] webhook's format must be one of {', '.join(FORMATS)}, "
            f"not {format_!r}."
        )
    return Webhook(str(url), format_)


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


@dataclass(frozen=True)
class Question:
    """The permission question a task waits on, as a notice tells it."""

    request_id: str
    tool: str
    command: str  # the command, path or pattern asked about
    reason: str


@dataclass(frozen=True)
class Notice:
    """What one notification says (the "json" format's body, the command's stdin)."""

    event: str  # question, review, failed, interrupted
    task_id: str
    title: str
    repo: str
    state: str
    name: str | None = None
    verdict: str | None = None
    question: Question | None = None
    error: str = ""
    reason: str = ""
    link: str | None = None
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def headline(self) -> str:
        """One line a phone shows: what happened to which task."""
        label = self.name or self.title
        match self.event:
            case "question":
                what = "asks" if self.question is None else f"asks to run {self.question.tool}"
                return f"Task {self.task_id} {what}: {label}"
            case "review":
                return f"Task {self.task_id} is ready for review ({self.verdict}): {label}"
            case "failed":
                return f"Task {self.task_id} failed: {label}"
            case _:
                return f"Task {self.task_id} was interrupted: {label}"

    @property
    def detail(self) -> str:
        if self.question is not None:
            return f"{self.question.tool}: {self.question.command} ({self.question.reason})"
        return self.error or self.reason


def link_for(link_base: str | None, task_id: str) -> str | None:
    """The phone page's link to the task (`<server>/delegate/#<id>`)."""
    return f"{link_base.rstrip('/')}/delegate/#{task_id}" if link_base else None


def redacted(notice: Notice, secrets: Sequence[str] = ()) -> Notice:
    """`notice` with every secret (the environment's credentials, well-known tokens,
    `secrets`) redacted, as the journal redacts."""
    data = redact(notice.to_dict(), secret_values() + list(secrets))
    question = data.pop("question")
    return Notice(**data, question=Question(**question) if question else None)


def body(notice: Notice, webhook: Webhook) -> tuple[str, bytes]:
    """The URL to POST to and the JSON body, in the webhook's format."""
    match webhook.format:
        case "slack":
            text = f"{notice.headline}\n{notice.detail}" if notice.detail else notice.headline
            if notice.link:
                text += f"\n<{notice.link}|Open>"
            return webhook.url, json.dumps({"text": text}).encode()
        case "ntfy":
            # ntfy's publishing as JSON: to the server's root, the topic in the body.
            parts = urlsplit(webhook.url)
            root, _, topic = parts.path.rstrip("/").rpartition("/")
            url = parts._replace(path=root + "/", query="", fragment="").geturl()
            message: dict[str, Any] = {
                "topic": topic,
                "title": notice.headline,
                "message": notice.detail or notice.state,
                "tags": [_NTFY_TAGS.get(notice.event, "bell")],
                "priority": 4 if notice.event == "question" else 3,
            }
            if notice.link:
                message["click"] = notice.link
                message["actions"] = [{"action": "view", "label": "Open", "url": notice.link}]
            return url, json.dumps(message).encode()
        case _:
            return webhook.url, json.dumps(notice.to_dict()).encode()


_NTFY_TAGS = {"question": "question", "review": "eyes", "failed": "x", "interrupted": "warning"}

Failure = Callable[[dict[str, Any]], None]


@dataclass
class Notifier:
    """Sends notices, each delivery on its own daemon thread (never blocking the
    caller). `backoff`: the waits between attempts; `settings`: None reads the user's
    config at each send."""

    backoff: tuple[float, ...] = BACKOFF_S
    settings: NotifySettings | None = None

    def send(self, notice: Notice, on_failure: Failure, secrets: Sequence[str] = ()) -> None:
        """Send `notice` (redacted) to every target of the settings; `on_failure` hears,
        on the delivery's thread, of each target that could not be reached."""
        try:
            settings = self.settings or notify_settings()
        except NotifyConfigError as exc:  # changed since the task was submitted
            on_failure({"event": notice.event, "target": "config", "error": str(exc)})
            return
        if not settings.any:
            return
        notice = redacted(
            Notice(**{**notice.__dict__, "link": link_for(settings.link_base, notice.task_id)}),
            secrets,
        )
        for webhook in settings.webhooks:
            self._spawn(self._post, notice, webhook, settings.timeout_s, on_failure)
        if settings.command:
            self._spawn(self._run, notice, settings.command, settings.timeout_s, on_failure)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="jupyter-delegate-notify")
        thread.daemon = True
        thread.start()

    def _post(
        self, notice: Notice, webhook: Webhook, timeout_s: float, on_failure: Failure
    ) -> None:
        url, data = body(notice, webhook)
        error = ""
        waits = (0.0, *self.backoff)
        for attempt, wait in enumerate(waits, start=1):
            time.sleep(wait)
            request = urllib.request.Request(
                url,
                data=data,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "jupyter-delegate"},
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout_s) as response:
                    response.read()
                return
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code} {exc.reason}"
            except (OSError, ValueError) as exc:  # refused, timed out, DNS, bad URL
                error = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
            log.info("notify: %s attempt %d failed: %s", webhook.target, attempt, error)
        on_failure(
            {"event": notice.event, "target": webhook.target, "error": error, "attempts": attempt}
        )

    def _run(
        self, notice: Notice, command: Sequence[str], timeout_s: float, on_failure: Failure
    ) -> None:
        target = f"command {os.path.basename(command[0])}"
        data = json.dumps(notice.to_dict()).encode()
        error = ""
        try:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            error = f"could not start it: {exc}"
        else:
            try:
                _, stderr = process.communicate(data, timeout=timeout_s)
                if process.returncode != 0:
                    tail = stderr.decode(errors="replace").strip()[-200:]
                    error = f"exit {process.returncode}" + (f": {tail}" if tail else "")
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                error = f"still running after {timeout_s:g} s; killed"
        if error:
            on_failure({"event": notice.event, "target": target, "error": error, "attempts": 1})
