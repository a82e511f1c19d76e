"""The gateway client against the simulated gateway over real HTTP: credentials, both answer
forms, the request body, and every failure class with advice for IT staff."""

from __future__ import annotations

import contextlib
import os
import random
import ssl
from pathlib import Path

import pytest

from kiosk.session.backoff import Backoff
from kiosk.session.errors import GatewayError
from kiosk.session.gateway import GatewayClient, parse_grant
from kiosk.session.http import parse_retry_after
from kiosk.session.transport import tls_context
from kiosk.settings import GatewaySettings, RealtimeSettings
from kiosk.sim import Simulator
from tests.harness import ManualClock


def client(sim: Simulator, clock: ManualClock | None = None, **fields) -> GatewayClient:
    fields.setdefault("timeout_s", 3.0)
    settings = GatewaySettings(url=sim.gateway_url, **fields)
    kwargs = {"clock": clock} if clock else {}
    return GatewayClient(settings, RealtimeSettings(), **kwargs)


def session_requests(sim: Simulator):
    return [r for r in sim.gateway_requests if r.path == "/api/voice/realtime-session"]


def test_api_key_grant_current_form(sim: Simulator, key_file: Path) -> None:
    grant = client(sim, api_key_file=str(key_file)).create_grant()
    assert grant.url == sim.realtime_url and grant.model == "gpt-realtime"
    assert grant.token.startswith("ek_") and grant.token_kind == "ephemeral_token"
    assert grant.session_id and grant.conversation_id and not grant.expired()
    assert grant.voice_config["input_audio_format"] == "pcm16"
    assert session_requests(sim)[0].headers["x-api-key"] == sim.api_key
    assert grant.token not in repr(grant)


def test_early_form_with_api_key(sim: Simulator, key_file: Path) -> None:
    sim.knobs.response_form = "early"
    grant = client(sim, api_key_file=str(key_file)).create_grant()
    assert grant.token.startswith("sk-sim-") and grant.token_kind == "api_key"


def test_request_body_and_conversation_carried_over(sim: Simulator, key_file: Path) -> None:
    gw = client(sim, api_key_file=str(key_file), voice="coral", language="de",
                vad_sensitivity=40, silence_duration_ms=700, adaptive_vad=True)
    first = gw.create_grant()
    gw.create_grant()
    one, two = session_requests(sim)
    assert one.body == {"voice": "coral", "language": "de", "vad_sensitivity": 40,
                        "silence_duration_ms": 700, "adaptive_vad": True}
    assert two.body["conversation_id"] == first.conversation_id
    assert one.headers["content-type"] == "application/json"


def test_configured_conversation_id_is_sent(sim: Simulator, key_file: Path) -> None:
    grant = client(sim, api_key_file=str(key_file), conversation_id="conv-7").create_grant()
    assert session_requests(sim)[0].body == {"conversation_id": "conv-7"}
    assert grant.conversation_id == "conv-7"


