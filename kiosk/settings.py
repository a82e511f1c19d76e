"""Typed, frozen settings: one dataclass per section of the YAML file.

Each field's metadata holds its one-line help (unit and range) and its validation rule; the
loader in `kiosk.config` is driven by these declarations, and the example file
`config/voice-kiosk.yaml` must say the same thing (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Validation rules understood by kiosk.config_checker:
#   range=(lo, hi)      inclusive numeric range
#   choices=(...)       allowed values
#   kind="url"|"path"|"secret_file"|"device"|"pin"|"level"|"language"|"wav"
#   max_s=...           with kind="wav": longest accepted recording, seconds
#   max_chars=...       longest accepted text
#   items=...           element rule for mappings


def opt(default: Any, help: str, **rule: Any) -> Any:
    """Declare a setting with its default, its help line and its validation rule."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default),
                     metadata={"help": help, **rule})
    return field(default=default, metadata={"help": help, **rule})


STATE_DIRECTORY = "/var/lib/voice-kiosk"  # the unit's StateDirectory=voice-kiosk
SIMULATOR_URL = "simulator"  # gateway.url asking for the built-in simulator (demos only)

PROMPT_NAMES = ("unavailable", "out_of_order")
"""The spoken prompts' situations (kiosk.audio.prompts says which failures each covers)."""


@dataclass(frozen=True)
class KioskSettings:
    id: str = opt("kiosk", "Name of this kiosk in logs, metrics and systemd status.")
    location: str = opt("", "Where the kiosk stands (ward, room, bed), for IT staff.")
    language: str | None = opt(None, "The patient's language as a BCP 47 tag (de, es, ar, "
                                     "pt-BR): asked of the gateway, the speech service's "
                                     "transcription and answers, and the spoken prompts. "
                                     "null: English prompts, the service's own choice.",
                               kind="language")


@dataclass(frozen=True)
class GatewaySettings:
    url: str = opt("", "Base URL of the voice gateway (https://...). Required: empty shows "
                       "error (config). `simulator` runs the built-in loopback simulator "
                       "(a demo that answers with a tone, not an assistant).", kind="url")
    api_key_file: str | None = opt(None, "File holding an X-API-Key (va_k_...).",
                                   kind="secret_file")
    token_file: str | None = opt(None, "File holding a bearer JWT, re-read on every request.",
                                 kind="secret_file")
    email: str | None = opt(None, "Login e-mail (with password_file) for token login.")
    password_file: str | None = opt(None, "File holding the login password.", kind="secret_file")
    conversation_id: str | None = opt(None, "Conversation to continue; null lets the gateway pick.")
    ca_file: str | None = opt(None, "Extra CA bundle (PEM) to trust for the gateway and the "
                                    "realtime service.", kind="path")
    verify_tls: bool = opt(True, "Verify the TLS certificates of the gateway and the realtime "
                                 "service. Leave on.")
    allow_insecure: bool = opt(False, "Allow http:// and ws:// to hosts other than this "
                                      "machine (unencrypted; warned at every start).")
    timeout_s: float = opt(35.0, "HTTP timeout per request, seconds (the gateway itself gives "
                                 "up on a slow speech service after 30 s).", range=(1, 120))
    give_up_s: float = opt(60.0, "Keep retrying a press's gateway or service failures this "
                                 "long (the kiosk stays connecting), seconds.", range=(0, 600))
    voice: str | None = opt(None, "Voice to ask the gateway for (null: gateway default).")
    language: str | None = opt(None, "Old place of kiosk.language (still read when that is "
                                     "null); move it there.", kind="language")
    vad_sensitivity: int | None = opt(None, "Gateway VAD sensitivity 0-100.", range=(0, 100))
    silence_duration_ms: int | None = opt(None, "Silence that ends a turn, ms.", range=(100, 5000))
    adaptive_vad: bool | None = opt(None, "Ask the gateway for adaptive VAD.")
    retry_initial_s: float = opt(1.0, "First retry delay after a failure, seconds.",
                                 range=(0.1, 60))
    retry_max_s: float = opt(10.0, "Longest retry delay (backoff cap), seconds.", range=(1, 600))
    auth_retry_s: float = opt(300.0, "After a rejected credential, automatic retries wait this "
                                     "long (a patient's press always tries), seconds.",
                              range=(10, 3600))


