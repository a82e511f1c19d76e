"""`voice-kiosk` command line: run, check-config, prompts, devices, test-audio, test-call,
demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kiosk import __version__, config

EPILOG = ("Configuration: --config PATH, else $VOICE_KIOSK_CONFIG, else "
          "/etc/voice-kiosk/config.yaml. Documentation: README.md.")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH",
                   help="configuration file (default: $VOICE_KIOSK_CONFIG or "
                        "/etc/voice-kiosk/config.yaml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voice-kiosk",
        description="Bedside voice assistant: one button, one status light, sound.",
        epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"voice-kiosk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the kiosk daemon in the foreground (as systemd does)",
                       description="Run the kiosk in the foreground. Signals: SIGTERM/SIGINT "
                       "stop, SIGHUP reloads the configuration, SIGUSR1 acts like a short "
                       "button press.", epilog=EPILOG)
    _add_config(p)

    p = sub.add_parser("check-config", help="check the configuration and print it",
                       description="Exit 0 and print the effective configuration (secrets "
                       "masked), or exit 1 and list every problem with file, line and key.",
                       epilog=EPILOG)
    _add_config(p)

    p = sub.add_parser("prompts", help="show what the patient hears when the assistant "
                       "cannot be reached", description="Show each spoken prompt: when it is "
                       "said, its sentence, language and length. Exit 1 when one is not "
                       "available (the error sound plays instead).", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--export", metavar="DIR", type=Path,
                   help="also write each prompt as DIR/<name>.wav (24 kHz, 16-bit)")

    p = sub.add_parser("devices", help="list audio inputs and outputs",
                       description="List the audio devices PortAudio sees: index, name, "
                       "channels and default rate. Use a name substring in audio.input_device "
                       "and audio.output_device.")

    p = sub.add_parser("test-audio", help="play a cue, record 3 s and report the level",
                       description="Play a cue through the speaker, record 3 seconds from the "
                       "microphone and print the level, the peak and whether it heard silence "
                       "or clipping. Nothing is stored.", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--seconds", type=float, default=3.0, help="recording length (default 3)")

    p = sub.add_parser("test-call", help="make the running kiosk do a test call and report it",
                       description="Ask the running kiosk (SIGUSR2) to put a spoken test "
                       "question through the gateway and the speech service, without a "
                       "patient and with its answer muted (test_call.volume), and print the "
                       "result with its timings. Only while the kiosk is idle. Exit codes: 0 "
                       "ok; 1 failed (a patient's visit would fail too); 75 refused or "
                       "abandoned (a patient was using the kiosk: try again later); 69 no "
                       "daemon or no result in time; 77 not allowed to signal the daemon "
                       "(use sudo); 78 the configuration is invalid.", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--pid", type=int, help="the daemon's process id (default: systemd's main "
                                           "process of --unit)")
    p.add_argument("--unit", default="voice-kiosk.service",
                   help="the kiosk's systemd unit (default: voice-kiosk.service)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="how long to wait for the result (default: test_call.timeout_s + 15)")
    p.add_argument("--json", action="store_true",
                   help="print the whole result (timings included) as JSON")

    p = sub.add_parser("demo", help="watch a whole conversation turn against the simulator",
                       description="Start the built-in simulator on loopback and the real kiosk "
                       "pipeline with mock GPIO, and show the state live. Enter = short press, "
                       "l = long press, q = quit.", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--virtual-audio", action="store_true",
                   help="use private PulseAudio virtual devices (automatic when no sound "
                        "device is found); speaks a sample question and records the answer")
    p.add_argument("--script", action="store_true",
                   help="run one scripted session without a keyboard and print the timeline")
    p.add_argument("--answer-wav", metavar="PATH", default="kiosk-demo-answer.wav",
                   help="where --virtual-audio writes the recorded answer "
                        "(default: kiosk-demo-answer.wav)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": _run, "check-config": _check_config, "prompts": _prompts,
               "devices": _devices, "test-audio": _test_audio, "test-call": _test_call,
               "demo": _demo}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace):
    path = config.resolve_path(getattr(args, "config", None))
    try:
        return config.load(path)
    except config.ConfigError as exc:
        print(f"voice-kiosk: {len(exc.problems)} problem(s) in the configuration:",
              file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _check_config(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 1
    print(f"# {settings.source}: OK")
    print(config.dump(settings), end="")
    for notice in config.notices(settings):
        print(f"voice-kiosk: note: {notice}", file=sys.stderr)
    return 0


def _prompts(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 1
    from kiosk.audio.prompt_report import report

    text, complete = report(settings, args.export)
    print(text)
    return 0 if complete else 1


def _run(args: argparse.Namespace) -> int:
    from kiosk.service.allocator import tune_allocator

    tune_allocator()  # before the daemon's modules are imported: see its module doc
    from kiosk.daemon import run_daemon

    return run_daemon(config.resolve_path(args.config))


def _devices(args: argparse.Namespace) -> int:
    from kiosk.audio.devices import format_device_table, list_devices

    print(format_device_table(list_devices()))
    return 0


def _test_audio(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 1
    from kiosk.audio.selftest import run_test_audio

    return run_test_audio(settings.audio, sys.stdout, record_s=args.seconds)


def _test_call(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 78  # EX_CONFIG: apart from 1, which says the test call failed
    from kiosk.test_call.client import run_test_call

    return run_test_call(settings, args.pid, args.unit, args.timeout, args.json, sys.stdout,
                         sys.stderr)


def _demo(args: argparse.Namespace) -> int:
    from kiosk.demo import run_demo

    return run_demo(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
