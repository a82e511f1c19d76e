"""At the bedside, end to end: the real daemon with the test pin factory (its control socket
drives the switch and reads the relay), the simulator in its own process, virtual sound.

- the assistive switch in the nurse_call role closes the relay with the gateway and the
  speech service gone, the call signal is heard, the request survives a reload, a long
  press resets it;
- the switch in the talk role starts a visit like the button;
- the assistant's request_nurse call closes the relay, the kiosk answers the call on the wire
  in the official shapes, and the patient hears the answer.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.signals import dominant_hz, longest_run, loud_runs, utterance, wait_until
from tests.rig import FACTORY_NAME, PINS_DIR
from tests.session.test_wire_types import CLIENT, SERVER, check

pytestmark = [pytest.mark.e2e, pytest.mark.audio]

BUTTON, SWITCH, RELAY = 17, 27, 22


class Pins:
    """The daemon's test pins, through their control socket (tests/rig/pins)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def ask(self, request: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.path))
            s.sendall(request.encode() + b"\n")
            return s.makefile().readline().strip()

    def level(self, pin: int) -> float | None:
        """A pin's level, or None while the socket or the pin is not there yet."""
        try:
            answer = self.ask(f"get {pin}")
        except OSError:
            return None
        return float(answer.split()[2]) if answer.startswith("ok ") else None

    def drive(self, pin: int, level: str) -> None:
        assert self.ask(f"drive {pin} {level}") == "ok"

    def press(self, pin: int, held_s: float) -> None:
        """A press of `held_s` on an input wired to ground."""
        self.drive(pin, "low")
        time.sleep(held_s)  # the patient's press (scenario timing)
        self.drive(pin, "high")

    def changed_at(self, pin: int, level: float) -> float:
        """When the pin last went to `level`, on the daemon's clock (its pin history)."""
        _, _, *changes = self.ask(f"history {pin}").split()
        return max(float(t) for t, v in (c.split("=") for c in changes) if float(v) == level)


def bedside_env(tmp_path: Path) -> tuple[dict[str, str], Pins]:
    """gpio.pin_factory auto resolved by gpiozero to the test pins, a control socket, and a
    state directory as systemd's StateDirectory= gives one."""
    state = tmp_path / "state"
    state.mkdir()
    sock = tmp_path / "pins.sock"
    env = {"PYTHONPATH": str(PINS_DIR), "GPIOZERO_PIN_FACTORY": FACTORY_NAME,
           "KIOSK_RIG_PINS_SOCKET": str(sock), "STATE_DIRECTORY": str(state)}
    return env, Pins(sock)


def metric(path: Path, line: str) -> bool:
    return path.exists() and any(ln.startswith(line) for ln in path.read_text().splitlines())


def call_signal_notes(audio: np.ndarray) -> list[float]:
    """The dominant frequency of each of the nurse call cue's four notes (0.12 s each, 0.04 s
    apart), in the longest sound the speaker played."""
    run = longest_run(audio)
    assert len(run) == pytest.approx(0.6 * 24000, rel=0.1), len(run) / 24000
    step, note = int(0.16 * 24000), int(0.12 * 24000)
    return [dominant_hz(run[i * step:i * step + note], 24000) for i in range(4)]


def test_the_switch_calls_a_nurse_with_the_simulator_stopped(start_kiosk, sim, rig, tmp_path):
    env, pins = bedside_env(tmp_path)
    prom = tmp_path / "kiosk.prom"
    kiosk = start_kiosk(env=env, gpio={"pin_factory": "auto", "switch_pin": SWITCH,
                                       "switch_role": "nurse_call", "nurse_call": {"pin": RELAY}},
                        metrics={"textfile": str(prom), "interval_s": 1})
    kiosk.proc.wait_for_log(r"self-check: ok +gpio: .*nurse call relay \(open, read back\)")
    assert pins.level(RELAY) == 0
    sim.stop()  # no gateway, no speech service: only the kiosk and its wires are left
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)

    pins.press(SWITCH, 0.1)
    wait_until(lambda: pins.level(RELAY) == 1, 3, "the relay to close")
    # The patient hears the call signal: high, low, high, low.
    wait_until(lambda: (r := loud_runs(speaker.samples()))
               and r[-1][1] + 0.2 * 24000 < len(speaker.samples()), 5, "the call signal")
    notes = call_signal_notes(speaker.stop())
    print(f"nurse call cue notes: {', '.join(f'{hz:.0f}' for hz in notes)} Hz")
    assert notes == pytest.approx([988, 784, 988, 784], rel=0.03)
    latency_ms = (pins.changed_at(RELAY, 1) - pins.changed_at(SWITCH, 1)) * 1000
    print(f"switch release -> relay closed: {latency_ms:.1f} ms")
    assert 0 < latency_ms < 100
    kiosk.proc.wait_for_log(r"nurse call: requested by the switch; relay closed")
    k = 'kiosk="e2e-bed-1"'
    wait_until(lambda: metric(prom, f"voice_kiosk_nurse_call_active{{{k}}} 1")
               and metric(prom, f'voice_kiosk_nurse_calls_total{{{k},source="switch"}} 1'),
               5, "the metrics")
    assert "connecting" not in kiosk.systemd.states()  # no visit: the switch only calls

    # A reload (or a restart) does not cancel it: the request is kept in the state directory.
    kiosk.proc.signal(signal.SIGHUP)
    kiosk.proc.wait_for_log(r"a request latched before this reload or restart is still active")
    kiosk.proc.wait_for_log(r"configuration reloaded")
    wait_until(lambda: pins.level(RELAY) == 1, 3, "the relay closed again")

    # The nurse arrives and resets it with a long press of the patient's button.
    pins.press(BUTTON, 2.0)
    wait_until(lambda: pins.level(RELAY) == 0, 3, "the relay to open")
    kiosk.proc.wait_for_log(r"nurse call: reset by long press")
    wait_until(lambda: metric(prom, f"voice_kiosk_nurse_call_active{{{k}}} 0"), 5, "reset")
    assert not (tmp_path / "state" / "nurse-call-latched").exists()


