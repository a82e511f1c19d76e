"""A kiosk that is not fully set up still tells the patient so: no gateway configured is an
error the patient hears on every press (never a silent simulator), and a kiosk whose GPIO
pins cannot be opened still answers SIGUSR1 presses and speaks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.signals import dominant_hz, loud_runs, utterance, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.audio]


def error_beeps(recording: np.ndarray) -> list[np.ndarray]:
    """The error cue's short 330 Hz beeps found in a speaker recording."""
    beeps = []
    for start, end in loud_runs(recording, threshold=600, gap_s=0.03):
        part = recording[start:end]
        if 0.05 * 24000 < len(part) < 0.15 * 24000 and abs(dominant_hz(part, 24000) - 330) < 25:
            beeps.append(part)
    return beeps


def test_no_gateway_url_is_an_error_the_patient_hears_not_a_simulator(start_kiosk, sim, rig):
    kiosk = start_kiosk(gateway={"url": "", "api_key_file": None})
    status = next(f["STATUS"] for _, f in kiosk.systemd.messages if "READY" in f)
    assert status.startswith("error (e2e-bed-1): config: gateway.url is empty"), status
    assert "set gateway.url" in status and str(kiosk.config) in status
    kiosk.proc.wait_for_log(r"self-check: FAIL +gateway: gateway.url is empty")

    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    kiosk.press()
    # The press is answered with the error again, and the patient hears it each time: the
    # spoken "out of order" prompt (espeak-ng comes with the kiosk's packages).
    _, again = kiosk.systemd.wait_state("error")
    assert "gateway.url is empty" in again["STATUS"]
    kiosk.proc.wait_for_log(r"said the out_of_order prompt \(config error\)", timeout_s=10)

    def spoken_s() -> float:
        return sum(b - a for a, b in loud_runs(speaker.samples(), gap_s=0.3)) / 24000

    wait_until(lambda: spoken_s() > 2.0, 10, "the spoken prompt on the speaker")
    first = spoken_s()
    kiosk.press()
    kiosk.wait_state("error")
    wait_until(lambda: spoken_s() > first + 2.0, 15, "the spoken prompt again")
    speaker.stop()
    assert "connecting" not in kiosk.systemd.states()
    assert not sim.gateway_requests and not sim.connections  # nothing answered the patient
    assert "simulator" not in kiosk.proc.log


def test_without_gpio_a_sigusr1_press_still_starts_a_visit(start_kiosk, sim):
    # lgpio is installed with the kiosk but this machine has no GPIO chip: the pins fail.
    kiosk = start_kiosk(gpio={"pin_factory": "lgpio"})
    kiosk.proc.wait_for_log(r"GPIO: gpio.pin_factory is 'lgpio' but it could not open")
    kiosk.proc.wait_for_log(r"self-check: FAIL +gpio")
    _, idle = kiosk.systemd.wait_state("idle")  # after the error was shown (and heard)
    while "GPIO unavailable" not in idle["STATUS"]:  # READY may have said "idle" first
        _, idle = kiosk.systemd.wait_state("idle")
    assert "SIGUSR1" in idle["STATUS"]
    assert "error" in kiosk.systemd.states()
    kiosk.press()
    kiosk.wait_state("connecting")
    kiosk.wait_state("listening")
    kiosk.say(utterance())
    kiosk.wait_state("speaking")
    kiosk.wait_state("listening")
