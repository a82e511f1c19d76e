"""The kiosk as a hospital gets it, under a real systemd: a newcomer runs the README's first
command, IT staff install the service, and then the service behaves as the README says.

One container for the whole module, in the order a kiosk lives through: demo, install,
gateway and key, a spoken turn, reloads, an invalid configuration, a hang, the journal.
Tests that need a kiosk in a known state restart the service first, as IT staff would.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from kiosk.sim.voice import utterance
from tests.installed.kiosk_service import (
    BUTTON_PIN,
    CONFIG,
    GATEWAY_UNIT,
    KEY_FILE,
    KIOSK_ID,
    LED_PIN,
    SERVICE,
    SIM_F0_HZ,
    STATES,
    UNIT,
    Service,
    analyse,
    as_pi,
    record_speaker,
    say,
    wait_until,
    when,
)
from tests.installed.rig import REPO, Container, Result

pytestmark = pytest.mark.installed

DEMO_TIMEOUT_S = 900  # a cold run compiles PyAudio and systemd-python inside the container
# The patient's turn: a breath, 1.2 s of speech, then the silence that ends it (server VAD).
PATIENT = utterance(speech_s=1.2, lead_s=0.3, tail_s=1.0)
PRESS_S = 0.2  # a patient's short press: longer than bounce_ms (50), shorter than 1.5 s


def visit_states(states: list[str], *wanted: str) -> bool:
    """Whether `wanted` appear in this order within `states` (others may come between)."""
    it = iter(states)
    return all(state in it for state in wanted)


def documented_visit_field() -> str:
    """The journal field for the current visit, as the README's "Logs (journal)" table
    names it (the row about the current conversation or visit)."""
    table = re.findall(r"(?m)^\| `([A-Z_]+)`\s*\|([^|]*)\|", (REPO / "README.md").read_text())
    fields = [name for name, meaning in table
              if re.search(r"current (conversation|visit)", meaning)]
    assert len(fields) == 1, f"README's journal table: {table}"
    return fields[0]


def timespan_s(value: str) -> float:
    """A systemd time span as `systemctl show` prints it ("5s", "100ms", "1min 30s")."""
    units = {"ms": 0.001, "s": 1.0, "min": 60.0}
    parts = re.findall(r"([\d.]+)(ms|s|min)", value)
    assert parts, f"not a time span: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def fresh_start(service: Service) -> None:
    """Restart the service and wait for READY, so a test starts from a known kiosk."""
    service.restart().check()
    service.wait_active()


def spoken_turn(service: Service, box: Container, after: str) -> list[str]:
    """Press (SIGUSR1), speak once the kiosk listens, wait for the whole answer; the
    states the kiosk went through."""
    service.press()
    service.wait_state("listening", after, timeout_s=20)
    say(box, PATIENT)
    return wait_until(lambda: when(s := service.states(after),
                                   s.count("listening") >= 2 and s[-1] == "listening"), 30,
                      "the answer to be spoken and the kiosk to listen again",
                      interval_s=0.2)


def end_visit(service: Service, after: str) -> None:
    """A press while listening ends the visit."""
    service.press()
    wait_until(lambda: when(s := service.states(after), s[-1:] == ["idle"]), 20,
               "the kiosk to be idle again", interval_s=0.2)


# -- a newcomer ------------------------------------------------------------------------------


@pytest.mark.timeout(DEMO_TIMEOUT_S)
def test_readme_first_command_runs_the_demo(box: Container) -> None:
    """`bash systemd/bootstrap.sh demo` on a fresh system, as pi (sudo for packages): with no
    terminal it runs the scripted visit and prints its timeline."""
    result = as_pi(box, "bash systemd/bootstrap.sh demo", timeout=DEMO_TIMEOUT_S - 60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    timeline = re.findall(r"(?m)^\s+\d+ ms\s+(\w+)\s+\(\+\d+ ms\)", result.stdout)
    assert visit_states(timeline, "connecting", "listening", "thinking", "speaking"), output
    assert timeline[-1] == "idle", output  # it began idle and is idle again


# -- IT staff --------------------------------------------------------------------------------


def test_install_starts_the_service_with_a_state_word(installed: Result, box: Container,
                                                      service: Service) -> None:
    """`sudo bash systemd/install.sh` exits 0 and leaves the unit active (Type=notify: READY
    came) with a STATUS= that starts with one of the six states."""
    assert box.run(["systemctl", "is-active", UNIT]).stdout.strip() == "active"
    assert service.state_word() in STATES, service.status_text()
    assert box.run(["systemctl", "is-enabled", UNIT]).stdout.strip() == "enabled"


def test_key_reaches_the_kiosk_only_through_loadcredential(gateway: dict[str, str],
                                                          box: Container,
                                                          service: Service) -> None:
    """The key file stays root-only; systemd hands the service a private copy in
    $CREDENTIALS_DIRECTORY, which is what the kiosk reads (a visit gets a session)."""
    dropin = box.read(f"/etc/systemd/system/{SERVICE}.d/credentials.conf")
    assert f"LoadCredential=gateway-api-key:{KEY_FILE}" in dropin
    denied = box.run(["setpriv", "--reuid=voice-kiosk", "--regid=voice-kiosk",
                      "--init-groups", "cat", KEY_FILE])
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    pid = service.show("MainPID")["MainPID"]
    environ = box.read(f"/proc/{pid}/environ").split("\0")
    assert "CREDENTIALS_DIRECTORY=/run/credentials/voice-kiosk.service" in environ
    copy = "/run/credentials/voice-kiosk.service/gateway-api-key"
    assert box.read(copy).strip() == gateway["api_key"]
    owner = box.run(["stat", "-c", "%U %a", copy], check=True).stdout.split()
    assert owner == ["voice-kiosk", "400"]
    after = service.cursor()
    service.press()
    service.wait_state("listening", after, timeout_s=20)  # the gateway accepted the key
    end_visit(service, after)
    # Never logged by the kiosk (the simulated gateway prints its key: it is a dev tool).
    logged = box.run(["journalctl", "-u", UNIT, "--no-pager", "-o", "verbose"],
                     timeout=60).stdout
    assert gateway["api_key"] not in logged


@pytest.mark.timeout(180)
def test_remote_press_gives_a_spoken_answer_that_is_heard(gateway: dict[str, str],
                                                          box: Container,
                                                          service: Service) -> None:
    """`systemctl kill -s USR1` while a patient speaks into the microphone: STATUS goes
    through listening, thinking and speaking, and the answer comes out of the speaker."""
    fresh_start(service)
    seen: list[str] = []
    stop = threading.Event()

    def watch_status() -> None:  # what `systemctl status` shows, polled
        while not stop.is_set():
            word = service.state_word()
            if word and (not seen or seen[-1] != word):
                seen.append(word)
            stop.wait(0.05)

    watcher = threading.Thread(target=watch_status, daemon=True)
    after = service.cursor()
    with record_speaker(box) as recording:
        watcher.start()
        try:
            states = spoken_turn(service, box, after)
        finally:
            stop.set()
            watcher.join(10)
    assert visit_states(states, "connecting", "listening", "thinking", "speaking",
                        "listening"), states
    assert visit_states(seen, "listening", "speaking"), seen  # thinking may last 10 ms
    heard = analyse(recording[0], SIM_F0_HZ)
    assert heard.peak_dbfs > -30, heard  # well above the null sink's digital silence
    assert heard.tone_s >= 1.0, heard  # the simulator answers with 1.5 s at 220 Hz
    end_visit(service, after)


@pytest.mark.timeout(180)
def test_no_system_call_refused_that_matters(gateway: dict[str, str], box: Container,
                                             service: Service) -> None:
    """strace on the container's PID 1 (following forks) while the service starts, a visit
    runs and the configuration is reloaded: the kiosk process makes no call its unit's
    SystemCallFilter refuses (EPERM, SystemCallErrorNumber=) beyond the listed harmless
    ones, is never killed by SIGSYS, and logs no EPERM."""
    allowed = set(service.show("SystemCallFilter")["SystemCallFilter"].split())
    assert "read" in allowed and "mount" not in allowed, "unexpected SystemCallFilter"
    # Harmless refusals, and why: they only tune memory placement or scheduling.
    harmless = {
        "mbind": "NUMA placement hint for a large allocation (a Pi has one node)",
        "set_mempolicy": "NUMA placement hint (a Pi has one node)",
        "sched_setscheduler": "a library resetting a thread to SCHED_OTHER, which it is",
    }
    box.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "strace"],
            env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=120, check=True)
    trace = "/var/tmp/kiosk.strace"
    pidfile = "/run/voice-kiosk-rig/strace.pid"
    after = service.cursor()
    tracer = box.popen(["sh", "-c", f"echo $$ > {pidfile}; exec strace -f -qq -Z -Y "
                        f"-o {trace} -p 1"])
    try:
        wait_until(lambda: box.exists(trace), 15, "strace to attach")
        fresh_start(service)
        spoken_turn(service, box, after)
        end_visit(service, after)
        before = service.cursor()
        service.reload()
        service.wait_message(r"configuration reloaded|reload rejected", before)
    finally:
        box.run(["sh", "-c", f'kill -INT "$(cat {pidfile})"'])
        tracer.wait(timeout=30)
    lines = [line for line in box.read(trace).splitlines() if "<voice-kiosk>" in line]
    assert len(lines) > 20, "strace saw nothing of the kiosk"
    refused = []
    for line in lines:
        call = re.match(r"\d+<voice-kiosk>\s+(\w+)\(.*= -1 (EPERM|EACCES)", line)
        if call and call.group(1) not in allowed and call.group(1) not in harmless:
            refused.append(line[:200])
    assert not refused, "\n".join(refused)
    assert not [line for line in lines if "SIGSYS" in line]
    journal = box.run(["journalctl", "-u", UNIT, "--no-pager"], timeout=60).stdout
    for sign in ("SIGSYS", "status=31/SYS", "Operation not permitted", "EPERM"):
        assert sign not in journal, [line for line in journal.splitlines() if sign in line]


@pytest.mark.timeout(180)
def test_reload_applies_led_pattern_and_the_button_still_works(gateway: dict[str, str],
                                                               service: Service) -> None:
    """With the example's `gpio.pin_factory: auto` (gpiozero resolves the test factory,
    which like lgpio's is dead once closed): a new idle pattern applies on `systemctl
    reload`, and the button then starts a visit."""
    fresh_start(service)

    def led() -> str:
        return f"{service.pins(f'get {LED_PIN}')}, changes in the last 2 s: " \
               f"{service.pin_history(LED_PIN, 2.0)}, STATUS {service.status_text()!r}"

    wait_until(lambda: service.pin_value(LED_PIN) == 0.0, 10,
               "the single LED to be off in idle (the default `dim` pattern)", show=led)
    pid = service.show("MainPID")["MainPID"]
    after = service.cursor()
    service.edit_config(gpio={"led_patterns": {"idle": {"mode": "on"}}})
    service.reload()
    service.wait_message(r"configuration reloaded", after)
    assert service.show("MainPID")["MainPID"] == pid  # a reload, not a restart
    wait_until(lambda: service.pin_value(LED_PIN) == 1.0, 10,
               "the LED to light steadily in idle after the reload", show=led)
    wait_until(lambda: service.pin_value(LED_PIN) == 1.0
               and not service.pin_history(LED_PIN, 1.0), 10, "the LED to stay on (1 s)",
               show=led)
    # The patient presses the real button: the pin is low while it is held (pull-up
    # wiring). A short press counts when the button is let go.
    pressed = service.cursor()
    assert service.pins(f"drive {BUTTON_PIN} low") == "ok"
    time.sleep(PRESS_S)  # how long the button is held: the stimulus, not a wait
    assert service.pins(f"drive {BUTTON_PIN} high") == "ok"
    states = service.wait_state("listening", pressed, timeout_s=20)
    assert states[:2] == ["connecting", "listening"], states
    assert service.state_word() in ("connecting", "listening", "thinking")
    end_visit(service, pressed)


def test_broken_config_is_rejected_on_reload(gateway: dict[str, str], service: Service) -> None:
    """A reload with broken YAML keeps the kiosk running on the previous configuration."""
    fresh_start(service)
    good = service.box.read(CONFIG)
    pid = service.show("MainPID")["MainPID"]
    led = service.pin_value(LED_PIN)
    after = service.cursor()
    try:
        service.write_config(good + "\ngpio: {led_kind: [single\n")
        service.reload()
        service.wait_message(r"reload rejected", after)
        props = service.show("ActiveState", "MainPID", "StatusText")
        assert props["ActiveState"] == "active" and props["MainPID"] == pid, props
        assert "reload rejected" in props["StatusText"], props
        assert f"({KIOSK_ID})" in props["StatusText"], props
        assert service.pin_value(LED_PIN) == led
        service.press()  # the previous gateway settings still work
        service.wait_state("listening", after, timeout_s=20)
        end_visit(service, after)
    finally:
        service.write_config(good)
    fresh_start(service)


def test_journal_entries_carry_the_kiosk_fields(gateway: dict[str, str], box: Container,
                                                service: Service) -> None:
    """`journalctl -u voice-kiosk -o json`: every kiosk line names the kiosk and its state,
    a visit's lines the visit's id (the field the README documents), an error's its
    ERROR_KIND (here: gateway unreachable); the README's `journalctl` filters find them."""
    # A press keeps retrying an unreachable gateway for gateway.give_up_s (60 s) before it
    # shows `error`: a site may shorten that, and so does this test.
    service.edit_config(gateway={"give_up_s": 2.0})
    fresh_start(service)
    after = service.cursor()
    service.press()
    service.wait_state("listening", after, timeout_s=20)
    end_visit(service, after)
    box.run(["systemctl", "stop", GATEWAY_UNIT], check=True)  # the gateway goes down
    down = service.cursor()
    service.press()
    service.wait_state("error", down, timeout_s=30)
    entries = [e for e in service.entries(after) if e.from_kiosk]
    assert entries
    for entry in entries:
        assert entry.fields.get("KIOSK_ID") == KIOSK_ID, entry.fields
        assert entry.fields.get("KIOSK_STATE") in (*STATES, "stopping"), entry.fields
    errors = [e for e in entries if e.fields.get("ERROR_KIND")]
    assert any(e.fields["ERROR_KIND"] == "network" for e in errors), \
        [e.message for e in entries]
    found = box.run(["journalctl", "-u", UNIT, "ERROR_KIND=network", "-o", "cat",
                     "--no-pager"], check=True).stdout
    assert found.strip()
    # The per-visit field, by the name the README's journal table gives it.
    field = documented_visit_field()
    visit = [e for e in entries if e.state_change in ("listening", "thinking", "speaking")]
    assert visit and all(e.fields.get(field) for e in visit), \
        f"README documents {field}; a visit's lines carry: {sorted(visit[0].fields)}"
    one = box.run(["journalctl", "-u", UNIT, f"{field}={visit[0].fields[field]}", "-o", "cat",
                   "--no-pager"], check=True).stdout
    assert "state listening" in one, one


def test_security_exposure_is_at_most_2_5(installed: Result, box: Container) -> None:
    """`systemd-analyze security voice-kiosk` on the running system: the README says about
    1.5 ("OK"); the issue's bar is 2.5."""
    out = box.run(["systemd-analyze", "security", "--no-pager", UNIT], timeout=60).stdout
    match = re.search(r"Overall exposure level for voice-kiosk\.service: ([\d.]+)", out)
    assert match, out[-2000:]
    assert float(match.group(1)) <= 2.5, out[-2000:]


def test_invalid_config_at_start_exits_78_without_a_restart_loop(installed: Result,
                                                                 service: Service) -> None:
    """An invalid value at start: exit status 78 (EX_CONFIG), the problem with file, line
    and key in the journal, and no restarts (RestartPreventExitStatus=78). Fixed and
    restarted, it runs again."""
    good = service.box.read(CONFIG)
    restarts = int(service.show("NRestarts")["NRestarts"])
    after = service.cursor()
    try:
        service.edit_config(audio={"frame_ms": 500})
        assert service.restart().returncode != 0
        props = service.wait_show("the unit to fail", lambda p: p["ActiveState"] == "failed",
                                  "ActiveState", "ExecMainStatus", "RestartUSec")
        assert props["ExecMainStatus"] == "78", props
        service.wait_message(rf"{CONFIG}:\d+: audio\.frame_ms: 500", after)
        # A restart would come RestartSec after the exit: watch until well past it.
        deadline = time.monotonic() + timespan_s(props["RestartUSec"]) + 3
        while time.monotonic() < deadline:
            stayed = service.show("ActiveState", "NRestarts")
            assert stayed["ActiveState"] == "failed", stayed
            time.sleep(0.5)
        assert int(stayed["NRestarts"]) == restarts, stayed
    finally:
        service.write_config(good)
    fresh_start(service)


WATCHDOG_DROPIN = f"/etc/systemd/system/{SERVICE}.d/rig-watchdog.conf"


@pytest.mark.timeout(180)
def test_hung_daemon_is_killed_by_the_watchdog_and_restarted(installed: Result,
                                                             box: Container,
                                                             service: Service) -> None:
    """SIGSTOP the daemon: its watchdog pings stop, systemd kills it (Result: watchdog) and
    restarts it. The unit's WatchdogSec=30 is lowered to 4 s by a drop-in here only to keep
    the test tier's time budget; systemd's mechanism and the daemon's pings (every
    WatchdogSec/2) are the same."""
    box.write(WATCHDOG_DROPIN, "# Test only: a shorter watchdog.\n[Service]\nWatchdogSec=4\n")
    try:
        box.run(["systemctl", "daemon-reload"], check=True)
        fresh_start(service)
        before = service.show("MainPID", "NRestarts")
        after = service.cursor()
        box.run(["kill", "-STOP", before["MainPID"]], check=True)
        service.wait_message(r"Watchdog timeout", after, timeout_s=30)
        service.wait_message(r"Failed with result 'watchdog'", after, timeout_s=40)
        now = service.wait_show(
            "the service to be restarted",
            lambda p: p["ActiveState"] == "active" and p["MainPID"] not in (
                "0", before["MainPID"]),
            "ActiveState", "MainPID", "NRestarts", "StatusText", timeout_s=40)
        assert int(now["NRestarts"]) == int(before["NRestarts"]) + 1, now
        assert now["StatusText"].split()[0] in STATES, now
    finally:
        box.run(["rm", "-f", WATCHDOG_DROPIN])
        box.run(["systemctl", "daemon-reload"])
    fresh_start(service)
