"""The kiosk's audio: microphone capture, answer playback, cues, device supervision.

Modules, one job each:

* `engine`     -- `AudioEngine`: opens both devices, watches them, recovers from unplugging.
* `capture`    -- microphone -> 24 kHz mono frames (`kiosk.ports.CapturePort`).
* `capture_pipeline` -- the microphone's device buffers and the cut into dated frames.
* `playback`   -- answer audio -> speaker, with cue mixing (`kiosk.ports.PlaybackPort`).
* `playback_queue` -- the answer items and cue waiting for the speaker, and the mix step.
* `cues`       -- the short listening/ended/error/connecting sounds and their state observer.
* `devices`    -- PortAudio start-up, device lookup by name, `voice-kiosk devices` table.
* `selftest`   -- `voice-kiosk test-audio`.
* `ringbuffer`, `resample` -- building blocks.
* `virtual`    -- `VirtualAudio`, the private PulseAudio/JACK rig for tests and the demo.

Submodules are imported explicitly (``from kiosk.audio.engine import AudioEngine``) so that
importing the package does not start PortAudio.
"""
