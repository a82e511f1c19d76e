"""The turns of a visit: what the service's events mean for the speaker and the controller.

A *turn* is one question of the patient and its answer. `Turns` keeps the answer ledger of the
current link, writes answer audio to the speaker, turns the speaker's notes into
`AnswerStarted` / `AnswerFinished`, and handles barge-in (by voice or by the button) as one
action: stop the speaker, tell the service how much was heard, drop the rest. It runs on the
conversation's loop, called by the visit for each message; control events go out through the
`send` callable the visit gives it (which never waits).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from kiosk import events as ev
from kiosk.ports import PlaybackPort
from kiosk.session import protocol as p
from kiosk.session.ledger import AnswerLedger, VisitStats
from kiosk.session.replay import ReplayBuffer
from kiosk.settings import Settings

log = logging.getLogger("kiosk.visit")
transcript_log = logging.getLogger("kiosk.transcript")

Send = Callable[[dict[str, Any]], None]


class Turns:
    """The answer side of one visit (one per visit; its ledger is renewed per link)."""

    def __init__(self, settings: Settings, playback: PlaybackPort, replay: ReplayBuffer,
                 stats: VisitStats, post: Callable[[ev.Event], Any],
                 request_nurse: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        self.request_nurse = request_nurse  # NurseCall.request; None: no nurse call tool
        self._answer_tools: set[str] = set()  # responses whose tool calls were answered
        self.playback = playback
        self.replay = replay
        self.stats = stats
        self._post = post
        self.ledger = AnswerLedger()
        self.items: set[str] = set()  # every answer item written to the speaker this visit
        self.expired = False  # the service said session_expired: the close that follows ends
        self.last_error: tuple[str, str] | None = None

    def new_link(self) -> None:
        """A new link is a new service session: its item ids and responses start afresh."""
        self.ledger = AnswerLedger()
        self.expired = False

    def link_lost(self) -> None:
        """The link died: the answer that was arriving ends where it got to, and plays out."""
        playing = self.ledger.playing_item
        if playing is not None:
            self.playback.end_item(playing)

    # -- server events -----------------------------------------------------------------------

    def on_server_event(self, event: dict[str, Any], send: Send) -> None:
        kind = event["type"]
        handler = _HANDLERS.get(kind)
        if handler is None:
            return  # unknown or uninteresting event types are ignored by design
        try:
            handler(self, event, send)
        except p.ProtocolViolation as exc:
            self.stats.dropped_messages += 1
            log.warning("dropped a bad message from the realtime service: %s: %s", kind, exc)
        except (KeyError, TypeError, ValueError) as exc:
            self.stats.dropped_messages += 1
            log.warning("dropped a bad message from the realtime service: %s with missing or "
                        "bad fields (%s: %s)", kind, type(exc).__name__, exc)

    def _speech_started(self, e: dict[str, Any], send: Send) -> None:
        self._post(ev.SpeechStarted())
        if self.ledger.playing_item is not None:
            self.barge_in(by_button=False, send=send)

    def _speech_stopped(self, e: dict[str, Any], send: Send) -> None:
        self.ledger.speech_stopped()
        self.replay.committed(int(e.get("audio_end_ms", 0)))
        self.stats.turns += 1
        self._post(ev.SpeechStopped())

    def _response_created(self, e: dict[str, Any], send: Send) -> None:
        self.ledger.response_created(str(e["response"]["id"]))

    def _audio_delta(self, e: dict[str, Any], send: Send) -> None:
        pcm = p.decode_pcm16(e["delta"])
        item = str(e["item_id"])
        play, latency = self.ledger.accept_audio(str(e["response_id"]), item, len(pcm))
        if not play:
            self.stats.dropped_deltas += 1
            return
        self.replay.answered()  # the question is answered: no need to ask it again
        if latency is not None:
            self.stats.answer_latencies_s.append(latency)
        self.stats.answer_audio_ms += p.pcm_ms(len(pcm))
        self.items.add(item)
        self.playback.write(item, pcm)

    def _audio_done(self, e: dict[str, Any], send: Send) -> None:
        item = str(e["item_id"])
        if self.ledger.audio_done(str(e["response_id"]), item) and item in self.items:
            self.playback.end_item(item)

    def _response_done(self, e: dict[str, Any], send: Send) -> None:
        response = str(e["response"]["id"])
        dropped = response in self.ledger.dropped
        silent, open_items = self.ledger.response_done(response)
        for item in open_items:  # cancelled by the server mid-item: play out what came
            self.playback.end_item(item)
        follow_up = response in self._answer_tools and not dropped
        self._answer_tools.discard(response)
        if follow_up:
            # The model made a tool call and got its result: now it may tell the patient. It
            # cannot be asked while this response was active (the service refuses a second).
            send(p.response_create())
        if silent:
            self.replay.answered()
            if not follow_up:  # with a follow-up the kiosk keeps thinking until it speaks
                self._post(ev.AnswerFinished(None))  # nothing plays: no speaker note follows

    def _function_call(self, e: dict[str, Any], send: Send) -> None:
        """The model called a tool: the nurse request closes the relay at once; the result
        goes back as a function_call_output, and the follow-up response is asked for when
        this response is done."""
        name, call_id = str(e["name"]), str(e["call_id"])
        if name == p.NURSE_TOOL_NAME and self.request_nurse is not None:
            # Even from a response the patient interrupted: a nurse called by mistake costs
            # far less than one not called.
            passed_on = self.request_nurse("assistant")
            if self.settings.logging.transcripts:
                transcript_log.info("assistant requested a nurse, reason: %s",
                                    _reason(e.get("arguments")))
            output: dict[str, Any] = ({"nurse_called": True, "message": NURSE_CALLED}
                                      if passed_on else
                                      {"nurse_called": False, "message": NURSE_NOT_CALLED})
        else:
            log.warning("the realtime service called a tool the kiosk does not offer (%s); "
                        "answered that it does not exist", name)
            output = {"error": f"there is no tool named {name}"}
        send(p.function_call_output(call_id, output))
        self._answer_tools.add(str(e["response_id"]))

    def _user_transcript(self, e: dict[str, Any], send: Send) -> None:
        if self.settings.logging.transcripts:
            transcript_log.info("patient: %s", str(e["transcript"]))

    def _assistant_transcript(self, e: dict[str, Any], send: Send) -> None:
        if self.settings.logging.transcripts:
            transcript_log.info("assistant: %s", str(e["transcript"]))

    def _error(self, e: dict[str, Any], send: Send) -> None:
        code, message = p.error_summary(e)
        self.last_error = (code, message)
        action = p.ERROR_ACTIONS.get(code, "warn")
        if action == "ignore":
            log.debug("realtime service: %s (harmless)", code)
        elif action == "end":
            self.expired = True
        elif action == "auth":
            log.error("realtime service refused the session token (%s); the gateway's grant "
                      "was not accepted", code)
        elif action == "protocol":
            log.error("realtime service rejected the protocol (%s: %s)", code, message)
        else:
            log.warning("realtime service reported an error (%s: %s); visit continues",
                        code, message)

    # -- the speaker -------------------------------------------------------------------------

    def on_playback(self, kind: str, item_id: str) -> None:
        """A note from the speaker about one of this visit's answer items."""
        if kind == "started":
            latency = self.ledger.answer_started()
            if latency is not None:
                self.stats.answer_start_latencies_s.append(latency)
            self._post(ev.AnswerStarted(item_id))
        elif kind in ("drained", "flushed"):
            self.ledger.finished_playing(item_id)
            self._post(ev.AnswerFinished(item_id))

    # -- interruptions -----------------------------------------------------------------------

    def barge_in(self, by_button: bool, send: Send) -> None:
        """Stop the playing answer, tell the service how much was heard, drop the rest."""
        item, response, received_ms = self.ledger.begin_barge_in()
        if item is not None:
            played_ms = self.playback.flush()
            end_ms = max(0, min(played_ms, received_ms))
            self.stats.barge_ins += 1
            log.info("barge-in by %s: answer stopped after %d ms",
                     "button" if by_button else "voice", end_ms)
            send(p.truncate(item, end_ms))
        # With interrupt_response on, the service cancels on the patient's speech; on a button
        # press it finishes generating and its late deltas are dropped (ledger), so the kiosk
        # sends response.cancel only when interrupt_response is off (the protocol rule).
        if (response is not None and not self.settings.realtime.interrupt_response
                and self.ledger.active_response == response):
            send(p.response_cancel(response))

    def abandon(self, send: Send) -> None:
        """No answer came in time and the patient was asked to repeat: forget the question and
        cancel an answer that may still be coming."""
        self.replay.answered()
        response = self.ledger.abandon_turn()
        if response is not None:
            send(p.response_cancel(response))