@dataclass(frozen=True)
class RealtimeSettings:
    url: str | None = opt(None, "Override the realtime WebSocket URL the gateway hands out.",
                          kind="url")
    model: str | None = opt("gpt-realtime", "Model to use (null: the gateway's choice).")
    voice: str | None = opt(None, "Voice override (alloy, ash, ballad, coral, echo, sage, "
                                  "shimmer, verse, marin, cedar).",
                            choices=(None, "alloy", "ash", "ballad", "coral", "echo", "sage",
                                     "shimmer", "verse", "marin", "cedar"))
    instructions: str = opt(
        "You are a friendly bedside assistant in a hospital. Speak slowly and clearly, in "
        "short sentences. You cannot give medical advice; for anything urgent, tell the "
        "patient to use the nurse call button.",
        "Instructions added to every link's session.update.")
    interrupt_response: bool = opt(True, "Let the server cancel its answer when the patient "
                                         "talks over it.")
    speed: float = opt(1.0, "Speech rate of the answers (0.25-1.5; 0.8 is slower, for "
                            "patients who hear poorly). Also slows the spoken prompts.",
                       range=(0.25, 1.5))
    connect_timeout_s: float = opt(10.0, "WebSocket connect and setup timeout, seconds.",
                                   range=(1, 60))
    reconnect_give_up_s: float = opt(30.0, "Stop reconnecting a dropped link after, seconds.",
                                     range=(0, 600))
    link_timeout_s: float = opt(10.0, "A link whose pings go unanswered this long is dead "
                                      "(half-open network), seconds.", range=(2, 120))
    max_message_kib: int = opt(4096, "Largest server message accepted, KiB (a bigger one "
                                     "closes the link, which is then reopened).",
                               range=(64, 65536))
    nurse_call_tool: bool = opt(False, "Let the assistant call a nurse: the model may call the "
                                       "tool request_nurse, which closes gpio.nurse_call's "
                                       "relay. Needs gpio.nurse_call.pin.")


@dataclass(frozen=True)
class AudioSettings:
    input_device: str | int = opt("default", "Microphone: name substring, index or default.",
                                  kind="device")
    output_device: str | int = opt("default", "Speaker: name substring, index or default.",
                                   kind="device")
    frame_ms: int = opt(100, "Microphone block and send chunk length, ms. Each one wakes the "
                             "kiosk: 100 costs a fifth of the CPU of 20 and delays what the "
                             "service hears by at most that long.", range=(10, 100))
    input_gain_db: float = opt(0.0, "Microphone gain, dB.", range=(-20, 30))
    volume: int = opt(80, "Answer volume, percent.", range=(0, 100))
    prebuffer_ms: int = opt(60, "Answer audio queued before playback starts, ms.",
                            range=(0, 2000))
    capture_buffer_s: float = opt(10.0, "Microphone backlog kept while connecting, seconds.",
                                  range=(1, 120))
    playback_buffer_s: float = opt(120.0, "Answer audio that can be queued, seconds.",
                                   range=(5, 600))
    echo_mode: str = opt("gate", "aec: cancel the speaker's echo in the kiosk, the patient "
                                "can talk over an answer; gate: mute the mic while the kiosk "
                                "speaks; none: full duplex (echo-cancelling speakerphone).",
                         choices=("aec", "gate", "none"))
    cues: bool = opt(True, "Play short sounds for listening, end, error and connecting.")
    cue_volume: int = opt(60, "Cue volume, percent.", range=(0, 100))
    cue_files: dict[str, str] = opt({}, "Optional WAV files replacing cues "
                                        "(listening, ended, error, connecting, nurse_call).",
                                    keys=("listening", "ended", "error", "connecting",
                                          "nurse_call"),
                                    kind="wav", max_s=10)
    prompts: bool = opt(True, "Say in a sentence why the assistant cannot answer a press "
                              "(false: the error sound only).")
    prompt_files: dict[str, str] = opt({}, "Optional WAV recordings replacing the spoken "
                                           "prompts (unavailable, out_of_order).",
                                       keys=PROMPT_NAMES, kind="wav", max_s=30)
    prompt_texts: dict[str, str] = opt({}, "Optional sentences replacing the built-in ones, "
                                           "spoken by espeak-ng in kiosk.language "
                                           "(unavailable, out_of_order).",
                                       keys=PROMPT_NAMES, max_chars=300)
    device_retry_s: float = opt(2.0, "Retry a missing audio device every, seconds.",
                                range=(0.2, 60))
    stop_when_idle: bool = opt(True, "Pause both streams while idle (no CPU, no wake-ups); "
                                     "false keeps them running, for a USB speaker that "
                                     "clicks when its stream starts.")


