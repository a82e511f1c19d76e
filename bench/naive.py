"""The naive reference programs the kiosk is compared with, each run as its own process.

They do what a first working Python client does, with the same libraries a Python developer
reaches for, and nothing more: no LED, no cues, no state machine, no reconnects, no
watchdog. The benchmark measures them from /proc exactly like the daemon, on the same
virtual devices and against the same simulator.

    python bench/naive.py client --gateway URL --key-file F --device kiosk_mic
        PyAudio blocking reads of 20 ms at 24 kHz -> base64 -> json.dumps -> websocket-client
        `input_audio_buffer.append`, forever (the benchmark ends it by PID).
    python bench/naive.py player --gateway URL --key-file F --device kiosk_speaker
        on a line "go" on stdin: `response.create`, then for each answer delta json.loads ->
        base64 decode -> blocking `stream.write`; at `response.done` drains the stream and
        prints "done SAMPLES", then waits for stdin to close.

Both get a grant from the gateway with the same API key as the kiosk and connect to the
realtime URL it names, and print "ready" once the stream is open and the link is up.

    python bench/naive.py clicks --device kiosk_speaker --block 480 --count 6
        not a baseline: the speaker path's own latency. A plain PortAudio callback stream of
        `--block` frames hands a click to PortAudio every 0.5 s; the benchmark finds the
        clicks in its recording of the speaker. Prints the monotonic time of each such
        callback, as JSON, after the last one.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.parse
import urllib.request
from typing import Any

import pyaudio
import websocket

RATE = 24000
FRAME = RATE // 50  # 20 ms
MODEL = "gpt-realtime"  # what the kiosk's default config asks for (realtime.model)


def connect(gateway: str, key_file: str) -> websocket.WebSocket:
    """A grant from the gateway, then the realtime WebSocket it names."""
    with open(key_file) as f:
        key = f.read().strip()
    request = urllib.request.Request(
        gateway.rstrip("/") + "/api/voice/realtime-session", data=b"{}", method="POST",
        headers={"X-API-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        grant = json.load(answer)
    token = grant["auth"]["token"] if "auth" in grant else grant["api_key"]
    parts = urllib.parse.urlsplit(grant["url"])
    url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode({"model": MODEL})))
    return websocket.create_connection(url, header=[f"Authorization: Bearer {token}"],
                                       timeout=10)


def device_index(pa: pyaudio.PyAudio, name: str, kind: str) -> int:
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if name in str(info["name"]) and int(info[f"max{kind}Channels"]) > 0:
            return i
    raise SystemExit(f"no {kind.lower()} device named {name!r}")


def client(args: argparse.Namespace) -> None:
    pa = pyaudio.PyAudio()
    stream = pa.open(format=pyaudio.paInt16, channels=1, rate=RATE, input=True,
                     input_device_index=device_index(pa, args.device, "Input"),
                     frames_per_buffer=FRAME)
    ws = connect(args.gateway, args.key_file)
    print("ready", flush=True)
    while True:
        pcm = stream.read(FRAME, exception_on_overflow=False)
        ws.send(json.dumps({"type": "input_audio_buffer.append",
                            "audio": base64.b64encode(pcm).decode("ascii")}))


def player(args: argparse.Namespace) -> None:
    pa = pyaudio.PyAudio()
    stream = pa.open(format=pyaudio.paInt16, channels=1, rate=RATE, output=True,
                     output_device_index=device_index(pa, args.device, "Output"))
    ws = connect(args.gateway, args.key_file)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    ws.send(json.dumps({"type": "response.create"}))
    samples = 0
    while True:
        event: dict[str, Any] = json.loads(ws.recv())
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            if not samples:
                print("started", flush=True)
            pcm = base64.b64decode(event["delta"])
            stream.write(pcm)
            samples += len(pcm) // 2
        elif kind == "response.done":
            break
    stream.stop_stream()  # returns once what was written has played
    print(f"done {samples}", flush=True)
    sys.stdin.read()  # stay measurable until the benchmark has read /proc


def clicks(args: argparse.Namespace) -> None:
    import threading
    import time

    pa = pyaudio.PyAudio()
    block, times = args.block, list[float]()
    count = [0]
    done = threading.Event()
    loud = (10000).to_bytes(2, "little", signed=True) * block

    def callback(_in: Any, frames: int, info: Any, status: int) -> tuple[bytes, int]:
        count[0] += 1
        if count[0] % 25 == 0 and len(times) < args.count:
            times.append(time.monotonic())
            if len(times) == args.count:
                done.set()
            return loud[:2 * frames], pyaudio.paContinue
        return bytes(2 * frames), pyaudio.paContinue

    stream = pa.open(format=pyaudio.paInt16, channels=1, rate=RATE, output=True,
                     output_device_index=device_index(pa, args.device, "Output"),
                     frames_per_buffer=block, stream_callback=callback)
    done.wait(30)
    stream.close()
    print(json.dumps(times), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("client", "player", "clicks"))
    parser.add_argument("--gateway")
    parser.add_argument("--key-file")
    parser.add_argument("--device", required=True)
    parser.add_argument("--block", type=int, default=FRAME, help="clicks: frames per buffer")
    parser.add_argument("--count", type=int, default=6, help="clicks: how many")
    args = parser.parse_args()
    {"client": client, "player": player, "clicks": clicks}[args.mode](args)


if __name__ == "__main__":
    main()
