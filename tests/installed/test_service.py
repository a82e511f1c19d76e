"""The kiosk as a hospital gets it, under a real systemd: a newcomer runs the README's first
command, IT staff install the service, and then the service behaves as the README says.

One container for the whole module, in the order a kiosk lives through: demo, install,
gateway and key, a spoken turn, reloads, an invalid configuration, a hang, the journal.
Tests that need a kiosk in a known state restart the service first, as IT staff would.
"""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiosk.service.notify import STATUS_MAX_CHARS
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
    VENV_PYTHON,
    Entry,
    Service,
    analyse,
    as_pi,
    install_key,
    record_speaker,
    say,
    start_gateway,
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
    """Restart the service and wait for READY, so a test starts from a known kiosk.

    This module restarts the service more often than its StartLimitBurst= allows within
    StartLimitIntervalSec= (meant for a crash loop): clearing the count first, as an
    administrator would after deliberate restarts, keeps the limit out of the tests."""
    service.systemctl("reset-failed", UNIT).check()
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


def test_the_service_runs_without_docstrings_from_modules_compiled_at_install(
        installed: Result, box: Container, service: Service) -> None:
    """The unit's PYTHONOPTIMIZE=2 reaches the daemon, and install.sh compiled the kiosk and
    its libraries for it (the venv is read-only to the service: nothing is compiled at a
    start, in memory, again and again)."""
    pid = service.show("MainPID")["MainPID"]
    environ = box.read(f"/proc/{pid}/environ").split("\0")
    assert "PYTHONOPTIMIZE=2" in environ
    venv_lib = VENV_PYTHON.replace("/bin/python", "/lib")
    compiled = box.run(["find", venv_lib, "-name", "*.opt-2.pyc"],
                       check=True).stdout.split()
    for module in ("kiosk/__pycache__/daemon", "numpy/__pycache__/__init__",
                   "gpiozero/__pycache__/__init__"):
        assert any(f"/{module}.cpython-311.opt-2.pyc" in path for path in compiled), module
    # As the service's user: the module comes from that file, without its docstring.
    script = ("import os, sys, kiosk.daemon as d; c = d.__spec__.cached; "
              "print(d.__doc__, sys.flags.optimize, c.endswith('.opt-2.pyc'), os.path.exists(c))")
    ran = box.run(["setpriv", "--reuid=voice-kiosk", "--regid=voice-kiosk", "--init-groups",
                   "env", "PYTHONOPTIMIZE=2", VENV_PYTHON, "-c", script], check=True)
    assert ran.stdout.split() == ["None", "2", "True", "True"], ran.stdout


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


# -- the remote test call, from IT's desk ------------------------------------------------------

TEXTFILE = "/var/lib/prometheus/node-exporter/voice-kiosk.prom"  # the README's Metrics path
RESULT_FILE = "/var/lib/voice-kiosk/test-call.json"  # test_call.result_file's default
TEST_CALL_WAIT_S = 120  # the command's own limit is test_call.timeout_s (30) + 15 s


def ask_test_call(box: Container, *args: str) -> tuple[Result, float]:
    """The README's `sudo voice-kiosk test-call`, typed by pi; the result and how long the
    command took (as seen from outside the container)."""
    started = time.monotonic()
    result = as_pi(box, " ".join(["sudo", "voice-kiosk", "test-call", *args]),
                   timeout=TEST_CALL_WAIT_S)
    return result, time.monotonic() - started


def read_call_metrics(box: Container) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The test-call samples of the kiosk's textfile, as Prometheus parses it: (name,
    labels without `kiosk`) -> value; every sample's `kiosk` label is this kiosk's id."""
    if not box.exists(TEXTFILE):
        return {}
    out = {}
    for family in text_string_to_metric_families(box.read(TEXTFILE)):
        for sample in family.samples:
            if sample.name.startswith("voice_kiosk_test_call"):
                assert sample.labels.get("kiosk") == KIOSK_ID, sample
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "kiosk"))
                out[(sample.name, labels)] = sample.value
    return out


def call_entry(service: Service, call_id: str, after: str) -> Entry:
    """The kiosk's one journal line for test call `call_id` (the one with its result)."""
    return service.wait_entry(lambda e: e.from_kiosk
                              and e.fields.get("TEST_CALL_ID") == call_id, after, 20,
                              f"the journal line of test call {call_id}")


