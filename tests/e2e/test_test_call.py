"""The remote test call, end to end: `voice-kiosk run` against the simulator (each in its own
process), asked by `voice-kiosk test-call` as IT staff would, checked where they look: the
command's output and exit code, STATUS=, the log, the metrics file, and the speaker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.signals import dominant_hz, loud_runs, utterance, wait_until
from tests.harness import VOICE_KIOSK
from tests.rig import FACTORY_NAME, PINS_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.audio]

KIOSK = "e2e-bed-1"
TEST_CALL_METRICS = ("voice_kiosk_test_calls_total", "voice_kiosk_test_call_last_success",
                     "voice_kiosk_test_call_last_timestamp_seconds",
                     "voice_kiosk_test_call_last_duration_seconds")


def metrics(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The kiosk's metrics file as Prometheus reads it: (name, labels) -> value."""
    if not path.exists():
        return {}
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "kiosk"))): s.value
            for family in text_string_to_metric_families(path.read_text())
            for s in family.samples}


def call_samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {key: v for key, v in metrics(path).items() if key[0].startswith(TEST_CALL_METRICS)}


def wait_for_metrics(path: Path, name: str, labels: tuple[tuple[str, str], ...] = (),
                     value: float | None = None, timeout_s: float = 10.0) -> dict:
    """The test-call samples once `name{labels}` is written (with `value`, if given)."""
    def ready() -> dict | None:
        samples = call_samples(path)
        got = samples.get((name, labels))
        return samples if got is not None and (value is None or got == value) else None
    return wait_until(ready, timeout_s, f"{name}{dict(labels)} in {path}")  # type: ignore


def command_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}


