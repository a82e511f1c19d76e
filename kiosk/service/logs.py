"""Logging for IT staff: the journal with searchable fields, secrets masked, transcripts off.

`setup_logging()` installs one handler on the root logger, which only queues the record (with
the kiosk's current state stamped on it) for one writer thread. No thread that logs -- the
controller, the conversation's loop, an audio callback -- ever waits on journald or a terminal.
The writer sends each line to:

- the journal (`systemd.journal.JournalHandler`) with fields KIOSK_ID, KIOSK_STATE,
  VISIT_ID and ERROR_KIND, so `journalctl -u voice-kiosk ERROR_KIND=network` works;
- or plain stderr (`time level [state] message`) when there is no journald, when
  `logging.target` is `stderr`, or in `auto` mode when stderr is a terminal.

Every record passes a redaction filter (in the writer, in linear time), and the
`kiosk.transcript` logger (what the patient and the assistant said: health data) is silenced
unless `logging.transcripts`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import re
import sys
import threading
from typing import Any, TextIO

from systemd.journal import JournalHandler
from systemd.journal import send as journal_send

from kiosk.settings import KioskSettings, LoggingSettings
from kiosk.states import State, StateChange

TRANSCRIPT_LOGGER = "kiosk.transcript"
STATE_LOGGER = "kiosk.state"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
STDERR_FORMAT = "%(asctime)s %(levelname)-7s [%(KIOSK_STATE)s] %(message)s"
MASK = "***"

# Token shapes first, then key/value pairs, so `"api_key": "sk-..."` is masked either way.
# A key name only starts where a word starts (the look-behind): without it the search would
# retry `[\w-]*` from every letter of a long word, which is quadratic in the word's length.
_SECRET_KEY = (r"(?<![\w-])[\w-]*(?:password|passwd|api[_-]?key|token|secret|authorization)"
               r"[\w-]*")
_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {MASK}"),
    (re.compile(r"\bek_[A-Za-z0-9_-]{4,}"), f"ek_{MASK}"),
    (re.compile(r"\bva_k_[A-Za-z0-9_-]{4,}"), f"va_k_{MASK}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), f"sk-{MASK}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}"), f"eyJ{MASK}"),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), rf"\1{MASK}@"),  # user:password@host in URLs
    (re.compile(rf"(?i)(?P<key>[\"']?{_SECRET_KEY}[\"']?\s*[:=]\s*)"
                r"(?P<q>[\"'])?(?P<val>(?(q)[^\"']*|[^\s,;&}\])]+))(?(q)(?P=q))"),
     rf"\g<key>\g<q>{MASK}\g<q>"),
]

# Fields a client may set (a leading "_" is reserved for journald's trusted fields).
_JOURNAL_FIELD = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """Mask anything that looks like a credential (API keys, JWTs, bearer tokens...)."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def journal_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """JournalHandler passes every LogRecord attribute (msg, args, levelname...) as a
    field; keep only valid journal field names with a value."""
    return {k: v for k, v in fields.items() if v is not None and _JOURNAL_FIELD.fullmatch(k)}


def _send_to_journal(MESSAGE: str, /, **fields: Any) -> None:  # noqa: N803 (journal's name)
    journal_send(MESSAGE, **journal_fields(fields))


class RedactingFilter(logging.Filter):
    """Renders the message once, masks it, and drops the raw arguments and exception object
    (the journal handler would otherwise send them as CODE_ARGS= / EXCEPTION_INFO=)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), ()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class TranscriptGate(logging.Filter):
    """Drops `kiosk.transcript` records unless transcripts are enabled."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled

    def filter(self, record: logging.LogRecord) -> bool:
        is_transcript = (record.name == TRANSCRIPT_LOGGER
                         or record.name.startswith(TRANSCRIPT_LOGGER + "."))
        return self.enabled or not is_transcript


class LogContext(logging.Filter):
    """Current kiosk id, state and session, stamped on every record as journal fields.

    Also a controller observer: `on_state_change` logs each transition in one line,
    `state listening (was connecting): session ready`.
    """

    def __init__(self, kiosk_id: str) -> None:
        super().__init__()
        self.kiosk_id = kiosk_id
        self._lock = threading.Lock()
        self._state: str = State.IDLE
        self._visit_id: str | None = None
        self._error_kind: str | None = None

    @property
    def state(self) -> str:
        return self._state

    @property
    def visit_id(self) -> str | None:
        return self._visit_id

    def fields(self) -> dict[str, str]:
        with self._lock:
            fields = {"KIOSK_ID": self.kiosk_id, "KIOSK_STATE": str(self._state)}
            if self._visit_id:
                fields["VISIT_ID"] = self._visit_id
            if self._error_kind:
                fields["ERROR_KIND"] = self._error_kind
        return fields

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        explicit = getattr(record, "error_kind", None)
        if explicit:
            record.ERROR_KIND = str(explicit)
        return True

    def on_state_change(self, change: StateChange) -> None:
        with self._lock:
            self._state = change.new
            self._visit_id = change.visit_id
            self._error_kind = change.error_kind if change.new == State.ERROR else None
        text = f"state {change.new} (was {change.old})"
        if change.detail:
            text += f": {change.detail}"
        level = logging.WARNING if change.new == State.ERROR else logging.INFO
        logging.getLogger(STATE_LOGGER).log(level, "%s", text,
                                            extra={"error_kind": change.error_kind})


_MARK = "_voice_kiosk_handler"
_context: LogContext | None = None
_writer: LogWriter | None = None
QUEUE_RECORDS = 10_000  # lines waiting for the writer; beyond that, lines are dropped


class LogWriter:
    """The one thread that writes log lines; everyone else only queues records for it."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler
        self.queue: queue.Queue[logging.LogRecord | threading.Event | None] = queue.Queue(
            QUEUE_RECORDS)
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()  # everything queued before it is written
                continue
            try:
                self.handler.handle(item)
            except Exception:  # a broken line must not stop the writer
                self.handler.handleError(item)

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until every record queued so far is written (tests, shut-down)."""
        done = threading.Event()
        try:
            self.queue.put(done, timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Write what is queued, then end the thread."""
        try:
            self.queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        self.handler.close()


