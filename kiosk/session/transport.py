"""What the gateway client and the realtime link share about the network: one TLS context
(system trust plus `gateway.ca_file`, verification on unless switched off), which URLs may be
used at all, and whether a site proxy applies.

Plain `http://` and `ws://` carry the gateway credential and the patient's voice unencrypted:
they are refused for any host but this machine unless `gateway.allow_insecure` says so.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from urllib.parse import urlsplit

from kiosk.session.errors import GatewayError
from kiosk.settings import GatewaySettings

log = logging.getLogger("kiosk.session.transport")

SECURE = {"http": "https", "ws": "wss"}


def is_loopback(host: str | None) -> bool:
    """True for this machine's own addresses (where an unencrypted link never leaves it)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_context(gateway: GatewaySettings) -> ssl.SSLContext:
    """The TLS context for both the gateway and the realtime service (built once)."""
    ctx = ssl.create_default_context()
    if gateway.ca_file:
        try:
            ctx.load_verify_locations(cafile=gateway.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise GatewayError("config", f"gateway.ca_file {gateway.ca_file!r} cannot be loaded "
                                         f"({exc}); point it at a PEM CA bundle") from None
    if not gateway.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check_url(url: str, setting: str, gateway: GatewaySettings) -> str:
    """`url` if its scheme may be used; GatewayError("config") saying what to change if not.

    https/wss always; http/ws only to this machine, or anywhere with gateway.allow_insecure.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in SECURE.values():
        return url
    if scheme not in SECURE:
        raise GatewayError("config", f"{setting} {url!r} is not an http(s) or ws(s) URL")
    if is_loopback(parts.hostname) or gateway.allow_insecure:
        return url
    raise GatewayError("config", f"{setting} uses unencrypted {scheme}:// to "
                                 f"{parts.hostname}; use {SECURE[scheme]}://, or set "
                                 "gateway.allow_insecure: true if this network is trusted")


def insecure_warnings(gateway: GatewaySettings, realtime_url: str | None) -> list[str]:
    """One line per unencrypted connection to another machine that the configuration allows
    (logged at every start, so it is never forgotten)."""
    out = []
    for setting, url in (("gateway.url", gateway.url), ("realtime.url", realtime_url or "")):
        parts = urlsplit(url)
        if parts.scheme.lower() in SECURE and not is_loopback(parts.hostname):
            out.append(f"{setting} {parts.scheme}://{parts.hostname} is unencrypted "
                       "(gateway.allow_insecure: true): credentials and the patient's voice "
                       "cross the network in clear")
    if not gateway.verify_tls:
        out.append("gateway.verify_tls is false: TLS certificates are not checked, anyone on "
                   "the network can pose as the gateway or the speech service")
    return out