@dataclass(frozen=True)
class LedPattern:
    mode: str = opt("on", "off, on, dim, blink, double_blink or pulse.",
                    choices=("off", "on", "dim", "blink", "double_blink", "pulse"))
    on_s: float = opt(0.5, "Time on per blink, seconds.", range=(0.02, 10))
    off_s: float = opt(0.5, "Time off per blink, seconds.", range=(0.02, 10))
    brightness: float = opt(1.0, "Brightness 0-1 (PWM and RGB LEDs).", range=(0, 1))
    color: str = opt("#ffffff", "RGB colour as #rrggbb (RGB LEDs).", kind="color")


DEFAULT_PATTERNS: dict[str, LedPattern] = {
    "idle": LedPattern(mode="dim", brightness=0.1, color="#0000ff"),
    "connecting": LedPattern(mode="blink", on_s=0.5, off_s=0.5, color="#ffbf00"),
    "listening": LedPattern(mode="on", color="#00ff00"),
    "thinking": LedPattern(mode="double_blink", on_s=0.1, off_s=0.1, color="#00ffff"),
    "speaking": LedPattern(mode="pulse", on_s=0.6, off_s=0.6, color="#ffffff"),
    "error": LedPattern(mode="blink", on_s=0.1, off_s=0.1, color="#ff0000"),
}


@dataclass(frozen=True)
class NurseCallSettings:
    """The nurse request relay: a normally-open dry contact wired in parallel with the bed's
    own nurse call (it never replaces the call cord)."""

    pin: int | str | None = opt(None, "Relay output pin (BCM number or a name like GPIO27); "
                                      "null: no relay.", kind="pin")
    active_high: bool = opt(True, "true: the pin goes high to close the contact; false for "
                                  "relay boards that switch on a low input.")
    hold_s: float = opt(0.0, "0: the contact stays closed until the request is reset "
                             "(latched); more: closed this many seconds, like a press of the "
                             "call button.", range=(0, 600))
    reset_pin: int | str | None = opt(None, "Optional reset input for staff (a key switch or "
                                            "button to ground, BCM); null: none.", kind="pin")
    reset_after_s: float = opt(0.0, "Reset a request by itself after this long, seconds; 0: "
                                    "never (a long press or reset_pin resets it).",
                               range=(0, 86400))


@dataclass(frozen=True)
class GpioSettings:
    pin_factory: str = opt("auto", "auto, lgpio, rpigpio, pigpio, native or mock.",
                           choices=("auto", "lgpio", "rpigpio", "pigpio", "native", "mock"))
    button_pin: int | str = opt(17, "Button pin (BCM number, or a name like GPIO17).", kind="pin")
    button_pull_up: bool = opt(True, "true: button wired to ground; false: wired to 3V3.")
    bounce_ms: int = opt(50, "Button debounce time, ms.", range=(0, 1000))
    long_press_s: float = opt(1.5, "Hold this long to end the visit, seconds.",
                              range=(0.3, 10))
    led_kind: str = opt("single", "single, pwm, rgb or none.",
                        choices=("single", "pwm", "rgb", "none"))
    led_pin: int | str = opt(18, "LED pin for single and pwm LEDs.", kind="pin")
    rgb_pins: list[int | str] = opt([12, 13, 19], "Red, green, blue pins for an RGB LED.",
                                    kind="pin", length=3)
    led_active_high: bool = opt(True, "false for common-anode parts (LED on when pin is low).")
    led_patterns: dict[str, LedPattern] = opt(
        {}, "Per-state overrides of the LED pattern (idle, connecting, listening, thinking, "
            "speaking, error).",
        keys=("idle", "connecting", "listening", "thinking", "speaking", "error"))
    min_press_ms: int = opt(0, "A press counts only when held this long, ms (button and "
                               "switch; for patients with tremor). 0: every press counts.",
                            range=(0, 1000))
    switch_pin: int | str | None = opt(None, "Assistive switch input (3.5 mm jack: "
                                             "sip-and-puff, pillow, grasp switch), BCM; null: "
                                             "none.", kind="pin")
    switch_role: str = opt("talk", "talk: exactly like the button; nurse_call: a press "
                                   "requests a nurse (closes gpio.nurse_call's relay).",
                           choices=("talk", "nurse_call"))
    switch_pull_up: bool = opt(True, "true: switch wired to ground; false: wired to 3V3.")
    nurse_call: NurseCallSettings = opt(NurseCallSettings(), "The nurse request relay.")

    def pattern(self, state: str) -> LedPattern:
        """The LED pattern for a state: the YAML override, else the built-in default."""
        return self.led_patterns.get(state, DEFAULT_PATTERNS[state])