def run_test_call(kiosk, *args: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
    """`voice-kiosk test-call` as IT staff run it (the daemon's pid given: no systemd here)."""
    return subprocess.run([VOICE_KIOSK, "test-call", "--config", str(kiosk.config),
                           "--pid", str(kiosk.pid), *args], capture_output=True, text=True,
                          timeout=timeout_s, env=command_env())


def start_test_call(kiosk, *args: str) -> subprocess.Popen:
    return subprocess.Popen([VOICE_KIOSK, "test-call", "--config", str(kiosk.config),
                             "--pid", str(kiosk.pid), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=command_env())


def files(tmp_path: Path) -> dict[str, dict]:
    return {"metrics": {"textfile": str(tmp_path / "voice-kiosk.prom"), "interval_s": 1},
            "test_call": {"result_file": str(tmp_path / "test-call.json")}}


def test_a_test_call_passes_through_the_gateway_and_the_service(start_kiosk, sim, rig,
                                                                   tmp_path):
    prom = tmp_path / "voice-kiosk.prom"
    # Transcripts on: the test call still logs none (what the service heard is not for logs).
    kiosk = start_kiosk(**files(tmp_path), logging={"transcripts": True})
    wait_until(prom.exists, 10, "the metrics file")
    assert call_samples(prom) == {}  # absent before the first test call
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    grants = len(sim.gateway_requests)

    done = run_test_call(kiosk, "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)
    print(record["summary"])  # the figures, with -s
    assert record["result"] == "ok" and record["reason"] == ""
    t = record["timings_s"]
    assert 0 < t["grant"] <= t["link"] < t["first_answer_audio"] < t["total"] < 20, t
    assert record["answer_ms"] == pytest.approx(1000 * sim.knobs.answer_s, rel=0.1)
    assert record["voice"] in ("espeak-ng", "synthetic voice")
    # Through the real gateway and service: one grant, one link that heard the question and
    # answered it.
    assert len(sim.gateway_requests) == grants + 1
    assert sim.gateway_requests[-1].path == "/api/voice/realtime-session"
    conn = sim.last_connection
    assert conn.events_of("input_audio_buffer.speech_stopped", sent=True)
    assert conn.events_of("response.output_audio.delta", sent=True)
    spoken = sum(end - start for start, end in loud_runs(conn.audio))
    assert spoken > 1.5 * 24000  # the question (2.5-3.3 s of voice), not silence
    # STATUS=: idle all along (light and sounds as usual), naming the test call, then its
    # result with its timings.
    _, running = kiosk.systemd.wait_for("STATUS", f"idle ({KIOSK}): test call test-")
    assert running["STATUS"] == f"idle ({KIOSK}): test call {record['id']} running"
    _, ended = kiosk.systemd.wait_for("STATUS", f"idle ({KIOSK}): test call {record['id']} ok")
    assert "grant" in ended["STATUS"] and "first answer audio" in ended["STATUS"]
    assert set(kiosk.systemd.states()) == {"idle"}
    # The journal line, the same as the command printed without --json.
    kiosk.proc.wait_for_log(rf"test call {record['id']} ok in [\d.]+ s: grant [\d.]+ s, "
                            r"link [\d.]+ s, first answer audio [\d.]+ s")
    assert sim.knobs.user_transcript not in kiosk.proc.log
    assert sim.knobs.answer_text not in kiosk.proc.log
    # Muted (test_call.volume 0): the speaker played nothing, not even a cue.
    played = speaker.stop()
    assert len(played) > 24000 and int(np.abs(played.astype(np.int32)).max()) < 100
    # The metrics, as Prometheus reads them.
    samples = wait_for_metrics(prom, "voice_kiosk_test_call_last_success", value=1)
    assert samples[("voice_kiosk_test_calls_total", (("result", "ok"),))] == 1
    assert samples[("voice_kiosk_test_calls_total", (("result", "failed"),))] == 0
    assert samples[("voice_kiosk_test_call_last_timestamp_seconds", ())] == pytest.approx(
        record["finished_at"], abs=0.01)
    for step in ("grant", "link", "first_answer_audio", "total"):
        assert samples[("voice_kiosk_test_call_last_duration_seconds", (("step", step),))] \
            == pytest.approx(t[step], abs=0.002)
    # A test call is no visit: the visit and answer counters did not move.
    assert metrics(prom)[("voice_kiosk_visits_total", ())] == 0
    assert metrics(prom)[("voice_kiosk_answers_total", ())] == 0

    again = run_test_call(kiosk)  # the plain output, and a second call on the same kiosk
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("test call test-") and " ok in " in again.stdout


def test_a_test_call_fails_clearly_with_the_gateway_down(start_kiosk, tmp_path):
    with socket.socket() as s:  # a port where no gateway listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prom = tmp_path / "voice-kiosk.prom"
    sections = files(tmp_path)
    sections["test_call"]["timeout_s"] = 10
    kiosk = start_kiosk(gateway={"url": f"http://127.0.0.1:{port}"}, **sections)

    started = time.monotonic()
    done = run_test_call(kiosk)
    took = time.monotonic() - started

    assert done.returncode == 1, done.stdout + done.stderr
    line = done.stdout.strip()
    print(line)
    assert line.startswith("test call test-") and " failed after " in line, line
    assert "network" in line and f"127.0.0.1:{port}" in line, line  # which step, which URL
    assert took < 10 + 5  # within test_call.timeout_s (retries stop at half of it)
    call_id = line.split()[2]
    kiosk.proc.wait_for_log(rf"WARNING .*test call {call_id} failed after")
    _, status = kiosk.systemd.wait_for("STATUS", f"idle ({KIOSK}): test call {call_id} failed")
    assert "network" in status["STATUS"]
    assert set(kiosk.systemd.states()) == {"idle"}  # no patient met the failure
    samples = wait_for_metrics(prom, "voice_kiosk_test_call_last_success", value=0)
    assert samples[("voice_kiosk_test_calls_total", (("result", "failed"),))] == 1
    assert samples[("voice_kiosk_test_calls_total", (("result", "ok"),))] == 0
    steps = {labels[0][1] for name, labels in samples
             if name == "voice_kiosk_test_call_last_duration_seconds"}
    assert steps == {"total"}  # no grant, no link


def test_a_test_call_is_refused_while_a_patient_uses_the_kiosk(start_kiosk, sim, tmp_path):
    prom = tmp_path / "voice-kiosk.prom"
    kiosk = start_kiosk(**files(tmp_path))
    kiosk.press()
    kiosk.wait_state("listening")
    grants = len(sim.gateway_requests)

    done = run_test_call(kiosk)

    assert done.returncode == 75, done.stdout + done.stderr
    assert "refused: a patient is using the kiosk (state listening)" in done.stdout
    assert len(sim.gateway_requests) == grants  # nothing was tried
    kiosk.proc.wait_for_log(r"test call test-\w+ refused: a patient is using the kiosk")
    # The patient's visit goes on as if nothing happened.
    kiosk.say(utterance())
    kiosk.wait_state("thinking")
    kiosk.wait_state("speaking")
    samples = wait_for_metrics(prom, "voice_kiosk_test_calls_total", (("result", "refused"),),
                               value=1)
    # A refused call is counted, but says nothing about the kiosk working.
    assert ("voice_kiosk_test_call_last_success", ()) not in samples


class RigPins:
    """The test pin factory's control socket in the daemon (tests/rig/pins)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def request(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.path))
            s.sendall(line.encode() + b"\n")
            answer = s.makefile().readline().strip()
        assert answer.startswith("ok"), answer
        return answer


def test_a_press_during_a_test_call_starts_the_patients_visit_at_once(start_kiosk, sim, rig,
                                                                         tmp_path):
    sim.knobs.answer_s = 6.0  # the test call's (muted) answer is still playing at the press
    socket_path = tmp_path / "pins.sock"
    env = {"PYTHONPATH": str(PINS_DIR), "GPIOZERO_PIN_FACTORY": FACTORY_NAME,
           "KIOSK_RIG_PINS_SOCKET": str(socket_path)}
    kiosk = start_kiosk(env=env, gpio={"pin_factory": "auto"}, **files(tmp_path))
    pins = RigPins(socket_path)
    wait_until(socket_path.exists, 10, "the pin socket")
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    connections = len(sim.connections)

    cli = start_test_call(kiosk)
    try:
        conn = sim.wait_for(lambda: len(sim.connections) > connections and sim.last_connection,
                            timeout_s=20)
        sim.wait_for(lambda: conn.events_of("response.output_audio.done", sent=True),
                     timeout_s=20)
        pins.request("drive 17 low")  # a patient's short press: down, then up
        time.sleep(0.2)
        released = time.monotonic()
        pins.request("drive 17 high")
        at = kiosk.wait_state("connecting")
        out, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(10)

    assert at - released < 0.5  # the press wins at once
    assert cli.returncode == 75, out + err
    assert "abandoned" in out and "a patient pressed the button" in out, out
    kiosk.wait_state("listening")
    # The chime of the press plays whole: ending the test call dropped only its own answer.
    wait_until(lambda: loud_runs(speaker.samples()), 5, "the chime")
    kiosk.say(utterance())
    kiosk.wait_state("speaking")
    played = speaker.stop()
    chime_start, chime_end = loud_runs(played)[0]
    assert (chime_end - chime_start) / 24000 == pytest.approx(0.19, abs=0.03)
    assert dominant_hz(played[chime_start:chime_end], 24000) in (
        pytest.approx(660, rel=0.05), pytest.approx(880, rel=0.05))
    kiosk.proc.wait_for_log(r"test call test-\w+ abandoned after [\d.]+ s: a patient pressed")
    assert len(sim.connections) == connections + 2  # the test call's link, then the visit's
