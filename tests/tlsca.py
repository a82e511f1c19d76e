"""A private certificate authority for tests: the hospital-CA situation on loopback.

    ca = PrivateCA(tmp_path)
    with Simulator(tls=ca.server_files) as sim:    # https:// and wss:// on 127.0.0.1
        ...  # kiosk config: gateway.ca_file = str(ca.ca_file)

`trustme` (a test-only dependency) makes the keys and certificates; nothing leaves the
directory given, and no system trust store is touched.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


class PrivateCA:
    """A fresh CA and one server certificate for `names`, written as PEM files into `folder`.

    ca_file: the CA certificate (what a client is given as its trust anchor).
    server_files: (certificate chain, private key) for `Simulator(tls=...)`.
    """

    def __init__(self, folder: Path, names: tuple[str, ...] = SERVER_NAMES) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="Simulated Hospital CA")
        self.ca_file = folder / "hospital-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        server = self._ca.issue_cert(*names)
        chain, key = folder / "server-chain.pem", folder / "server-key.pem"
        with chain.open("wb") as out:
            for blob in server.cert_chain_pems:
                out.write(blob.bytes())
        server.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        self.server_files: tuple[Path, Path] = (chain, key)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return ctx
