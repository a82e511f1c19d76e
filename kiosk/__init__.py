"""voice-kiosk: a bedside voice assistant daemon (one button, one status light, sound)."""

__version__ = "0.1.0"
