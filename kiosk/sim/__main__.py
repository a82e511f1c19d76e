"""`python -m kiosk.sim`: run the simulator standalone and print how to reach it.

Also the child side of `kiosk.sim.remote.SimulatorProcess` (`--control SOCKET`), and the
simulator of container tests (`--host`, fixed ports, `--api-key-file`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from kiosk.sim.records import Limits
from kiosk.sim.simulator import Simulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kiosk.sim",
                                     description="Loopback voice gateway + realtime service.")
    parser.add_argument("--answer-s", type=float, default=1.5, help="answer length, seconds")
    parser.add_argument("--f0-hz", type=float, default=220.0, help="answer voice pitch, Hz")
    parser.add_argument("--early-form", action="store_true",
                        help="answer with the gateway's early {api_key} form")
    parser.add_argument("--beta-names", action="store_true", help="send beta event names")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--gateway-port", type=int, default=0, help="gateway port (0: free)")
    parser.add_argument("--realtime-port", type=int, default=0,
                        help="realtime port (0: free)")
    parser.add_argument("--api-key-file", type=Path,
                        help="write the printed API key to this file (mode 0600)")
    parser.add_argument("--tls-cert", type=Path, help="certificate chain: serve https/wss")
    parser.add_argument("--tls-key", type=Path, help="private key of --tls-cert")
    parser.add_argument("--control", metavar="SOCKET",
                        help="be driven by kiosk.sim.remote over this UNIX socket "
                             "(authkey in $KIOSK_SIM_AUTHKEY; exits when stdin closes)")
    parser.add_argument("--limits", type=json.loads, default={}, help=argparse.SUPPRESS)
    return parser


def write_secret(path: Path, value: str) -> None:
    """Write `value` to `path`, readable by its owner only (also when it existed before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(value + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        print("--tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    sim = Simulator(host=args.host, gateway_port=args.gateway_port,
                    realtime_port=args.realtime_port, tls=tls, limits=Limits(**args.limits),
                    answer_s=args.answer_s, voice_f0_hz=args.f0_hz,
                    response_form="early" if args.early_form else "current",
                    beta_names=args.beta_names)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with sim:
        if args.control:
            return _controlled(sim, args.control, done)
        key = sim.create_api_key()
        if args.api_key_file:
            write_secret(args.api_key_file, key)
        email, password = sim.create_user()
        print(f"gateway:  {sim.gateway_url}", flush=True)
        print(f"realtime: {sim.realtime_url}", flush=True)
        print(f"api key:  {key}", flush=True)
        print(f"login:    {email} / {password}", flush=True)
        print("Ctrl-C to stop.", flush=True)
        done.wait()
    return 0


def _controlled(sim: Simulator, path: str, done: threading.Event) -> int:
    from kiosk.sim.remote import AUTHKEY_ENV, serve_control

    authkey = bytes.fromhex(os.environ.pop(AUTHKEY_ENV, ""))
    if not authkey:
        print(f"--control needs ${AUTHKEY_ENV}", file=sys.stderr)
        return 2

    def parent_watch() -> None:  # our parent holds stdin open; EOF means it is gone
        while sys.stdin.buffer.read(4096):
            pass
        folder = Path(path).parent
        if folder.name.startswith("kiosk-sim-"):  # SimulatorProcess's: it cannot clean up now
            shutil.rmtree(folder, ignore_errors=True)
        done.set()

    threading.Thread(target=parent_watch, name="sim-parent-watch", daemon=True).start()
    listener = serve_control(sim, path, authkey, done)
    print(json.dumps({"ready": True, "pid": os.getpid(), "gateway_url": sim.gateway_url,
                      "realtime_url": sim.realtime_url}), flush=True)
    try:
        done.wait()
    finally:
        listener.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