def test_credentials_directory_expansion(sim: Simulator, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gateway-key").write_text(sim.api_key)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    client(sim, api_key_file="${CREDENTIALS_DIRECTORY}/gateway-key").create_grant()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(GatewayError) as err:
        client(sim, api_key_file="${CREDENTIALS_DIRECTORY}/gateway-key").create_grant()
    assert err.value.kind == "config" and "LoadCredential" in err.value.message


def test_token_file_is_reread_on_every_request(sim: Simulator, tmp_path: Path) -> None:
    email, password = sim.create_user()
    login = client(sim, email=email, password_file=str(_secret(tmp_path, "pw", password)))
    login.create_grant()
    tokens = list(sim.accounts.access)
    token_file = _secret(tmp_path, "jwt", tokens[0])
    gw = client(sim, token_file=str(token_file))
    gw.create_grant()
    sim.expire_tokens()
    with pytest.raises(GatewayError) as err:
        gw.create_grant()
    assert err.value.kind == "auth" and str(token_file) in err.value.message
    # An outside process rotates the file: the next request uses it, no restart.
    login.credential.rejected()
    login.create_grant()
    token_file.write_text(list(sim.accounts.access)[-1])
    gw.create_grant()


def test_login_refresh_with_rotation(sim: Simulator, tmp_path: Path) -> None:
    email, password = sim.create_user()
    sim.knobs.access_ttl_s = 1  # shorter than the renewal margin: every request refreshes
    gw = client(sim, email=email, password_file=str(_secret(tmp_path, "pw", password)))
    gw.create_grant()
    gw.create_grant()
    gw.create_grant()
    paths = [r.path for r in sim.gateway_requests]
    assert paths == ["/api/auth/login", "/api/voice/realtime-session", "/api/auth/refresh",
                     "/api/voice/realtime-session", "/api/auth/refresh",
                     "/api/voice/realtime-session"]
    refreshes = [r.body["refresh_token"] for r in sim.gateway_requests
                 if r.path == "/api/auth/refresh"]
    assert refreshes[0] != refreshes[1]  # rotated
    assert gw.credential.logins == 1 and gw.credential.refreshes == 2
    bearer = session_requests(sim)[-1].headers["authorization"]
    assert bearer.startswith("Bearer eyJ")


def test_refused_refresh_falls_back_to_a_fresh_login(sim: Simulator, tmp_path: Path) -> None:
    email, password = sim.create_user()
    sim.knobs.access_ttl_s = 1
    gw = client(sim, email=email, password_file=str(_secret(tmp_path, "pw", password)))
    gw.create_grant()
    with sim.accounts.lock:
        sim.accounts.refresh.clear()  # the gateway restarted or revoked the refresh token
    gw.create_grant()
    assert [r.status for r in sim.gateway_requests if r.path == "/api/auth/refresh"] == [401]
    assert gw.credential.logins == 2


def test_revoked_access_token_triggers_one_relogin(sim: Simulator, tmp_path: Path) -> None:
    email, password = sim.create_user()
    gw = client(sim, email=email, password_file=str(_secret(tmp_path, "pw", password)))
    gw.create_grant()
    sim.expire_tokens()  # access tokens revoked server-side before their time
    gw.create_grant()
    assert [r.status for r in session_requests(sim)] == [200, 401, 200]


def test_wrong_password_names_the_login(sim: Simulator, tmp_path: Path) -> None:
    email, _ = sim.create_user()
    pw = _secret(tmp_path, "pw", "Xq9-not-the-password")
    with pytest.raises(GatewayError) as err:
        client(sim, email=email, password_file=str(pw)).create_grant()
    assert err.value.kind == "auth" and email in err.value.message
    assert str(pw) in err.value.message
    assert "Xq9-not-the-password" not in err.value.message


def test_two_factor_account_is_a_config_error(sim: Simulator, tmp_path: Path) -> None:
    email, password = sim.create_user("2fa@ward.example", requires_2fa=True)
    with pytest.raises(GatewayError) as err:
        client(sim, email=email, password_file=str(_secret(tmp_path, "pw", password))
               ).create_grant()
    assert err.value.kind == "config" and "gateway.api_key_file" in err.value.message


@pytest.mark.parametrize("fields,words", [
    ({}, "no gateway credential configured"),
    ({"email": "a@b"}, "gateway.password_file is not"),
    ({"api_key_file": "/nonexistent/key"}, "/nonexistent/key does not exist"),
])
def test_configuration_errors(sim: Simulator, fields: dict, words: str) -> None:
    with pytest.raises(GatewayError) as err:
        client(sim, **fields).create_grant()
    assert err.value.kind == "config" and words in err.value.message
    assert not sim.gateway_requests


def test_empty_key_file(sim: Simulator, tmp_path: Path) -> None:
    with pytest.raises(GatewayError) as err:
        client(sim, api_key_file=str(_secret(tmp_path, "k", "  \n"))).create_grant()
    assert err.value.kind == "config" and "is empty" in err.value.message


@pytest.mark.parametrize("status,kind", [(401, "auth"), (403, "auth"), (429, "rate_limited"),
                                         (500, "unavailable"), (503, "unavailable")])
def test_status_classification(sim: Simulator, key_file: Path, status: int, kind: str) -> None:
    sim.knobs.gateway_status = status
    with pytest.raises(GatewayError) as err:
        client(sim, api_key_file=str(key_file)).create_grant()
    assert err.value.kind == kind and err.value.status == status
    assert sim.api_key not in err.value.message


def test_auth_failure_is_held_until_the_file_changes(sim: Simulator, key_file: Path) -> None:
    clock = ManualClock()
    gw = client(sim, clock, api_key_file=str(key_file), auth_retry_s=300)
    sim.revoke_api_key(sim.api_key)
    with pytest.raises(GatewayError):
        gw.create_grant()
    with pytest.raises(GatewayError) as again:
        gw.create_grant(automatic=True)  # a reconnect nobody asked for: held
    assert "automatic retries wait" in again.value.message
    assert len(session_requests(sim)) == 1  # the gateway was not asked twice
    with pytest.raises(GatewayError):
        gw.create_grant()  # a patient's press always asks
    assert len(session_requests(sim)) == 2
    clock.advance(301)
    with pytest.raises(GatewayError):
        gw.create_grant(automatic=True)
    assert len(session_requests(sim)) == 3
    key_file.write_text(sim.create_api_key())  # IT staff fix the file: retried at once
    gw.create_grant(automatic=True)


def test_network_errors(sim: Simulator, key_file: Path) -> None:
    dead = GatewayClient(GatewaySettings(url="http://127.0.0.1:9", api_key_file=str(key_file),
                                         timeout_s=2), RealtimeSettings())
    with pytest.raises(GatewayError) as err:
        dead.create_grant()
    assert err.value.kind == "network" and "cannot reach the gateway" in err.value.message


def test_wrong_url_path_is_a_config_error(sim: Simulator, key_file: Path) -> None:
    gw = GatewayClient(GatewaySettings(url=sim.gateway_url + "/v2", api_key_file=str(key_file)),
                       RealtimeSettings())
    with pytest.raises(GatewayError) as err:
        gw.create_grant()
    assert err.value.kind == "config" and "404" in err.value.message


def test_tls_is_verified_by_default_and_ca_file_checked(tmp_path: Path) -> None:
    ctx = tls_context(GatewaySettings())
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(GatewayError) as err:
        tls_context(GatewaySettings(ca_file=str(bad)))
    assert err.value.kind == "config" and "gateway.ca_file" in err.value.message


def test_https_to_an_untrusted_server_is_refused(sim: Simulator, key_file: Path,
                                                 tmp_path: Path) -> None:
    # A TLS listener with a certificate nobody trusts: the kiosk must refuse to talk to it.
    import socket
    import subprocess
    import threading
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-keyout", str(key), "-out", str(cert), "-days", "1",
                           "-subj", "/CN=127.0.0.1"], capture_output=True, timeout=30)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(ssl.SSLError, OSError):
            server_ctx.wrap_socket(conn, server_side=True).close()

    threading.Thread(target=accept, daemon=True).start()
    gw = GatewayClient(GatewaySettings(url=f"https://127.0.0.1:{port}",
                                       api_key_file=str(key_file), timeout_s=5),
                       RealtimeSettings())
    with pytest.raises(GatewayError) as err:
        gw.create_grant()
    listener.close()
    assert err.value.kind == "network" and "gateway.ca_file" in err.value.message


def test_parse_grant_rejects_incomplete_answers() -> None:
    rt = RealtimeSettings(model=None)
    base = {"url": "wss://x/v1/realtime", "model": "m", "auth": {"token": "ek_1"},
            "expires_at": 2_000_000_000}
    assert parse_grant(base, rt).token == "ek_1"
    for broken, words in [({**base, "url": "https://x"}, "usable"),
                          ({**base, "model": None}, "no model"),
                          ({**base, "auth": None}, "neither"),
                          ({**base, "voice_config": [1]}, "voice_config")]:
        with pytest.raises(GatewayError, match=words):
            parse_grant(broken, rt)
    override = RealtimeSettings(url="wss://override/v1/realtime", model="other")
    grant = parse_grant(base, override)
    assert (grant.url, grant.model) == ("wss://override/v1/realtime", "other")


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    b = Backoff(1.0, 8.0, jitter=0.25, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    for n, delay in enumerate(delays):
        ceiling = min(8.0, 2.0 ** n)
        assert 0.75 * ceiling <= delay <= ceiling
    b.reset()
    assert b.next_delay() <= 1.0
    with pytest.raises(ValueError):
        Backoff(0, 1)


def _secret(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value)
    os.chmod(path, 0o600)
    return path
