"""The process around the app: its two listeners, TLS, signals, and a drain that ends inside the grace period.

- The public listener (``contract.PORT``) speaks TLS with the certificate and
  key the settings name, unless plain HTTP was asked for (``make serve``).
- The internal listener (``contract.METRICS_PORT``) speaks plain HTTP and
  answers only ``/metrics`` and the health endpoints; the LoadBalancer Service
  does not expose it.
- SIGTERM (or SIGINT): both stop accepting, idle connections close, requests
  already read are answered, and whatever is still open after
  ``contract.DRAIN_SECONDS`` is cut, so the process exits well before the
  kubelet's SIGKILL (preStop + drain + margin = the grace period).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
from dataclasses import replace
from typing import Final

from mlapp.serve.app import App
from mlapp.serve.http import HttpServer
from mlapp.settings import Settings

log = logging.getLogger("mlapp.serve")

# The internal port serves scrapers and the kubelet: a few connections are plenty.
INTERNAL_MAX_CONNECTIONS: Final = 64
BACKLOG: Final = 2048
# How often the drain looks whether every connection has closed.
DRAIN_POLL_SECONDS: Final = 0.02


# Mozilla's "intermediate" server configuration, guidelines 6.0 (https://ssl-config.mozilla.org/guidelines/6.0.json,
# mozilla/ssl-config-generator src/static/guidelines/6.0.json; https://wiki.mozilla.org/Security/Server_Side_TLS):
# TLS 1.2 and 1.3; for TLS 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305, in this order; "server_preferred_order":
# false. Python's own default for a context ("@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:...",
# PY_SSL_DEFAULT_CIPHER_STRING in CPython 3.11's Modules/_ssl.c) adds ECDHE with AES-CBC (ECDHE-ECDSA-AES128-SHA256,
# -AES256-SHA384) and DHE, which "intermediate" does not offer. The ECDSA suites serve the stack's own certificate
# (ECDSA P-256), the RSA ones a certificate the user brings.
TLS12_CIPHERS: Final = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
# TLS 1.3's suites, which set_ciphers leaves alone (it sets OpenSSL's TLS 1.2 list only) and Python 3.11 cannot set:
# OpenSSL's default set is these three "intermediate" names, and with the client's preference their order is moot.
TLS13_CIPHERS: Final = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# "intermediate" names the key-exchange groups X25519MLKEM768, X25519, prime256v1 and secp384r1. Python 3.11's ssl
# cannot set a list of groups: set_ecdh_curve takes one curve, and on OpenSSL 3 makes it the only group (a
# prime256v1-only server refuses a client that offers X25519 alone), so it is not called. The server accepts
# OpenSSL's default list: on OpenSSL 3.0 (the server image's Debian bookworm) x25519, secp256r1, x448, secp521r1,
# secp384r1, ffdhe2048-8192 (ssl/t1_lib.c, supported_groups_default; its GOST groups need a provider nobody loads).
# That holds Mozilla's three classical groups, X25519 first, plus x448, secp521r1 and the finite-field groups (used
# by TLS 1.3 only, as no DHE suite is offered), none of them weaker. X25519MLKEM768 needs OpenSSL 3.5. Narrowing the
# list needs SSLContext.set_groups (proposed in python/cpython#136306) or a "Groups" line in an OpenSSL configuration
# file, which would hold for every context in the process.


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context as Mozilla's "intermediate" configuration has it (TLS 1.2 and 1.3, the suites above, the
    client's order of preference), HTTP/1.1 over ALPN, the certificate chain and key from PEM files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(":".join(TLS12_CIPHERS))
    # Every suite offered is strong, so the client picks (one without AES hardware prefers ChaCha20); Python sets
    # the server's preference by default.
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert_file, key_file)
    return context


class Servers:
    """The listeners of one process, started and drained together."""

    def __init__(self, settings: Settings, app: App) -> None:
        self.settings = settings
        self.app = app
        tls = None
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:  # else plain HTTP
            tls = tls_context(str(settings.tls_cert_file), str(settings.tls_key_file))
        limits = settings.limits
        self.public = HttpServer(app, limits, tls, (settings.host, settings.port))
        self.internal = HttpServer(
            app.internal,
            replace(limits, max_connections=INTERNAL_MAX_CONNECTIONS),
            None,
            (settings.host, settings.metrics_port),
        )
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for server in (self.public, self.internal):
            listener = socket.create_server(server.server_address, backlog=BACKLOG)
            listener.setblocking(False)
            self._listeners.append(listener)
            self._accepting.append(loop.create_task(server.accept_forever(listener)))

    async def drain(self, seconds: float) -> bool:
        """Stop accepting, answer what was read, close; True if every connection closed within ``seconds``."""
        for task in self._accepting:
            task.cancel()
        for listener in self._listeners:
            listener.close()
        servers = (self.public, self.internal)
        for server in servers:
            server.drain()
        deadline = time.monotonic() + seconds
        while any(s.connections for s in servers) and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        left = sum(len(s.connections) for s in servers)
        for server in servers:
            server.abort_all()
        if left:
            log.warning("%d connections still open after the %g s drain; closed", left, seconds)
        return left == 0


async def serve(settings: Settings, app: App) -> None:
    """Run until SIGTERM or SIGINT, then drain within ``settings.drain_seconds``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await app.startup()
    servers = Servers(settings, app)
    try:
        await servers.start()
        scheme = "http" if settings.plain_http else "https"
        log.info(
            "listening on %s://%s:%d (metrics and health on http://%s:%d)",
            scheme,
            settings.host,
            settings.port,
            settings.host,
            settings.metrics_port,
        )
        await stop.wait()
        started = time.monotonic()
        log.info("shutting down: draining for at most %g s", settings.drain_seconds)
        drained = await servers.drain(settings.drain_seconds)
        log.info("drained in %.2f s%s", time.monotonic() - started, "" if drained else " (cut)")
    finally:
        await app.shutdown()
