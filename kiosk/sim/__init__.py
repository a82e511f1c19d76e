"""Loopback simulator of the voice gateway and the realtime speech service."""

from kiosk.sim.knobs import SimKnobs
from kiosk.sim.records import GatewayRequest, Limits, RealtimeConnection
from kiosk.sim.simulator import INJECTABLE, Simulator
from kiosk.sim.voice import silence, speech_like, synth_voice, utterance

__all__ = ["INJECTABLE", "GatewayRequest", "Limits", "RealtimeConnection", "SimKnobs",
           "Simulator", "silence", "speech_like", "synth_voice", "utterance"]
