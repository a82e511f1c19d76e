"""Faults a hospital network and its services really produce, each shown as `error` (or
absorbed), each recovered without restarting the daemon."""

from __future__ import annotations

import pytest

from tests.e2e.signals import utterance

pytestmark = [pytest.mark.e2e, pytest.mark.audio]


def a_turn_works(kiosk) -> None:
    """The proof of recovery: the patient can talk and hear an answer again."""
    kiosk.say(utterance())
    kiosk.wait_state("speaking")
    kiosk.wait_state("listening")


def test_one_503_is_absorbed_in_the_same_press(start_kiosk, sim):
    kiosk = start_kiosk()
    sim.knobs.gateway_status, sim.knobs.gateway_fail_count = 503, 1
    kiosk.press()
    kiosk.wait_state("connecting")
    kiosk.wait_state("listening")  # retried while connecting: the patient saw no error
    assert "error" not in kiosk.systemd.states()
    assert [r.status for r in sim.gateway_requests][-2:] == [503, 200]
    a_turn_works(kiosk)


def test_gateway_503_until_the_give_up_time_shows_error_then_works_again(start_kiosk, sim):
    kiosk = start_kiosk(gateway={"give_up_s": 2.0})
    sim.knobs.gateway_status = 503
    kiosk.press()
    kiosk.wait_state("connecting")
    _, fields = kiosk.systemd.wait_state("error")
    assert "unavailable" in fields["STATUS"] and "gave up after" in fields["STATUS"]
    kiosk.proc.wait_for_log(r"ERROR .*503")
    kiosk.wait_state("idle")  # the error is shown, then the kiosk is ready again
    sim.knobs.gateway_status = None
    kiosk.press()
    kiosk.wait_state("listening")
    a_turn_works(kiosk)


def test_rejected_api_key_names_the_credential_and_a_new_key_works(start_kiosk, sim):
    kiosk = start_kiosk()
    key_file = kiosk.settings["gateway"]["api_key_file"]
    sim.revoke_api_key(sim.api_key)
    kiosk.press()
    _, fields = kiosk.systemd.wait_state("error")
    assert "auth" in fields["STATUS"]
    kiosk.proc.wait_for_log(r"ERROR .*(401|rejected).*" + key_file.replace("/", r"\/")
                            + "|ERROR .*" + key_file.replace("/", r"\/") + ".*(401|rejected)")
    assert sim.api_key not in kiosk.proc.log
    kiosk.wait_state("idle")
    # IT staff rotate the key: the file is re-read, no restart.
    new_key = sim.create_api_key()
    with open(key_file, "w") as f:
        f.write(new_key + "\n")
    kiosk.press()
    kiosk.wait_state("listening")
    assert sim.gateway_requests[-1].headers["x-api-key"] == new_key


def test_websocket_drop_mid_answer_reconnects_to_the_same_conversation(start_kiosk, sim):
    kiosk = start_kiosk()
    sim.knobs.answer_s = 6.0
    sim.knobs.stream_speed = 1.2
    kiosk.press()
    kiosk.wait_state("listening")
    first_grant = sim.gateway_requests[-1]
    kiosk.say(utterance())
    kiosk.wait_state("speaking")
    assert sim.inject("drop") == 1
    sim.wait_for(lambda: len(sim.connections) == 2, 15)
    kiosk.proc.wait_for_log(r"reconnected")
    again = sim.gateway_requests[-1]
    assert again is not first_grant
    first_conversation = sim.connections[0].session.get("conversation_id") or \
        first_grant.body.get("conversation_id")
    assert again.body["conversation_id"]
    if first_conversation:
        assert again.body["conversation_id"] == first_conversation
    kiosk.wait_state("listening")
    a_turn_works(kiosk)
    assert "error" not in kiosk.systemd.states()


def test_session_expired_ends_cleanly_and_a_new_press_works(start_kiosk, sim):
    kiosk = start_kiosk()
    sim.knobs.session_max_s = 1.5
    kiosk.press()
    kiosk.wait_state("listening")
    _, fields = kiosk.systemd.wait_state("idle", timeout_s=10)
    assert "expired" in fields["STATUS"]
    assert "error" not in kiosk.systemd.states()
    sim.knobs.session_max_s = None
    kiosk.press()
    kiosk.wait_state("listening")
    a_turn_works(kiosk)


@pytest.mark.parametrize("code", ["invalid_value", "response_cancel_not_active",
                                  "input_audio_buffer_commit_empty"])
def test_recoverable_error_events_keep_the_session(start_kiosk, sim, code):
    kiosk = start_kiosk()
    kiosk.press()
    kiosk.wait_state("listening")
    assert sim.inject("error", code=code) == 1
    a_turn_works(kiosk)
    assert "error" not in kiosk.systemd.states()


def test_malformed_messages_are_dropped_not_fatal(start_kiosk, sim):
    kiosk = start_kiosk()
    kiosk.press()
    kiosk.wait_state("listening")
    for fault in ("bad_json", "bad_base64", "odd_bytes", "binary", "unknown_event"):
        assert sim.inject(fault) == 1
    kiosk.proc.wait_for_log(r"dropped a bad message")
    a_turn_works(kiosk)
    assert "error" not in kiosk.systemd.states()
    assert len(sim.connections) == 1  # no reconnect was needed


def test_an_oversized_message_is_refused_before_it_is_buffered(start_kiosk, sim):
    kiosk = start_kiosk()
    kiosk.press()
    kiosk.wait_state("listening")
    assert sim.inject("oversized", size_kib=5000) == 1  # over realtime.max_message_kib
    kiosk.proc.wait_for_log(r"realtime link lost \(close 1009: a message exceeded "
                            r"realtime.max_message_kib")
    kiosk.wait_state("listening")  # reopened
    a_turn_works(kiosk)
    assert "error" not in kiosk.systemd.states()
    assert len(sim.connections) == 2


def test_token_rejected_with_close_3000_reconnects_with_a_fresh_grant(start_kiosk, sim):
    kiosk = start_kiosk()
    kiosk.press()
    kiosk.wait_state("listening")
    sim.expire_tokens()
    assert sim.inject("error", code="invalid_api_key", close_code=3000) == 1
    sim.wait_for(lambda: len(sim.connections) == 2 and sim.connections[1].session, 15)
    assert sim.connections[1].token != sim.connections[0].token
    a_turn_works(kiosk)
    assert "error" not in kiosk.systemd.states()


def test_microphone_unplugged_and_plugged_back(start_kiosk, sim, rig):
    kiosk = start_kiosk()
    kiosk.press()
    kiosk.wait_state("listening")
    rig.remove_mic()
    try:
        _, fields = kiosk.systemd.wait_state("error", timeout_s=10)
        assert "device" in fields["STATUS"]
        kiosk.proc.wait_for_log(r"ERROR .*microphone")
    finally:
        rig.restore_mic()
    kiosk.wait_state("idle", timeout_s=15)  # recovered by itself, no restart
    kiosk.press()
    kiosk.wait_state("listening")
    a_turn_works(kiosk)
