"""What a process costs, read from /proc the way `top` and systemd's accounting do.

The benchmark measures processes from outside, so the figures are what the machine pays:
every thread of the process (Python's, PortAudio's, the PulseAudio client library's), not
only the functions someone thought to time.

* CPU: utime + stime of ``/proc/PID/stat``, which sums every thread of the process, the
  ones that already exited included (a visit's short-lived gateway thread still counts).
* Wake-ups: voluntary + involuntary context switches summed over ``/proc/PID/task/*/status``
  (``/proc/PID/status`` only counts the main thread). A thread that sleeps and wakes 50
  times a second costs 50 switches a second even when it does nothing; on a Pi each one
  also keeps the core from its deeper idle states. Threads that exited during a window are
  not in this sum (the kernel keeps no per-process total of their switches).
* Memory: VmRSS and VmHWM of ``/proc/PID/status``; threads: its ``Threads:`` line.

Per-thread figures (``/proc/PID/task/TID/{stat,status,comm,wchan}``) say where the cost is.
Python 3.11 does not give its threads kernel names, so a Python thread shows the process's
name. When py-spy is installed, `python_thread_names` asks it for the Python names
(``py-spy dump`` stops the process for a moment: only between measurements); otherwise
`describe_thread` says what the kernel knows (what the thread waits in), which still tells
the PortAudio and PulseAudio threads apart from the Python ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
# libpulse's client thread (one per stream; PortAudio -> ALSA's pulse plugin -> the rig's
# PulseAudio). A kiosk whose ALSA device is the sound card itself has no such thread.
PULSE_CLIENT_THREAD = "threaded-ml"


@dataclass(frozen=True)
class ThreadSample:
    tid: int
    comm: str
    cpu_ticks: int
    switches: int
    wchan: str


@dataclass(frozen=True)
class ProcSample:
    """One reading of a process's counters, with the monotonic time it was taken."""

    pid: int
    at: float
    cpu_ticks: int
    rss_kib: int
    hwm_kib: int
    threads: int
    per_thread: dict[int, ThreadSample] = field(default_factory=dict)

    @property
    def switches(self) -> int:
        return sum(t.switches for t in self.per_thread.values())


@dataclass(frozen=True)
class Window:
    """What a process spent between two samples."""

    start: ProcSample
    end: ProcSample

    @property
    def wall_s(self) -> float:
        return self.end.at - self.start.at

    @property
    def cpu_s(self) -> float:
        return (self.end.cpu_ticks - self.start.cpu_ticks) / CLK_TCK

    @property
    def switches(self) -> int:
        """Context switches of the threads alive at the end (new threads count from birth)."""
        before = self.start.per_thread
        return sum(t.switches - (before[tid].switches if tid in before else 0)
                   for tid, t in self.end.per_thread.items())

    def per_second(self, value: float, seconds: float | None = None) -> float:
        return value / (seconds if seconds is not None else self.wall_s)

    def cpu_s_named(self, comm: str) -> float:
        """CPU-s of the threads called `comm` (kernel name) alive at the end of the window."""
        return sum(cpu for t, cpu, _ in self.threads() if t.comm == comm)

    def threads(self) -> list[tuple[ThreadSample, float, int]]:
        """(thread, CPU-s, switches) per thread alive at the end, most wake-ups first."""
        before = self.start.per_thread
        rows = []
        for tid, t in self.end.per_thread.items():
            b = before.get(tid)
            cpu = (t.cpu_ticks - (b.cpu_ticks if b else 0)) / CLK_TCK
            rows.append((t, cpu, t.switches - (b.switches if b else 0)))
        return sorted(rows, key=lambda r: (-r[2], -r[1]))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _status_fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _stat_ticks(text: str) -> int:
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = text.rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # utime, stime (fields 14 and 15)


def sample(pid: int, threads: bool = True) -> ProcSample:
    """Read the counters of process `pid` now. Raises ProcessLookupError once it is gone."""
    at = time.monotonic()
    try:
        ticks = _stat_ticks(_read(f"/proc/{pid}/stat"))
        status = _status_fields(_read(f"/proc/{pid}/status"))
    except FileNotFoundError as exc:
        raise ProcessLookupError(f"process {pid} has exited") from exc
    per: dict[int, ThreadSample] = {}
    if threads:
        for name in os.listdir(f"/proc/{pid}/task"):
            base = f"/proc/{pid}/task/{name}"
            try:
                t_status = _status_fields(_read(f"{base}/status"))
                per[int(name)] = ThreadSample(
                    int(name), _read(f"{base}/comm").strip(), _stat_ticks(_read(f"{base}/stat")),
                    int(t_status["voluntary_ctxt_switches"])
                    + int(t_status["nonvoluntary_ctxt_switches"]),
                    _read(f"{base}/wchan").strip())
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended while we read it
    return ProcSample(pid, at, ticks, int(status["VmRSS"].split()[0]),
                      int(status["VmHWM"].split()[0]), int(status["Threads"]), per)


def python_thread_names(pid: int, py_spy: str | None) -> dict[int, str]:
    """{kernel thread id: Python thread name (and what it runs)} from `py-spy dump`, or {}
    without py-spy or when it fails (it needs ptrace rights on the process)."""
    if not py_spy:
        return {}
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError, TypeError):
        out = subprocess.run([py_spy, "dump", "--pid", str(pid), "--json"],
                             capture_output=True, text=True, timeout=20, check=True)
        names = {}
        for thread in json.loads(out.stdout):
            frames = thread.get("frames") or [{}]
            names[int(thread["os_thread_id"])] = (f"{thread.get('thread_name')} "
                                                  f"(in {frames[0].get('name', '?')})")
        return names
    return {}


def describe_thread(pid: int, t: ThreadSample, process_name: str,
                    names: dict[int, str] | None = None) -> str:
    """A readable name for a thread from what /proc (and py-spy, if given) shows."""
    if names and t.tid in names:
        return names[t.tid]
    if t.tid == pid:
        return "main thread"
    if t.comm == PULSE_CLIENT_THREAD:
        return "PulseAudio client mainloop (one per stream)"
    if t.comm != process_name[:15]:
        return t.comm
    if names:
        return "native thread (PortAudio's stream thread when it polls)"
    if t.wchan.startswith("poll_schedule"):
        return "polls fds: PortAudio stream thread, or an asyncio/socket loop"
    if t.wchan.startswith("do_epoll"):
        return "epoll: asyncio loop"
    if t.wchan.startswith("futex"):
        return "waits on a lock/condition/timer (Python thread)"
    if "pipe" in t.wchan:
        return "reads a pipe"
    return t.wchan or "running"