def test_the_switch_in_the_talk_role_starts_a_visit(start_kiosk, sim, tmp_path):
    env, pins = bedside_env(tmp_path)
    kiosk = start_kiosk(env=env, gpio={"pin_factory": "auto", "switch_pin": SWITCH,
                                       "min_press_ms": 150})
    kiosk.proc.wait_for_log(r"self-check: ok +gpio: .*switch \(talk\)")
    wait_until(lambda: pins.level(SWITCH) == 1, 5, "the switch's pull-up")
    pins.press(SWITCH, 0.05)  # a knock, shorter than min_press_ms: nothing
    time.sleep(0.3)  # scenario timing: the patient tries again
    pins.press(SWITCH, 0.3)
    kiosk.wait_state("connecting")
    kiosk.wait_state("listening")
    assert kiosk.systemd.states().count("connecting") == 1


def test_the_assistant_calls_a_nurse_and_tells_the_patient(start_kiosk, sim, rig, tmp_path):
    env, pins = bedside_env(tmp_path)
    prom = tmp_path / "kiosk.prom"
    # Cues off: the call signal (heard in the test above) would overlap the answer measured
    # here, since the answer follows the request within a few tenths of a second.
    kiosk = start_kiosk(env=env, gpio={"pin_factory": "auto", "nurse_call": {"pin": RELAY}},
                        realtime={"nurse_call_tool": True}, audio={"cues": False},
                        metrics={"textfile": str(prom), "interval_s": 1})
    kiosk.proc.wait_for_log(r"self-check: ok +gpio")
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    kiosk.press()
    kiosk.wait_state("listening")
    sim.knobs.call_tool_next = True
    kiosk.say(utterance())  # "I feel dizzy, please call the nurse"
    kiosk.wait_state("thinking")
    wait_until(lambda: pins.level(RELAY) == 1, 10, "the relay to close")
    kiosk.wait_state("speaking")
    kiosk.wait_state("listening")
    states = kiosk.systemd.states()
    # From the question to the answer the kiosk kept thinking (no "listening" in between).
    asked = states.index("thinking")
    assert states[asked:asked + 3] == ["thinking", "speaking", "listening"], states
    answer = longest_run(speaker.stop())
    assert len(answer) == pytest.approx(1.5 * 24000, rel=0.15)
    assert dominant_hz(answer, 24000) == pytest.approx(sim.knobs.voice_f0_hz, rel=0.03)

    conn = sim.last_connection
    (done,) = conn.events_of("response.function_call_arguments.done", sent=True)
    outputs = [e for e in conn.events_of("conversation.item.create")
               if e["item"]["type"] == "function_call_output"]
    assert [o["item"]["call_id"] for o in outputs] == [done["call_id"]]
    assert json.loads(outputs[0]["item"]["output"])["nurse_called"] is True
    assert len(conn.events_of("response.create")) == 1
    assert not conn.events_of("error", sent=True)
    check(CLIENT, list(conn.client_events))
    check(SERVER, list(conn.server_events))

    kiosk.proc.wait_for_log(r"nurse call: requested by the assistant; relay closed")
    assert "dizzy" not in kiosk.proc.log  # the reason is health data: transcripts are off
    k = 'kiosk="e2e-bed-1"'
    wait_until(lambda: metric(prom, f'voice_kiosk_nurse_calls_total{{{k},source="assistant"}} 1'),
               5, "the metric")
    # Still latched after the visit: the light keeps the nurse pattern until a reset.
    kiosk.press()  # ends the visit
    kiosk.wait_state("idle")
    assert pins.level(RELAY) == 1
    assert re.search(r"nurse call", kiosk.proc.log)
