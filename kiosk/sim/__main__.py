"""`python -m kiosk.sim`: run the simulator standalone and print how to reach it."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading

from kiosk.sim.simulator import Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk.sim",
                                     description="Loopback voice gateway + realtime service.")
    parser.add_argument("--answer-s", type=float, default=1.5, help="answer length, seconds")
    parser.add_argument("--f0-hz", type=float, default=220.0, help="answer voice pitch, Hz")
    parser.add_argument("--early-form", action="store_true",
                        help="answer with the gateway's early {api_key} form")
    parser.add_argument("--beta-names", action="store_true", help="send beta event names")
    parser.add_argument("--info-file", metavar="PATH",
                        help="also write the URLs and the API key as JSON to PATH (mode "
                             "0600), once both servers listen: for a script or a test that "
                             "starts the simulator in the background")
    args = parser.parse_args(argv)
    sim = Simulator(answer_s=args.answer_s, voice_f0_hz=args.f0_hz,
                    response_form="early" if args.early_form else "current",
                    beta_names=args.beta_names)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with sim:
        email, password = sim.create_user()
        api_key = sim.create_api_key()
        if args.info_file:
            _write_info(args.info_file, {"gateway_url": sim.gateway_url,
                                         "realtime_url": sim.realtime_url, "api_key": api_key,
                                         "email": email, "password": password})
        print(f"gateway:  {sim.gateway_url}", flush=True)
        print(f"realtime: {sim.realtime_url}", flush=True)
        print(f"api key:  {api_key}", flush=True)
        print(f"login:    {email} / {password}", flush=True)
        print("Ctrl-C to stop.", flush=True)
        done.wait()
    return 0


def _write_info(path: str, info: dict[str, str]) -> None:
    """Atomically (a reader never sees half a file), readable by the owner only (a key)."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(info, out)
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