NURSE_CALLED = ("The ward's nurse call system has been called: a nurse will come to the "
                "bed. Tell the patient so, briefly and calmly.")
NURSE_NOT_CALLED = ("The nurse call could NOT be sent: the kiosk's connection to the nurse "
                    "call system is not working. Tell the patient to use the bed's own nurse "
                    "call button or cord now.")


def _reason(arguments: Any) -> str:
    """The `reason` the model gave (health data: only ever logged as a transcript)."""
    try:
        args = orjson.loads(arguments) if isinstance(arguments, str) else {}
    except orjson.JSONDecodeError:
        return str(arguments)[:200]
    reason = args.get("reason") if isinstance(args, dict) else None
    return str(reason)[:200] if reason is not None else ""


_HANDLERS: dict[str, Callable[[Turns, dict[str, Any], Send], None]] = {
    "input_audio_buffer.speech_started": Turns._speech_started,
    "input_audio_buffer.speech_stopped": Turns._speech_stopped,
    "response.created": Turns._response_created,
    "response.output_audio.delta": Turns._audio_delta,
    "response.output_audio.done": Turns._audio_done,
    "response.done": Turns._response_done,
    "conversation.item.input_audio_transcription.completed": Turns._user_transcript,
    "response.output_audio_transcript.done": Turns._assistant_transcript,
    "response.function_call_arguments.done": Turns._function_call,
    "error": Turns._error,
}
