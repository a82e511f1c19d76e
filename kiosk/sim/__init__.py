"""Loopback simulator of the voice gateway and the realtime speech service."""

from kiosk.sim.records import GatewayRequest, RealtimeConnection, SimKnobs
from kiosk.sim.simulator import INJECTABLE, Simulator
from kiosk.sim.voice import silence, speech_like, synth_voice, utterance

__all__ = ["INJECTABLE", "GatewayRequest", "RealtimeConnection", "SimKnobs", "Simulator",
           "silence", "speech_like", "synth_voice", "utterance"]