class _Enqueue(logging.handlers.QueueHandler):
    """Formats on the caller's thread (cheap), queues without waiting, counts what it drops."""

    dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            _Enqueue.dropped += 1

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Keep the record's own message and exception: the writer's formatter and the
        # journal handler use them (QueueHandler would fold the traceback into the message).
        record = logging.makeLogRecord(record.__dict__)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None  # tracebacks hold frames: do not keep them alive in a queue
        try:
            record.msg = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            record.msg = f"{record.msg} {record.args}"
        record.args = ()
        return record


def output_handler() -> logging.Handler | None:
    """The handler the writer thread writes through (journal or stream), if set up."""
    return _writer.handler if _writer is not None else None


def flush_logging(timeout_s: float = 2.0) -> bool:
    """Wait until every line logged so far has been written (tests, shut-down)."""
    return _writer.flush(timeout_s) if _writer is not None else True


_stderr_copy: TextIO | None = None


def _real_stderr() -> TextIO:
    """stderr through a file descriptor of its own: kiosk.audio.devices.quiet_stderr points
    descriptor 2 at /dev/null while PortAudio starts (its C-level noise), and a line another
    thread logs meanwhile (the spoken prompts are made then) must still be written."""
    global _stderr_copy
    if _stderr_copy is None:
        try:
            fd = os.dup(sys.stderr.fileno())
        except (AttributeError, OSError, ValueError):  # no real stderr (captured, closed)
            return sys.stderr
        _stderr_copy = os.fdopen(fd, "w", buffering=1, encoding=sys.stderr.encoding,
                                 errors="backslashreplace")
    return _stderr_copy


def _use_journal(target: str, journal_socket: str, stream: TextIO) -> bool:
    if target == "stderr" or not os.path.exists(journal_socket):
        return False
    if target == "journal":
        return True
    # auto: someone running `voice-kiosk run` in a terminal wants to see the output there.
    return not (hasattr(stream, "isatty") and stream.isatty())


def _remove_handler() -> None:
    global _writer
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    if _writer is not None:
        _writer.stop()
        _writer = None


def teardown_logging() -> None:
    """Write what is queued, remove the kiosk's handler and forget the context (daemon exit,
    tests)."""
    global _context
    _remove_handler()
    _context = None


def setup_logging(logging_settings: LoggingSettings, kiosk: KioskSettings, *,
                  stream: TextIO | None = None,
                  journal_socket: str = JOURNAL_SOCKET) -> LogContext:
    """Install (or, on reload, replace) the kiosk's log handler; returns the LogContext
    the daemon registers as a state observer. Safe to call again with new settings."""
    global _context, _writer
    out = stream if stream is not None else _real_stderr()
    root = logging.getLogger()
    _remove_handler()
    if _context is None:
        _context = LogContext(kiosk.id)
    _context.kiosk_id = kiosk.id

    wanted_journal = _use_journal(logging_settings.target, journal_socket, out)
    handler: logging.Handler
    if wanted_journal:
        handler = JournalHandler(sender_function=_send_to_journal,
                                 SYSLOG_IDENTIFIER="voice-kiosk")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    handler.addFilter(RedactingFilter())  # in the writer thread
    _writer = LogWriter(handler)
    # On the caller's thread: drop transcripts early, stamp the state as it is *now*.
    front = _Enqueue(_writer.queue)
    front.addFilter(TranscriptGate(logging_settings.transcripts))
    front.addFilter(_context)
    setattr(front, _MARK, True)
    root.addHandler(front)
    root.setLevel(logging_settings.level.upper())
    # Belt and braces: a disabled logger creates no records for any other handler either.
    logging.getLogger(TRANSCRIPT_LOGGER).disabled = not logging_settings.transcripts

    if logging_settings.target == "journal" and not wanted_journal:
        logging.getLogger(__name__).warning(
            "logging.target is journal but %s is missing; logging to stderr", journal_socket)
    return _context