@dataclass(frozen=True)
class VisitSettings:
    """A *visit* is one press of the button to the end of that conversation."""

    idle_timeout_s: float = opt(30.0, "End the visit after this long without speech, seconds.",
                                range=(3, 600))
    max_visit_s: float = opt(600.0, "Longest visit, seconds.", range=(10, 3600))
    thinking_timeout_s: float = opt(15.0, "No answer this long after the patient stopped "
                                          "talking: back to listening with a chime, seconds.",
                                    range=(3, 120))
    error_display_s: float = opt(5.0, "Show the error state this long, then idle, seconds.",
                                 range=(0.5, 120))


@dataclass(frozen=True)
class LoggingSettings:
    level: str = opt("info", "debug, info, warning or error.",
                     choices=("debug", "info", "warning", "error"))
    transcripts: bool = opt(False, "Log what the patient and assistant said (health data!).")
    target: str = opt("auto", "auto (journal when present), journal or stderr.",
                      choices=("auto", "journal", "stderr"))


@dataclass(frozen=True)
class MetricsSettings:
    textfile: str | None = opt(None, "Prometheus node_exporter textfile to write (*.prom).",
                               kind="output_path")
    interval_s: float = opt(15.0, "How often the metrics file is rewritten, seconds.",
                            range=(1, 3600))


@dataclass(frozen=True)
class NightSettings:
    """Quieter sound and a dimmer light at night (local time; a window may cross midnight)."""

    start: str | None = opt(None, "Night begins, local time HH:MM, e.g. \"22:00\"; null: no "
                                  "night profile.", kind="clock_time")
    end: str | None = opt(None, "Night ends, local time HH:MM, e.g. \"07:00\" (the next "
                                "morning when before start).", kind="clock_time")
    volume: int = opt(40, "Answer volume at night, percent (caps audio.volume).",
                      range=(0, 100))
    cue_volume: int = opt(20, "Cue volume at night, percent (caps audio.cue_volume).",
                          range=(0, 100))
    led_brightness: float = opt(0.1, "Light brightness at night, 0-1 (PWM and RGB LEDs); the "
                                     "idle light is off.", range=(0, 1))

    @property
    def enabled(self) -> bool:
        return self.start is not None and self.end is not None


@dataclass(frozen=True)
class TestCallSettings:
    """A remote test call (`voice-kiosk test-call`, SIGUSR2): a spoken test question through
    the real gateway and speech service, without a patient."""

    __test__ = False  # not a pytest test class, despite its name

    volume: int = opt(0, "Volume of the test call's answer, percent on the scale of "
                         "audio.volume and never louder than it; 0 mutes it (the answer "
                         "still goes through the speaker path, as silence).", range=(0, 100))
    timeout_s: float = opt(30.0, "A test call without a complete answer after this long "
                                 "fails, seconds.", range=(10, 300))
    result_file: str | None = opt(None, "Where the daemon writes each test call's result "
                                        "for `voice-kiosk test-call` to read (null: "
                                        "test-call.json in the service's state directory, "
                                        "/var/lib/voice-kiosk).", kind="output_path")

    def result_path(self) -> str:
        """The result file: as configured, else in systemd's StateDirectory= of the unit."""
        return self.result_file or f"{STATE_DIRECTORY}/test-call.json"


@dataclass(frozen=True)
class Settings:
    kiosk: KioskSettings = field(default_factory=KioskSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    visit: VisitSettings = field(default_factory=VisitSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    night: NightSettings = field(default_factory=NightSettings)
    test_call: TestCallSettings = field(default_factory=TestCallSettings)
    source: str = field(default="<defaults>", compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)
    """What the loader noticed in a valid file (an old section name), for check-config."""

    @property
    def language(self) -> str | None:
        """The patient's language tag: kiosk.language, else the old gateway.language."""
        return self.kiosk.language or self.gateway.language

    @property
    def uses_simulator(self) -> bool:
        """`gateway.url: simulator`: the kiosk talks to its built-in loopback simulator. Only
        ever on request: an empty url is a configuration error, never a silent demo."""
        return self.gateway.url == SIMULATOR_URL


# Sections renamed since 0.1, still read under their old name: old -> (new, {old key: new}).
LEGACY_SECTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "session": ("visit", {"max_session_s": "max_visit_s"}),
}

SECTIONS: dict[str, type] = {
    "kiosk": KioskSettings,
    "gateway": GatewaySettings,
    "realtime": RealtimeSettings,
    "audio": AudioSettings,
    "gpio": GpioSettings,
    "visit": VisitSettings,
    "logging": LoggingSettings,
    "metrics": MetricsSettings,
    "night": NightSettings,
    "test_call": TestCallSettings,
}
