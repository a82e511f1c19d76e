"""The remote test call's parts, one by one: when the controller runs, refuses or fails it;
how a call's events become its result; what the reporter exports and writes; the stand-ins
for the patient's microphone and speaker; and the command's exit codes against a real
process that answers SIGUSR2 as the daemon does. End to end: tests/e2e/test_test_call.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from io import StringIO
from pathlib import Path

import numpy as np
import pytest

from kiosk import events as ev
from kiosk.controller import Controller
from kiosk.ports import SAMPLE_RATE_HZ
from kiosk.session.ledger import VisitStats
from kiosk.settings import Settings, TestCallSettings, VisitSettings
from kiosk.states import State
from kiosk.test_call import client
from kiosk.test_call.call import TestCall, TestCallResult
from kiosk.test_call.question import synthetic_voice
from kiosk.test_call.report import TestCallReports
from kiosk.test_call.stand_ins import QuestionCapture, QuietPlayback
from tests.harness import ManualClock
from tests.session.fakes import FakePlayback
from tests.test_controller import Recorder, RecordingConversation


class ConversationWithTests(RecordingConversation):
    def test_call(self, call: TestCall) -> None:
        self.calls.append(("test_call", call.call_id))


class Results:
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.began: list[str] = []
        self.results: list[TestCallResult] = []

    def started(self, call: TestCall) -> None:
        self.began.append(call.call_id)

    def finished(self, result: TestCallResult) -> None:
        self.results.append(result)


@pytest.fixture
def controller():
    conv = ConversationWithTests()
    c = Controller(VisitSettings(idle_timeout_s=30, max_visit_s=120, error_display_s=5),
                   conv, clock=ManualClock())
    rec = Recorder()
    c.add_observer(rec)

    def feed(*events: ev.Event) -> None:
        for e in events:
            assert c.post(e)
            c.step()

    return c, conv, rec, feed


def new_call(posted: list[ev.Event] | None = None, timeout_s: float = 30.0
             ) -> tuple[TestCall, Results]:
    settings = Settings(test_call=TestCallSettings(timeout_s=timeout_s))
    results = Results()
    box = posted if posted is not None else []
    return TestCall(settings, results, lambda e: box.append(e) or True), results


# -- the controller ---------------------------------------------------------------------------


def test_an_idle_kiosk_runs_the_test_call_and_stays_idle(controller):
    c, conv, rec, feed = controller
    call, results = new_call()
    feed(ev.TestCallRequested(call))
    assert conv.calls == [("test_call", call.call_id)]
    assert c.state is State.IDLE and results.results == []
    assert rec.changes[-1].detail == f"test call {call.call_id} running"
    feed(ev.TestCallEnded(f"test call {call.call_id} ok in 4.20 s"))
    assert rec.states == ["idle", "idle"]  # the light and sounds never changed
    assert rec.changes[-1].detail == f"test call {call.call_id} ok in 4.20 s"


@pytest.mark.parametrize("events, state", [
    ([ev.ButtonPressed()], "connecting"),
    ([ev.ButtonPressed(), ev.VisitReady()], "listening"),
    ([ev.ButtonPressed(), ev.VisitReady(), ev.SpeechStarted(), ev.SpeechStopped()],
     "thinking"),
    ([ev.ButtonPressed(), ev.VisitReady(), ev.SpeechStarted(), ev.SpeechStopped(),
      ev.AnswerStarted("it1")], "speaking"),
])
def test_a_test_call_is_refused_during_a_visit(controller, events, state):
    c, conv, rec, feed = controller
    feed(*events)
    call, results = new_call()
    feed(ev.TestCallRequested(call))
    assert [r.result for r in results.results] == ["refused"]
    assert results.results[0].reason == (f"a patient is using the kiosk (state {state}); try "
                                         "again when it is idle")
    assert ("test_call", call.call_id) not in conv.calls
    assert c.state.value == state  # the patient's visit goes on
    feed(ev.TestCallEnded("late"))  # a result's status never overwrites a visit's state
    assert c.state.value == state


def test_a_test_call_is_refused_while_a_visits_error_shows(controller):
    c, conv, rec, feed = controller
    feed(ev.ButtonPressed(), ev.Fault("network", "network down"))
    call, results = new_call()
    feed(ev.TestCallRequested(call))
    assert results.results[0].result == "refused"
    assert "showing an error" in results.results[0].reason


def test_a_test_call_fails_while_a_fault_blocks_visits(controller):
    c, conv, rec, feed = controller
    feed(ev.Fault("device", "microphone 'USB' missing", persistent=True))
    call, results = new_call()
    feed(ev.TestCallRequested(call))
    assert [r.result for r in results.results] == ["failed"]
    assert results.results[0].reason == \
        "the kiosk cannot take visits: device: microphone 'USB' missing"
    assert results.results[0].timings_s == {}  # it never started
    assert ("test_call", call.call_id) not in conv.calls


# -- a call's events to its result ------------------------------------------------------------


def run_call(events: list[ev.Event], answer_ms: int = 0, timeout_s: float = 30.0,
             wait_s: float = 0.0) -> tuple[TestCallResult, list[ev.Event], list[str]]:
    """A call begun on a loop, fed `events` as its visit would; returns its result, what it
    posted to the controller, and the reasons it asked its visit to end for."""
    posted: list[ev.Event] = []
    ended: list[str] = []
    call, results = new_call(posted, timeout_s)

    async def main() -> None:
        call._loop = asyncio.get_running_loop()
        stats = VisitStats()
        call.begin(stats, ended.append)
        for event in events:
            if isinstance(event, ev.AnswerStarted):
                stats.answer_audio_ms = answer_ms
            call.on_event(event)
        await asyncio.sleep(wait_s)
        await asyncio.sleep(0)  # the end it asked for runs soon after

    asyncio.run(main())
    assert len(results.results) == 1 and call.result is results.results[0]
    return results.results[0], posted, ended


def test_an_answer_with_audio_passes_and_the_timings_come_in_order():
    result, posted, ended = run_call([ev.VisitReady(), ev.SpeechStarted(), ev.SpeechStopped(),
                                      ev.AnswerStarted("it1"), ev.AnswerFinished("it1")],
                                     answer_ms=1800)
    assert result.ok and result.reason == "" and result.answer_ms == 1800
    t = result.timings_s
    assert set(t) == {"link", "first_answer_audio", "total"}  # no gateway here: no grant
    assert 0 <= t["link"] <= t["first_answer_audio"] <= t["total"] < 1
    assert result.summary().startswith(f"test call {result.call_id} ok in ")
    assert ": link " in result.summary() and ", first answer audio " in result.summary()
    assert posted == [ev.TestCallEnded(result.summary())]
    assert ended == ["test call ok"]


def test_an_answer_without_audio_fails():
    result, _, _ = run_call([ev.VisitReady(), ev.SpeechStopped(), ev.AnswerStarted("it1"),
                             ev.AnswerFinished("it1")], answer_ms=0)
    assert result.result == "failed"
    assert result.reason == "the speech service answered without audio"


def test_a_fault_fails_the_call_with_its_kind_and_message():
    result, _, ended = run_call([ev.Fault("auth", "the gateway refused the key (401)")])
    assert result.result == "failed" and result.reason == \
        "auth: the gateway refused the key (401)"
    assert result.summary().endswith(": auth: the gateway refused the key (401)")
    assert " failed after " in result.summary()
    assert ended == ["test call failed"]


@pytest.mark.parametrize("events, where", [
    ([], "no grant from the gateway"),
    ([ev.VisitReady()], "the speech service did not hear the question"),
    ([ev.VisitReady(), ev.SpeechStopped()],
     "the speech service heard the question but sent no answer"),
])
def test_a_timeout_says_which_step_did_not_come(events, where):
    result, _, _ = run_call(events, timeout_s=0.2, wait_s=0.5)
    assert result.result == "failed"
    assert result.reason.startswith(where) and "test_call.timeout_s (0.2 s)" in result.reason
    assert result.timings_s["total"] == pytest.approx(0.2, abs=0.15)


def test_only_the_first_result_counts():
    posted: list[ev.Event] = []
    call, results = new_call(posted)
    call.refuse("busy")
    call.fail("later")
    call.ended("later still")
    assert [r.result for r in results.results] == ["refused"] and len(posted) == 1


# -- the reporter -----------------------------------------------------------------------------


def result(outcome: str, finished_at: float = 1_700_000_000.0) -> TestCallResult:
    timings = {"grant": 0.2, "link": 0.6, "first_answer_audio": 3.1, "total": 4.9} \
        if outcome == "ok" else {"total": 5.0} if outcome == "failed" else {}
    return TestCallResult(f"test-{outcome}", outcome, "" if outcome == "ok" else "why",
                          finished_at - 5, finished_at, timings)


def samples(reports: TestCallReports) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(f.name, tuple(sorted((k, v) for k, v in labels.items() if k != "kiosk"))): value
            for f in reports.families() for labels, value in f.samples}


def test_no_metrics_before_the_first_test_call_and_a_refusal_says_nothing_of_health(
        tmp_path: Path):
    reports = TestCallReports(TestCallSettings(result_file=str(tmp_path / "r.json")), "bed-1")
    try:
        assert reports.families() == []
        reports.finished(result("refused"))
        got = samples(reports)
        assert got == {("voice_kiosk_test_calls_total", (("result", r),)): float(r == "refused")
                       for r in ("ok", "failed", "refused", "abandoned")}
    finally:
        reports.close()


def test_the_last_call_that_ran_sets_success_time_and_step_timings(tmp_path: Path):
    path = tmp_path / "r.json"
    reports = TestCallReports(TestCallSettings(result_file=str(path)), "bed-1")
    try:
        reports.finished(result("ok", 1_700_000_000.0))
        got = samples(reports)
        assert got[("voice_kiosk_test_call_last_success", ())] == 1
        assert got[("voice_kiosk_test_call_last_timestamp_seconds", ())] == 1_700_000_000.0
        assert got[("voice_kiosk_test_call_last_duration_seconds", (("step", "link"),))] == 0.6
        reports.finished(result("failed", 1_700_000_600.0))
        reports.finished(result("abandoned", 1_700_000_900.0))  # ran to no result: ignored
        got = samples(reports)
        assert got[("voice_kiosk_test_call_last_success", ())] == 0
        assert got[("voice_kiosk_test_call_last_timestamp_seconds", ())] == 1_700_000_600.0
        assert [k for k in got if k[0].endswith("duration_seconds")] == \
            [("voice_kiosk_test_call_last_duration_seconds", (("step", "total"),))]
        assert got[("voice_kiosk_test_calls_total", (("result", "failed"),))] == 1
        assert got[("voice_kiosk_test_calls_total", (("result", "abandoned"),))] == 1
    finally:
        reports.close()
    record = json.loads(path.read_text())  # the last result, for `voice-kiosk test-call`
    assert record["id"] == "test-abandoned" and record["kiosk"] == "bed-1"
    assert record["summary"] == "test call test-abandoned abandoned: why"
    assert path.stat().st_mode & 0o777 == 0o644


def test_the_journal_line_carries_the_result_and_timings_as_fields(tmp_path: Path):
    import logging

    from systemd.journal import JournalHandler

    from kiosk.service.logs import (
        TRANSCRIPT_LOGGER,
        flush_logging,
        journal_fields,
        output_handler,
        setup_logging,
        teardown_logging,
    )
    from kiosk.settings import KioskSettings, LoggingSettings

    socket_path = tmp_path / "journal.socket"
    socket_path.touch()  # only its presence is checked; the entries are captured below
    # Left as the next test expects it (as tests/service/conftest.py's clean_logging does).
    level = logging.getLogger().level
    transcripts = logging.getLogger(TRANSCRIPT_LOGGER)
    disabled = transcripts.disabled
    setup_logging(LoggingSettings(target="journal"), KioskSettings(id="bed-1"),
                  journal_socket=str(socket_path))
    reports = TestCallReports(TestCallSettings(result_file=str(tmp_path / "r.json")), "bed-1")
    try:
        handler = output_handler()
        assert isinstance(handler, JournalHandler)
        sent: list[dict] = []
        handler.send = lambda MESSAGE, /, **fields: sent.append({"MESSAGE": MESSAGE, **fields})
        reports.finished(result("ok"))
        reports.finished(result("failed"))
        assert flush_logging()
    finally:
        reports.close()
        teardown_logging()
        logging.getLogger().setLevel(level)
        transcripts.disabled = disabled
    ok, failed = (journal_fields(entry) for entry in sent
                  if "TEST_CALL_ID" in entry)
    assert ok["MESSAGE"] == result("ok").summary() and ok["PRIORITY"] == "6"
    assert (ok["TEST_CALL_ID"], ok["TEST_CALL_RESULT"]) == ("test-ok", "ok")
    assert (ok["TEST_CALL_GRANT_S"], ok["TEST_CALL_LINK_S"], ok["TEST_CALL_TOTAL_S"]) == \
        ("0.200", "0.600", "4.900")
    assert ok["TEST_CALL_FIRST_ANSWER_AUDIO_S"] == "3.100"
    assert failed["TEST_CALL_RESULT"] == "failed" and failed["PRIORITY"] == "4"  # a warning
    assert "TEST_CALL_LINK_S" not in failed


def test_a_result_file_that_cannot_be_written_is_named_once(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture):
    path = tmp_path / "missing-dir" / "r.json"
    reports = TestCallReports(TestCallSettings(result_file=str(path)), "bed-1")
    reports.finished(result("ok"))
    reports.finished(result("failed"))
    reports.close()
    warnings = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0]
    assert "test_call.result_file" in warnings[0]
    assert samples(reports)[("voice_kiosk_test_call_last_success", ())] == 0


# -- the stand-ins --------------------------------------------------------------------------


def test_the_question_comes_at_the_pace_of_a_microphone_then_silence():
    question = (np.arange(SAMPLE_RATE_HZ // 4) % 100 + 1).astype(np.int16)  # 250 ms
    frames: list[tuple[float, np.ndarray]] = []
    wakes: list[float] = []

    async def main() -> None:
        capture = QuestionCapture(question, 50, lambda: wakes.append(time.monotonic()))
        assert capture.read_frame(0) is None  # not armed
        capture.arm()
        start = time.monotonic()
        assert capture.read_frame(0) is None  # the first frame's time has not come
        while time.monotonic() - start < 0.42:
            await asyncio.sleep(0.01)
            while (frame := capture.read_frame(0)) is not None:
                frames.append((time.monotonic() - start, frame.pcm))
        capture.disarm()

    asyncio.run(main())
    assert 7 <= len(frames) <= 8  # 50 ms frames over 0.42 s, never ahead of time
    assert all(at >= 0.05 * (i + 1) - 0.005 for i, (at, _) in enumerate(frames))
    assert np.array_equal(np.concatenate([pcm for _, pcm in frames[:5]]), question)
    assert all(not pcm.any() and len(pcm) == 1200 for _, pcm in frames[5:])
    assert len(wakes) >= 6


class Sink(FakePlayback):
    """The fake speaker, keeping what it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[bytes] = []

    def write(self, item_id: str, pcm: bytes) -> None:
        self.handed.append(pcm)
        super().write(item_id, pcm)