@pytest.mark.timeout(300)
def test_test_call_passes_through_the_gateway(gateway: dict[str, str], box: Container,
                                              service: Service) -> None:
    """`sudo voice-kiosk test-call`, as the README's "Remote test call" tells IT staff, on
    the installed service with the metrics textfile set as the README's Metrics says: exit 0
    and one line with the timings; the same line in the journal with the TEST_CALL_ fields,
    in STATUS= (the kiosk stays idle all along) and in the metrics. Then once more through
    the signal (`systemctl kill -s USR2`), which the README says is the same."""
    reloaded = service.cursor()
    service.edit_config(metrics={"textfile": TEXTFILE, "interval_s": 1.0})
    service.reload()  # as the README's Metrics says
    service.wait_message(r"configuration reloaded", reloaded)
    wait_until(lambda: box.exists(TEXTFILE), 20, f"the metrics file {TEXTFILE}")
    before = read_call_metrics(box)
    ok_key = ("voice_kiosk_test_calls_total", (("result", "ok"),))
    failed_key = ("voice_kiosk_test_calls_total", (("result", "failed"),))
    after = service.cursor()

    done, took = ask_test_call(box, "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)
    print(f"\n[test call in the container] {record['summary']} (command: {took:.2f} s)")
    assert record["result"] == "ok" and record["reason"] == "", record
    assert record["kiosk"] == KIOSK_ID, record
    # Spoken in words: espeak-ng (installed with the kiosk's packages) runs under the unit.
    assert record["voice"] == "espeak-ng", record
    t = record["timings_s"]
    assert 0 < t["grant"] <= t["link"] < t["first_answer_audio"] < t["total"] < 20, t
    assert record["answer_ms"] == pytest.approx(1500, rel=0.1)  # the simulator's answer
    assert took < t["total"] + 10, (took, t)
    # The journal line, with the fields the README names, found by the README's filter.
    entry = call_entry(service, record["id"], after)
    assert entry.message == record["summary"], entry.message
    assert entry.fields["TEST_CALL_RESULT"] == "ok"
    assert entry.fields.get("PRIORITY") == "6", entry.fields  # info: nothing to act on
    for step in ("grant", "link", "first_answer_audio", "total"):
        assert float(entry.fields[f"TEST_CALL_{step.upper()}_S"]) == pytest.approx(
            t[step], abs=0.002)
    found = box.run(["journalctl", "-u", UNIT, "-g", "test call", "-o", "cat", "--no-pager"],
                    check=True).stdout
    assert record["summary"] in found, found
    # STATUS=: the kiosk is idle, with the test call's result, until the next change.
    wait_until(lambda: service.status_text() == f"idle ({KIOSK_ID}): {record['summary']}"
               [:STATUS_MAX_CHARS],
               10, "STATUS= with the test call's result", show=service.status_text)
    assert set(service.states(after)) <= {"idle"}, service.states(after)  # nobody noticed
    # The result file the command read: the service's state directory, root's to read.
    assert box.run(["stat", "-c", "%U %a", RESULT_FILE], check=True).stdout.split() == \
        ["voice-kiosk", "644"]
    # The metrics, once the textfile has been rewritten.
    samples = wait_until(lambda: when(m := read_call_metrics(box), m.get(
        ("voice_kiosk_test_call_last_timestamp_seconds", ())) == pytest.approx(
        record["finished_at"], abs=0.01)), 20,
        f"the test call's metrics in {TEXTFILE}", show=lambda: read_call_metrics(box))
    assert samples[("voice_kiosk_test_call_last_success", ())] == 1
    assert samples[ok_key] == before.get(ok_key, 0) + 1
    assert samples.get(failed_key, 0) == before.get(failed_key, 0)
    assert samples[("voice_kiosk_test_call_last_timestamp_seconds", ())] == pytest.approx(
        record["finished_at"], abs=0.01)
    for step in ("grant", "link", "first_answer_audio", "total"):
        assert samples[("voice_kiosk_test_call_last_duration_seconds", (("step", step),))] \
            == pytest.approx(t[step], abs=0.002)

    # The same through the signal, for a script with no `voice-kiosk` command at hand.
    again = service.cursor()
    service.systemctl("kill", "-s", "USR2", UNIT).check()
    entry = service.wait_entry(lambda e: e.from_kiosk and "TEST_CALL_RESULT" in e.fields,
                               again, 60, "a test call's result in the journal")
    print(f"[test call in the container, by SIGUSR2] {entry.message}")
    assert entry.fields["TEST_CALL_RESULT"] == "ok", entry.message
    assert entry.fields["TEST_CALL_ID"] != record["id"]
    wait_until(lambda: read_call_metrics(box).get(ok_key) == before.get(ok_key, 0) + 2, 20,
        "the second test call in the metrics", show=lambda: read_call_metrics(box))


@pytest.mark.timeout(300)
def test_test_call_fails_clearly_with_the_gateway_down(gateway: dict[str, str],
                                                       box: Container,
                                                       service: Service) -> None:
    """The gateway stops: `sudo voice-kiosk test-call` exits 1 with one line that says it
    failed at the network step and names the gateway's URL; a warning in the journal with
    TEST_CALL_RESULT=failed, STATUS= and the metrics say the same, and the kiosk stays idle
    (no patient met it). The gateway comes back afterwards, with a new key, as a rotated key
    would be installed (the README's steps, then a restart)."""
    wait_until(lambda: box.exists(TEXTFILE), 20, f"the metrics file {TEXTFILE}")
    before = read_call_metrics(box)
    failed_key = ("voice_kiosk_test_calls_total", (("result", "failed"),))
    ok_key = ("voice_kiosk_test_calls_total", (("result", "ok"),))
    box.run(["systemctl", "stop", GATEWAY_UNIT], check=True)
    try:
        after = service.cursor()
        timeout_s = float(service.config().get("test_call", {}).get("timeout_s", 30))

        done, took = ask_test_call(box)

        line = done.stdout.strip()
        print(f"\n[test call in the container, gateway down] {line} (command: {took:.2f} s)")
        assert done.returncode == 1, done.stdout + done.stderr
        assert re.fullmatch(r"test call test-\w+ failed after [\d.]+ s: network: .+", line), \
            line
        assert f"{gateway['gateway_url']}/api/voice/realtime-session" in line, line
        assert "check the network and gateway.url" in line, line
        # Grant retries stop at half of test_call.timeout_s: the reason, not a timeout.
        assert took < timeout_s, took
        call_id = line.split()[2]
        entry = call_entry(service, call_id, after)
        assert entry.message == line
        assert entry.fields["TEST_CALL_RESULT"] == "failed"
        assert entry.fields.get("PRIORITY") == "4", entry.fields  # a warning
        assert "TEST_CALL_GRANT_S" not in entry.fields  # no grant came
        failed = box.run(["journalctl", "-u", UNIT, "TEST_CALL_RESULT=failed", "-o", "cat",
                          "--no-pager"], check=True).stdout
        assert line in failed, failed
        # `systemctl status` shows one line: the service keeps STATUS= to its first
        # STATUS_MAX_CHARS, which still say what failed and where.
        status = f"idle ({KIOSK_ID}): {line}"[:STATUS_MAX_CHARS]
        wait_until(lambda: service.status_text() == status, 10,
                   "STATUS= with the test call's result", show=service.status_text)
        assert f"test call {call_id} failed after " in status, status
        assert f"network: cannot reach the gateway at {gateway['gateway_url']}" in status
        assert set(service.states(after)) <= {"idle"}, service.states(after)
        samples = wait_until(lambda: when(m := read_call_metrics(box), m.get(
            ("voice_kiosk_test_call_last_success", ())) == 0), 20,
            f"the failed test call in {TEXTFILE}", show=lambda: read_call_metrics(box))
        assert samples[failed_key] == before.get(failed_key, 0) + 1
        assert samples.get(ok_key, 0) == before.get(ok_key, 0)
        steps = {labels[0][1] for name, labels in samples
                 if name == "voice_kiosk_test_call_last_duration_seconds"}
        assert steps == {"total"}, samples  # no grant, no link
    finally:
        box.run(["systemctl", "reset-failed", GATEWAY_UNIT])
        info = start_gateway(box)
        gateway.update(info)
        install_key(box, info["api_key"])
        fresh_start(service)
    back = service.cursor()
    done, _ = ask_test_call(box)
    assert done.returncode == 0, done.stdout + done.stderr  # the gateway is back
    call_entry(service, done.stdout.split()[2], back)


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
