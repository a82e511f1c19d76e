"""Logging: stderr fallback format, redaction, transcript gate, state lines, journal fields."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from systemd.journal import JournalHandler

from kiosk.service.logs import (
    flush_logging,
    journal_fields,
    output_handler,
    redact,
    setup_logging,
)
from kiosk.settings import KioskSettings, LoggingSettings
from kiosk.states import State, StateChange

SECRETS = [
    "ek_9f8e7d6c5b4a3928",
    "va_k_live_0123456789abcdef",
    "sk-proj-ABCDEFGHIJKLMNOP",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJraW9zayJ9.c2lnbmF0dXJl",
    "hunter2-Password!",
    "opaque-refresh-value-42",
]
NO_JOURNAL = "/nonexistent/journal/socket"


def stderr_logging(**settings) -> io.StringIO:
    out = io.StringIO()
    setup_logging(LoggingSettings(target="stderr", **settings), KioskSettings(id="bed12"),
                  stream=out)
    return out


def written(out: io.StringIO) -> str:
    """What the log writer thread has written so far (it writes in the background)."""
    assert flush_logging()
    return out.getvalue()


def test_no_secret_survives_any_log_call():
    out = stderr_logging()
    log = logging.getLogger("kiosk.session")
    ek, va, sk, jwt, password, refresh = SECRETS
    log.info("session %s", {"auth": {"type": "ephemeral_token", "token": ek}})
    log.info("headers: X-API-Key: %s", va)
    log.warning("Authorization: Bearer %s", jwt)
    log.info("realtime key %s", sk)
    log.info(json.dumps({"email": "nurse@example.org", "password": password}))
    log.info("refresh with refresh_token=%s&x=1", refresh)
    log.info("config %r", {"api_key": va, "password": password})
    try:
        raise ConnectionError(f"login failed for password={password} token {ek}")
    except ConnectionError:
        log.exception("gateway login failed")
    text = written(out)
    for secret in SECRETS:
        assert secret not in text
    assert "***" in text and "nurse@example.org" in text
    assert "ConnectionError" in text  # the traceback is still there, masked


def test_stderr_format_has_time_level_state_and_message():
    out = stderr_logging()
    logging.getLogger("kiosk").info("voice-kiosk starting")
    line = written(out).strip()
    assert line.endswith("INFO    [idle] voice-kiosk starting")
    assert line[:4].isdigit()  # starts with the date


def test_state_changes_are_one_line_each_and_set_the_state_field():
    out = io.StringIO()
    context = setup_logging(LoggingSettings(target="stderr"), KioskSettings(id="bed12"),
                            stream=out)
    context.on_state_change(StateChange(State.CONNECTING, State.LISTENING, "session ready",
                                        "s-42", at=1.0))
    logging.getLogger("kiosk").info("mic open")
    context.on_state_change(StateChange(State.LISTENING, State.ERROR, "gateway unreachable",
                                        "s-42", at=2.0, error_kind="network"))
    lines = written(out).splitlines()
    assert lines[0].endswith("INFO    [listening] state listening (was connecting): "
                             "session ready")
    assert lines[1].endswith("[listening] mic open")
    assert "WARNING [error] state error (was listening): gateway unreachable" in lines[2]
    assert context.fields() == {"KIOSK_ID": "bed12", "KIOSK_STATE": "error",
                                "VISIT_ID": "s-42", "ERROR_KIND": "network"}


def test_transcripts_only_when_enabled():
    out = stderr_logging(transcripts=False)
    logging.getLogger("kiosk.transcript").info("patient: I need water")
    assert "water" not in written(out)

    out = stderr_logging(transcripts=True)  # a reload with transcripts switched on
    logging.getLogger("kiosk.transcript").info("patient: I need water")
    assert "patient: I need water" in written(out)


def test_setup_again_replaces_the_handler_and_applies_the_level():
    stderr_logging(level="info")
    out = stderr_logging(level="debug")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_voice_kiosk_handler", 0)]
    assert len(ours) == 1
    logging.getLogger("kiosk").debug("debug now visible")
    assert "debug now visible" in written(out)

    out = stderr_logging(level="warning")
    logging.getLogger("kiosk").info("info now hidden")
    assert written(out) == ""


def test_journal_target_without_journald_falls_back_to_stderr():
    out = io.StringIO()
    setup_logging(LoggingSettings(target="journal"), KioskSettings(id="k"), stream=out,
                  journal_socket=NO_JOURNAL)
    assert "logging to stderr" in written(out)


def test_journal_entries_carry_the_kiosk_fields(tmp_path: Path):
    socket_path = tmp_path / "journal.socket"
    socket_path.touch()  # only its presence is checked; the entries are captured below
    context = setup_logging(LoggingSettings(target="journal"), KioskSettings(id="bed12"),
                            journal_socket=str(socket_path))
    handler = output_handler()
    assert isinstance(handler, JournalHandler)
    sent: list[dict] = []
    # JournalHandler's documented hook for where entries go (sender_function).
    handler.send = lambda MESSAGE, /, **fields: sent.append({"MESSAGE": MESSAGE, **fields})

    context.on_state_change(StateChange(State.IDLE, State.CONNECTING, "button pressed",
                                        "s-7", at=1.0))
    logging.getLogger("kiosk.session").error("gateway said no to %s", SECRETS[1],
                                             extra={"error_kind": "auth"})
    assert flush_logging()
    first, second = sent
    assert first["MESSAGE"] == "state connecting (was idle): button pressed"
    assert (first["KIOSK_ID"], first["KIOSK_STATE"], first["VISIT_ID"]) == \
        ("bed12", "connecting", "s-7")
    assert second["ERROR_KIND"] == "auth" and second["PRIORITY"] == "3"
    assert SECRETS[1] not in repr(sent)
    assert "CODE_ARGS" not in second  # raw arguments never reach the journal
    # What goes to journald: only proper field names (no msg=, args=, levelname=...).
    kept = journal_fields(second)
    assert {"KIOSK_ID", "KIOSK_STATE", "ERROR_KIND", "PRIORITY", "CODE_LINE"} <= set(kept)
    assert all(key.isupper() and not key.startswith("_") for key in kept)
    assert "msg" not in kept and "error_kind" not in kept


@pytest.mark.timeout(20)
def test_redaction_is_linear_in_the_length_of_a_word():
    # A regex that retries from every letter of a word takes hours on a megabyte (it took
    # 51 s on 32,000 characters); linear redaction takes a fraction of a second.
    word = "x" * 1_000_000
    assert redact(word) == word
    assert redact(word + "_token=abc") == word + "_token=***"


def test_a_line_logged_while_portaudio_is_silenced_still_reaches_stderr():
    """quiet_stderr points fd 2 at /dev/null while PortAudio opens (at every answer, since
    idle streams are closed); the log writes to its own copy of fd 2, so no line is lost."""
    import subprocess
    import sys

    script = (
        "import logging\n"
        "from kiosk.audio.devices import quiet_stderr\n"
        "from kiosk.service.logs import flush_logging, setup_logging, teardown_logging\n"
        "from kiosk.settings import KioskSettings, LoggingSettings\n"
        "setup_logging(LoggingSettings(target='stderr'), KioskSettings(id='bed-1'))\n"
        "log = logging.getLogger('kiosk.test')\n"
        "log.warning('before')\n"
        "with quiet_stderr():\n"
        "    log.warning('during the silence')\n"
        "    assert flush_logging(5)\n"
        "log.warning('after')\n"
        "teardown_logging()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    lines = [ln.split("] ", 1)[1] for ln in done.stderr.splitlines() if "] " in ln]
    assert lines == ["before", "during the silence", "after"], done.stderr