@pytest.mark.parametrize("volume, audio_volume", [(0, 80), (40, 80), (80, 80), (100, 50)])
def test_the_answer_plays_at_the_test_calls_volume_never_louder(volume, audio_volume):
    from kiosk.audio.playback import volume_gain

    speaker = Sink()
    try:
        quiet = QuietPlayback(speaker, volume, audio_volume)
        assert quiet.flush() == 0 and not quiet.busy  # nothing of the call's yet
        quiet.write("it1", np.full(2400, 10000, np.int16).tobytes())
    finally:
        speaker.close()
    level = np.frombuffer(speaker.handed[0], np.int16)
    factor = min(1.0, volume_gain(volume) / volume_gain(audio_volume))
    assert len(level) == 2400 and np.all(level == int(10000 * factor))
    assert (volume == 0) == (not level.any())  # 0: muted, yet through the speaker path
    assert level.max() <= 10000  # never louder than a patient's answer


def test_the_synthetic_voice_is_loud_speech_shaped_and_has_pauses():
    voice = synthetic_voice(2.5)
    assert len(voice) == int(2.5 * SAMPLE_RATE_HZ)
    assert 15000 <= int(np.abs(voice.astype(np.int32)).max()) <= 16000
    frames = voice[: len(voice) // 1200 * 1200].reshape(-1, 1200).astype(np.float64)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    assert (rms < 50).sum() >= 3 and (rms > 2000).sum() >= 20  # words, and pauses between


# -- the command ----------------------------------------------------------------------------


DAEMON = textwrap.dedent("""
    import json, os, signal, sys, time
    path, outcome = sys.argv[1], sys.argv[2]
    def answer(*_):
        record = {"id": "test-abc123", "result": outcome, "reason": "why",
                  "summary": f"test call test-abc123 {outcome}"}
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
    if outcome != "silent":
        signal.signal(signal.SIGUSR2, answer)
    else:
        signal.signal(signal.SIGUSR2, lambda *_: None)
    print("ready", flush=True)
    time.sleep(60)
""")


def with_daemon(tmp_path: Path, outcome: str, timeout_s: float = 10.0,
                before: dict | None = None) -> tuple[int, str, str]:
    path = tmp_path / "test-call.json"
    if before is not None:
        path.write_text(json.dumps(before))
    proc = subprocess.Popen([sys.executable, "-c", DAEMON, str(path), outcome],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        settings = Settings(test_call=TestCallSettings(result_file=str(path)))
        out, err = StringIO(), StringIO()
        code = client.run_test_call(settings, proc.pid, "unused.service", timeout_s, False,
                                    out, err)
        return code, out.getvalue(), err.getvalue()
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("outcome, code", [("ok", 0), ("failed", 1), ("refused", 75),
                                           ("abandoned", 75)])
def test_the_command_exits_with_a_code_for_each_result(tmp_path: Path, outcome, code):
    got, out, err = with_daemon(tmp_path, outcome)
    assert got == code and out == f"test call test-abc123 {outcome}\n", err


def test_the_command_waits_for_a_new_result_not_the_last_one(tmp_path: Path):
    old = {"id": "test-old", "result": "failed", "summary": "test call test-old failed"}
    got, out, _ = with_daemon(tmp_path, "ok", before=old)
    assert got == 0 and "test-abc123 ok" in out


def test_the_command_says_when_no_result_came(tmp_path: Path):
    got, out, err = with_daemon(tmp_path, "silent", timeout_s=1.0)
    assert got == 69 and out == ""
    assert "no result within 1 s" in err and "started no test call" in err


def test_the_command_says_when_there_is_no_daemon(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)  # a pid that was a process, and is no more
    settings = Settings(test_call=replace(TestCallSettings(),
                                          result_file=str(tmp_path / "r.json")))
    err = StringIO()
    assert client.run_test_call(settings, proc.pid, "x", 1.0, False, StringIO(), err) == 69
    assert f"no process {proc.pid}: is voice-kiosk running?" in err.getvalue()
