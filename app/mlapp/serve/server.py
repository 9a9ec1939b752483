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


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later, HTTP/1.1 over ALPN, the certificate chain and key from PEM files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
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
