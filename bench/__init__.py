"""Benchmarks of voice-kiosk (see the README, "Benchmarks")."""
