"""HTTP/1.1 on asyncio and httptools, with every resource a client can hold bounded.

Why not uvicorn: its httptools protocol has no limit on the size of a header or
a URL, no time limit on reading headers or a body, parses every pipelined
request a read brings in before it answers one, and takes one TLS setting for
all its sockets. Each of those let a client without credentials grow the
process past its pod's memory limit (BENCHMARKS.md's measurements). Here each bound
is a field of ``Limits``, checked where the bytes arrive:

=====================  ==========================================  ========================
bound                  where                                       over it
=====================  ==========================================  ========================
max_connections        accept, before any TLS state exists; a       the connection idle
                       closed one counts until its transport is     longest (a closed one
                       gone (``Connection._close``)                 first) is closed to make
                                                                    room; if none is idle,
                                                                    the new one is
header bytes / count   fed to the parser in slices of what is left  431, closed
URL bytes              ``on_url``                                   414, closed
header_timeout         first byte of a request to its blank line    408, closed
                       (the TLS handshake shares it)
plain HTTP on the      its first byte, before any TLS state         400 naming the https
TLS port               (``PLAIN_HEAD_BYTES`` read, then a linger    URL, closed
                       of ``PLAIN_LINGER_BYTES`` and ``_SECONDS``)
body bytes             Content-Length at the headers, or counted    413, closed
after the body         ``MAX_TRAILER_BYTES`` of chunk framing and   431, closed
                       trailer fields past the last body byte
body_timeout           end of headers to end of body (trailers      408, closed
                       included)
keep_alive_timeout     idle between requests, and before the first  closed
max_pipelined          requests read and not yet answered           reading stops, closed
                                                                    after those are answered
write buffer           a client that does not read its answers      reading stops until it
                                                                    reads
unread body buffer     a body the handler has not read yet          reading stops
=====================  ==========================================  ========================

A closed connection under RFC 9112 section 9.6 ("Tear-down") is what a server
does when it will not read more; a pipelining client retries what was not
answered (section 9.3.2). Requests already read are always answered.

The application is called ASGI-style (``scope``, ``receive``, ``send``) at the
end of the headers, so it can refuse a request (no credentials) before any of
its body is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, Final, cast
from urllib.parse import unquote

import httptools
import orjson

from mlapp.settings import Limits

log = logging.getLogger("mlapp.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
AsgiApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class _Refused(Exception):
    """A bound was crossed while parsing; the connection answers ``status`` (if it still may) and closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# How often connection deadlines are checked: each fires at most this late.
SWEEP_SECONDS: Final = 0.25

# What a chunked body may send after its last data byte: the last chunk's size line, the trailer
# fields and the blank line that ends them. llhttp parses trailer fields with the states and
# callbacks of header fields (src/llhttp/http.ts: a chunk size of 0 sets FLAGS.TRAILING and goes to
# 'header_field_start'), and httptools keeps an unfinished field in memory with ``bytes +=``, passing
# it on only once the field ends (httptools/parser/parser.pyx ``_on_header_field``,
# ``_on_header_value``): a trailer value that never ends would grow that buffer, and the copies
# growing it would take the loop's CPU, for the whole body timeout. So the pieces fed with no body in
# them since the body's last byte (or the end of the head) are counted; the rest of the piece that
# carried that byte is not, so httptools holds at most this plus ``max_header_bytes``, the size of
# the pieces a chunked body is fed in. Generous for the trailer fields a client sends in practice
# (none, or a checksum); the server reads none of them.
MAX_TRAILER_BYTES: Final = 4096


def _nothing() -> None:
    pass


# What a connection holds as its parser before it is connected and once it is lost. httptools keeps
# the protocol's bound methods (``on_url``, ``on_header``...: httptools/parser/parser.pyx
# ``HttpParser._init``), so a parser and its connection make a reference cycle, which only the
# cyclic garbage collector frees; and so does ``on_deadline``, a bound method of the connection
# itself. Under TLS the connection holds its transport, and through it uvloop's ``SSLProtocol``:
# a read buffer of 256 KiB (``PyMem_RawMalloc(SSL_READ_MAX_SIZE)``, uvloop/sslproto.pyx
# ``SSLProtocol.__cinit__``), the ``SSLObject`` and its OpenSSL state. The collector sees none of
# that size, and after ``gc.freeze()`` runs its young generation once every 20,000 allocations
# (``mlapp.serve.app.GC_YOUNG_THRESHOLD``), which a refused connection makes few of: left to it,
# thousands of closed TLS connections would wait for it at once, about 50 KiB each (BENCHMARKS.md,
# "TLS connections refused"). With the cycles cut where the connection is lost, reference counting
# frees each one as soon as the loop lets go of it (uvloop's ``SSLProtocol.connection_lost`` drops
# its protocol and transport).
_NO_PARSER: Final = httptools.HttpRequestParser(None)


_REASONS: Final = {s.value: s.phrase.encode() for s in HTTPStatus}


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))


_STATUS_LINES: Final = {s: _status_line(s) for s in _REASONS}


class _Clock:
    """The Date header (RFC 9110 section 6.6.1: an origin server with a clock sends it), formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._header = b""

    def date_header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._header = b"date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._header


# A TLS client's first byte is a handshake record's content type, 0x16 (RFC 8446 section 5.1, "handshake(22)");
# plain HTTP sent to the TLS port begins with a method, upper-case ASCII letters (RFC 9110 section 9: the
# standard methods, and by custom any other token, are written in upper case). Such a client is answered 400
# naming the URL to use, as nginx answers it (its 497 "HTTP Request Sent to HTTPS Port", sent as 400), instead
# of the empty reply a failed handshake gives. What it sent is read no further than this, to find its Host.
PLAIN_HEAD_BYTES: Final = 4096
# After that answer the write side is shut and what the client still sends is read and dropped, for at most
# this long and this much, so that closing with unread bytes does not reset the connection before the client
# has read the answer (RFC 9112 section 9.6, "Tear-down": a server closes in stages).
PLAIN_LINGER_SECONDS: Final = 1.0
PLAIN_LINGER_BYTES: Final = 64 * 1024
# A Host header's host and port, as far as this answer repeats it; anything else is not repeated.
_HOST_FIELD: Final = re.compile(
    rb"\r\nhost:[ \t]*([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?[ \t]*\r\n", re.I
)


def https_hint(head: bytes) -> str:
    """What a plain-HTTP client of the TLS port is told: the https URL of its own Host, when it sent one."""
    found = _HOST_FIELD.search(head)
    where = f"https://{found[1].decode()}{(found[2] or b'').decode()}/" if found else "https://<host>:<port>/"
    return f"this port speaks HTTPS; use {where}"


def plain_response(status: int, message: str) -> bytes:
    """A whole JSON error response that closes the connection, for refusals made below the application."""
    body = orjson.dumps({"error": message})
    return b"".join(
        (
            _STATUS_LINES.get(status) or _status_line(status),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
    )


class HttpServer:
    """What every connection of one listener shares: the app, the limits, the TLS context, the open connections."""

    def __init__(
        self, app: AsgiApp, limits: Limits, tls: ssl.SSLContext | None, server_address: tuple[str, int]
    ) -> None:
        self.app = app
        self.limits = limits
        self.tls = tls
        self.scheme = "https" if tls is not None else "http"
        self.server_address = server_address
        self.connections: set[Connection] = set()
        self.draining = False
        self.clock = _Clock()
        self.refused_connections = 0
        self._sweeper: asyncio.TimerHandle | None = None
        # Accepted and not yet a Connection (the TLS handshake under way), with when each was accepted.
        # The loop keeps only weak references to tasks: this dict holds them.
        self._adopting: dict[asyncio.Task[None], float] = {}
        self.evicted_connections = 0
        # Connections with answers written this loop turn and not yet handed to their transports.
        self.unsent: list[Connection] = []
        self.running = 0  # requests whose application is running, on every connection

    def send_soon(self, conn: Connection) -> None:
        """Hand ``conn``'s answers to its transport at the end of this loop turn, with every other
        connection's (see ``Connection._write``)."""
        if not self.unsent:
            asyncio.get_running_loop().call_soon(self._send_all)
        self.unsent.append(conn)

    def _send_all(self) -> None:
        unsent, self.unsent = self.unsent, []
        for conn in unsent:
            conn.send_out()

    def protocol(self) -> asyncio.Protocol:
        return Connection(self)

    def sweep_soon(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def _sweep(self) -> None:
        """Fire every connection deadline that has passed; run again while any connection is open."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for conn in [c for c in self.connections if c.deadline <= now]:
            conn.deadline = math.inf
            conn.on_deadline()
        if self.connections:
            self.sweep_soon()

    async def accept_forever(self, listener: socket.socket) -> None:
        """Accept connections on ``listener``, admitting at most ``max_connections`` (handshakes included).

        The limit is checked on the bare socket, before any TLS state exists (the
        TLS layer of asyncio and uvloop allocates a 256 KiB read buffer per
        connection, sslproto.py ``SSLProtocol.__init__``), so a refused connection
        costs a file descriptor for a moment and nothing else.
        """
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(listener)
            if self.draining or (
                len(self.connections) + len(self._adopting) >= self.limits.max_connections and not self.evict_one()
            ):
                self.refused_connections += 1
                sock.close()
                continue
            task = loop.create_task(self._adopt(sock))
            self._adopting[task] = loop.time()
            task.add_done_callback(self._forget_adoption)

    def _forget_adoption(self, task: asyncio.Task[None]) -> None:
        self._adopting.pop(task, None)

    async def _adopt(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.tls is None:
                await loop.connect_accepted_socket(self.protocol, sock)
                return
            # The first byte and the handshake share the header timeout.
            deadline = loop.time() + self.limits.header_timeout
            first = await _peek(sock, self.limits.header_timeout)
            if first is None:  # closed before it said anything
                sock.close()
                return
            if bytes([first]).isupper():  # a method: plain HTTP; anything else goes to TLS, which refuses it
                await _refuse_plain_http(sock, deadline)
                sock.close()
                return
            await loop.connect_accepted_socket(
                self.protocol, sock, ssl=self.tls, ssl_handshake_timeout=max(deadline - loop.time(), 0.001)
            )
        except (OSError, ssl.SSLError, TimeoutError) as e:
            log.debug("connection not established: %s", e)
            sock.close()
        except asyncio.CancelledError:
            sock.close()  # evicted before its handshake finished

    def evict_one(self) -> bool:
        """At the connection limit, close the connection idle longest so that a new client (the kubelet's
        probe among them) gets in; False if every connection has a request under way.

        Idle: closed and waiting for its transport to go (first), still in its TLS handshake
        (since it was accepted), waiting for a request, or for the rest of one's headers (since
        its last answer). A flood of connections that never say anything only ever evicts itself.
        """
        waiting = [(c.idle_since, c) for c in self.connections if c.closed or (c.active is None and not c.queue)]
        oldest = min(waiting, key=lambda w: w[0], default=None)
        handshake = min(self._adopting.items(), key=lambda a: a[1], default=None)
        if handshake is not None and (oldest is None or handshake[1] <= oldest[0]):
            task = handshake[0]
            del self._adopting[task]
            task.cancel()
        elif oldest is not None:
            oldest[1].abort()
        else:
            return False
        self.evicted_connections += 1
        return True

    def drain(self) -> None:
        """Stop reading new requests: idle connections close now, busy ones after what they have already read."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn.abort()


async def _peek(sock: socket.socket, timeout: float) -> int | None:
    """The first byte the client sent, left unread for the TLS layer; None if it closed first. TimeoutError
    after ``timeout``. A client's first bytes have usually arrived with its connection, which then costs one
    system call; only a client that has not sent yet is waited for, with the loop's reader."""
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        fd = sock.fileno()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, wake)
        try:
            async with asyncio.timeout(timeout):
                await readable
        finally:
            loop.remove_reader(fd)
        data = sock.recv(1, socket.MSG_PEEK)
    return data[0] if data else None


async def _refuse_plain_http(sock: socket.socket, deadline: float) -> None:
    """Answer a plain-HTTP request on the TLS port 400, naming the https URL, then close in stages; every read
    and wait bounded (``PLAIN_HEAD_BYTES``, the header deadline, ``PLAIN_LINGER_BYTES`` and ``_SECONDS``)."""
    loop = asyncio.get_running_loop()
    head = sock.recv(PLAIN_HEAD_BYTES)  # readable: its first byte is there
    log.debug("plain HTTP on the TLS port from %s", sock.getpeername()[0])
    async with asyncio.timeout_at(deadline):
        await loop.sock_sendall(sock, plain_response(400, https_hint(head)))
    sock.shutdown(socket.SHUT_WR)
    dropped = 0
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(PLAIN_LINGER_SECONDS):
            while dropped < PLAIN_LINGER_BYTES and (chunk := await loop.sock_recv(sock, PLAIN_HEAD_BYTES)):
                dropped += len(chunk)


class _Cycle:
    """One request: its scope, its unread body, and how its response is going."""

    __slots__ = (
        "body",
        "body_size",
        "chunked",
        "complete",
        "disconnected",
        "expect_continue",
        "finished",
        "head",
        "http10",
        "keep_alive",
        "scope",
        "started",
        "wake",
    )

    def __init__(self, scope: Scope, keep_alive: bool, head: bool, expect_continue: bool, http10: bool) -> None:
        self.scope = scope
        self.http10 = http10
        self.body: deque[bytes] = deque()
        self.body_size = 0  # buffered, not yet handed to the application
        self.complete = False
        self.disconnected = False
        self.wake: asyncio.Event | None = None
        self.keep_alive = keep_alive
        self.head = head
        self.expect_continue = expect_continue
        self.started = False
        self.finished = False
        self.chunked = False


class Connection(asyncio.Protocol):
    """One client connection: parses requests in order, runs one at a time, answers in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = _NO_PARSER  # its own one from ``connection_made`` to ``connection_lost``
        self.client: tuple[str, int] | None = None
        # Reading state of the message being parsed.
        self.in_head = True  # before the end of the headers (or before a message starts)
        self.begun = False  # a message has started and not finished
        self.head_fed = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.reading: _Cycle | None = None
        self.body_expected = 0  # Content-Length, or -1 for chunked
        self.body_received = 0
        self.body_in_piece = False  # the piece being fed carried body bytes
        self.after_body = 0  # bytes fed with no body in them since the body's last byte (``MAX_TRAILER_BYTES``)
        # Requests read and not yet answered; the first one is running.
        self.queue: deque[_Cycle] = deque()
        self.active: _Cycle | None = None
        # One deadline at a time (idle, headers, body), checked by the server's sweep: setting
        # it costs a float per request where a loop timer would cost a heap push and a cancel.
        self.deadline = math.inf
        self.on_deadline: Callable[[], None] = _nothing
        self.read_paused = False
        self.write_paused = False
        self.write_ready: asyncio.Event | None = None
        self.closing = False  # no more requests are read; close once the queue is answered
        self.refused = False  # a bound was crossed: nothing more is read at all
        self.closed = False
        self.idle_since = 0.0  # when it last had no request under way
        self.task: asyncio.Task[None] | None = None  # the running request's (the loop holds tasks weakly)
        self._pending_head = b""
        self._out: list[bytes] = []  # written this loop turn, for the transport at its end
        self._out_bytes = 0

    # --- the connection ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        server = self.server
        self.idle_since = self.loop.time()
        server.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:  # noqa: PLR2004 - (host, port[, flow, scope])
            self.client = (str(peer[0]), int(peer[1]))
        transport.set_write_buffer_limits(high=self.limits.write_buffer_bytes)
        self._arm(self.limits.keep_alive_timeout, self._on_idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        self.server.connections.discard(self)
        for cycle in (self.active, self.reading, *self.queue):
            if cycle is not None:
                cycle.disconnected = True
                if cycle.wake is not None:
                    cycle.wake.set()
        if self.write_ready is not None:
            self.write_ready.set()
        # Nothing calls the parser or the deadline from now on: the cycles they make go (``_NO_PARSER``).
        self.parser = _NO_PARSER
        self.on_deadline = _nothing

    def _forget(self) -> None:
        self.closed = True
        self._disarm()

    def eof_received(self) -> bool | None:
        # The client has finished sending: answer what was read, then close. A body
        # still being read will never complete: its handler hears the client went away.
        self.closing = True
        reading = self.reading
        if reading is not None and not reading.complete:
            reading.disconnected = True
            if reading.wake is not None:
                reading.wake.set()
        if self.active is None and not self.queue:
            self._close()
        # Plain TCP: keep the write side open for those answers. TLS has no half-close: the TLS layer
        # shuts the connection down whatever this returns, and logs a warning for a true value
        # (asyncio/sslproto.py and uvloop/sslproto.pyx ``_call_eof_received``: "returning true from
        # eof_received() has no effect when using ssl"), once for every client that half-closes.
        return self.server.tls is None

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.write_ready is not None:
            self.write_ready.set()
        self._maybe_resume_reading()

    def drain(self) -> None:
        """Shutdown: read no more requests; close now if nothing read is waiting for its answer."""
        self.closing = True
        if self.active is None and not self.queue:
            self._close()

    def abort(self) -> None:
        self._out.clear()
        if self.transport is not None:
            self.transport.abort()
        self._forget()
        self.server.connections.discard(self)  # its transport is gone by the loop's next turn

    def _close(self) -> None:
        """Close once what was written is sent: still counted against ``max_connections`` until the
        transport is gone (``connection_lost``), and the first one evicted.

        Under TLS that waits for the client's close_notify, or for 30 s (uvloop/sslproto.pyx
        ``_start_shutdown``, ``SSL_SHUTDOWN_TIMEOUT``), and over TCP for the client to read what
        was written; meanwhile the transport holds its buffers (``_NO_PARSER``). Uncounted, clients
        that never read their 431 could hold any number of them, about 100 KiB each (BENCHMARKS.md,
        "TLS connections refused").
        """
        self.send_out()  # what was written goes before the close
        if not self.closed and self.transport is not None:
            self.transport.close()
        self._forget()
        self.idle_since = -math.inf

    # --- timers --------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self.deadline = self.loop.time() + seconds
        self.on_deadline = callback
        self.server.sweep_soon()

    def _disarm(self) -> None:
        self.deadline = math.inf

    def _on_idle_timeout(self) -> None:
        if self.active is None and not self.queue and not self.begun:
            self._close()

    def _on_read_timeout(self) -> None:
        what = "headers" if self.in_head else "body"
        seconds = self.limits.header_timeout if self.in_head else self.limits.body_timeout
        self._refuse(_Refused(408, f"the request's {what} did not arrive within {seconds:g} s"))

    # --- reading -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed or self.refused or (self.closing and self.reading is None):
            # Closing: the body of a request already begun is still read; a new request is not.
            return
        view = memoryview(data)
        try:
            while view:
                if self.in_head:
                    # httptools keeps a header it has not finished in memory, so
                    # the head is fed no further than what is left of its allowance.
                    room = self.limits.max_header_bytes - self.head_fed
                    if room <= 0:
                        raise _Refused(431, f"request line and headers over {self.limits.max_header_bytes} bytes")
                    piece, view = view[:room], view[room:]
                    self.head_fed += len(piece)
                    self.parser.feed_data(piece)
                else:
                    view = self._feed_body(view)
                if self.refused or (self.closing and self.reading is None):
                    return
        except _Refused as e:
            self._refuse(e)
        except httptools.HttpParserUpgrade:
            # No protocol upgrades: the request is answered, then the connection closes.
            self.closing = True
            self._pause_reading()
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__  # what the callback raised
            if cause is not None:
                # Its traceback holds this frame, which holds it: a cycle only the collector frees,
                # with the connection in it (``_NO_PARSER``).
                cause.__traceback__ = None
            if isinstance(cause, _PipelineFull):
                self._pause_reading()  # closing: what was read is answered, then the connection closes
                return
            self._refuse(cause if isinstance(cause, _Refused) else _Refused(400, "malformed request"))
        except httptools.HttpParserError as e:
            self._refuse(_Refused(400, f"malformed request: {e}"))

    def _feed_body(self, view: memoryview) -> memoryview:
        """Feed the parser the body's next piece; what is left of ``view``.

        The body goes in no further than its end, so a head that follows it is fed
        under its own allowance; a chunked one in head-sized pieces, and a piece with
        no body in it counted against ``MAX_TRAILER_BYTES``.
        """
        left = self.body_expected - self.body_received
        size = left if left > 0 else self.limits.max_header_bytes
        piece, view = view[:size], view[size:]
        reading = self.reading
        self.body_in_piece = False
        self.parser.feed_data(piece)
        if not self.body_in_piece and self.reading is reading:
            # Chunk framing or trailer fields, of the same message (a piece that ends a chunked
            # body may begin the next request, whose bytes are not this one's trailer).
            self.after_body += len(piece)
            if self.after_body > MAX_TRAILER_BYTES:
                raise _Refused(431, f"trailer fields over {MAX_TRAILER_BYTES} bytes")
        return view

    def on_message_begin(self) -> None:
        if self.closing or len(self.queue) >= self.limits.max_pipelined:
            # Enough read ahead: what was read is answered, the rest is not read.
            self.closing = True
            raise _PipelineFull
        self.begun = True
        self.url = b""
        self.headers = []
        self._arm(self.limits.header_timeout, self._on_read_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url_bytes:
            raise _Refused(414, f"URL over {self.limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            # A trailer field (the same callback, after the last chunk): not merged into the request's
            # header fields (RFC 9110 section 6.5.1), and read by nothing here; counted in bytes.
            return
        self.headers.append((name.lower(), value))
        if len(self.headers) > self.limits.max_header_count:
            raise _Refused(431, f"more than {self.limits.max_header_count} header fields")

    def on_headers_complete(self) -> None:
        self._disarm()
        self.in_head = False
        parser = self.parser
        method = parser.get_method().decode("ascii")
        raw = self.url
        query = b""
        if b"?" in raw or b"#" in raw or not raw.startswith(b"/"):
            try:
                parsed = httptools.parse_url(raw)
            except httptools.HttpParserInvalidURLError:
                raise _Refused(400, "malformed request target") from None
            raw = parsed.path or b"/"
            query = parsed.query or b""
        path = raw.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        version = parser.get_http_version()
        length, expect_continue = self._framing(version)
        server = self.server
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": server.server_address,
            "client": self.client,
            "scheme": server.scheme,
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": raw,
            "query_string": query,
            "headers": self.headers,
        }
        keep_alive = parser.should_keep_alive() and not server.draining
        cycle = _Cycle(scope, keep_alive, method == "HEAD", expect_continue, version == "1.0")
        self.reading = cycle
        self.body_expected = length
        self.body_received = 0
        self.body_in_piece = False
        self.after_body = 0
        if length:
            self._arm(self.limits.body_timeout, self._on_read_timeout)
        self.queue.append(cycle)
        if self.active is None:
            self._start_next()

    def _framing(self, version: str) -> tuple[int, bool]:
        """The body's length (-1: chunked) and whether the client waits for 100 Continue, from the
        header fields; a request RFC 9112 tells a server to refuse is refused."""
        length = 0
        expect_continue = False
        hosts = 0
        for name, value in self.headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _Refused(400, "bad Content-Length") from None
                if length > self.limits.max_body_bytes:
                    raise _Refused(413, f"request body over the limit of {self.limits.max_body_bytes} bytes")
            elif name == b"transfer-encoding":
                if version == "1.0":
                    # Section 6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as if its
                    # framing were faulty, and the connection closed (HTTP/1.0 has no transfer codings).
                    raise _Refused(400, "Transfer-Encoding in an HTTP/1.0 request")
                length = -1
                # llhttp reads a body whose last coding is chunked whatever codes come before it,
                # and decodes none of them: section 6.1, a coding not understood SHOULD get 501.
                if value.strip().lower() != b"chunked":
                    coding = value.decode("latin-1")
                    raise _Refused(501, f"transfer coding {coding!r} not implemented: send the body chunked alone")
            elif name == b"host":
                hosts += 1
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
        if hosts > 1 or (hosts == 0 and version != "1.0"):
            # Section 3.2: 400 for an HTTP/1.1 request without Host, and for any request with two.
            raise _Refused(400, "a request needs exactly one Host header field")
        return length, expect_continue

    def on_body(self, body: bytes) -> None:
        self.body_in_piece = True
        self.after_body = 0
        cycle = self.reading
        if cycle is None:
            return
        self.body_received += len(body)
        if self.body_received > self.limits.max_body_bytes:  # chunked: counted as it comes
            raise _Refused(413, f"request body over the limit of {self.limits.max_body_bytes} bytes")
        if cycle.finished:
            return  # answered without reading it; the connection closes after it
        cycle.body.append(body)
        cycle.body_size += len(body)
        if cycle.wake is not None:
            cycle.wake.set()
        if cycle.body_size > self.limits.read_ahead_bytes:
            self._pause_reading()

    def on_message_complete(self) -> None:
        self._disarm()
        cycle = self.reading
        self.reading = None
        self.in_head = True
        self.begun = False
        self.head_fed = 0
        if cycle is not None:
            cycle.complete = True
            if cycle.wake is not None:
                cycle.wake.set()
            if not cycle.keep_alive:
                self.closing = True

    def _refuse(self, refusal: _Refused) -> None:
        """A bound was crossed: answer it if no response is under way, then close."""
        self.closing = True
        self.refused = True
        self._disarm()
        log.debug("refused %s: %s %s", self.client, refusal.status, refusal)
        reading = self.reading
        if reading is not None and reading is not self.active and reading in self.queue:
            self.queue.remove(reading)  # read only in part: it is not answered
        if reading is not None:
            reading.disconnected = True
            if reading.wake is not None:
                reading.wake.set()
        if self.active is None or (self.active is reading and not reading.started):
            self._write(plain_response(refusal.status, str(refusal)))
            if reading is not None:
                reading.finished = True
            self._close()
        # else: the running request finishes, its answer goes out, then the connection closes.

    # --- flow control --------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if not self.read_paused or self.write_paused or self.refused or (self.closing and self.reading is None):
            return  # closing still reads the rest of a body already begun
        reading = self.reading
        if reading is not None and reading.body_size > self.limits.read_ahead_bytes:
            return
        self.read_paused = False
        if self.transport is not None and not self.closed:
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()

    # --- running requests ----------------------------------------------------------

    def _start_next(self) -> None:
        if not self.queue:
            self.active = None
            self.idle_since = self.loop.time()
            if self.closing:
                self._close()
            elif not self.begun:
                self._arm(self.limits.keep_alive_timeout, self._on_idle_timeout)
            return
        cycle = self.queue[0]
        self.active = cycle
        self.task = self.loop.create_task(self._run(cycle))

    async def _run(self, cycle: _Cycle) -> None:
        server = self.server
        server.running += 1
        try:
            await server.app(cycle.scope, lambda: self._receive(cycle), lambda m: self._send(cycle, m))
        except Exception:
            log.exception("unexpected error in the application")
        finally:
            server.running -= 1
        if not cycle.finished and not self.closed and not cycle.disconnected:
            # The application failed, or returned without finishing its answer: the connection cannot go on.
            cycle.keep_alive = False
            if not cycle.started:
                self._write(plain_response(500, "internal error"))
            cycle.finished = True
        self._done(cycle)

    def _done(self, cycle: _Cycle) -> None:
        if self.queue and self.queue[0] is cycle:
            self.queue.popleft()
        if not cycle.complete:
            # Answered before its body was all read: the rest of it is not read.
            self.closing = True
        elif not cycle.keep_alive:
            self.closing = True
        if self.closed:
            return
        if self.closing and not self.queue:
            self.active = None
            self._close()
            return
        self._start_next()
        self._maybe_resume_reading()

    async def _receive(self, cycle: _Cycle) -> Message:
        while True:
            if cycle.disconnected:
                return {"type": "http.disconnect"}
            if cycle.body:
                chunk = cycle.body.popleft() if len(cycle.body) == 1 else b"".join(cycle.body)
                cycle.body.clear()
                cycle.body_size = 0
                self._maybe_resume_reading()
                return {"type": "http.request", "body": chunk, "more_body": not cycle.complete}
            if cycle.complete:
                return {"type": "http.request", "body": b"", "more_body": False}
            if cycle.expect_continue:
                cycle.expect_continue = False
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if cycle.wake is None:
                cycle.wake = asyncio.Event()
            cycle.wake.clear()
            await cycle.wake.wait()

    async def _send(self, cycle: _Cycle, message: Message) -> None:
        if self.closed or (cycle.disconnected and not cycle.complete):
            return
        kind = message["type"]
        if kind == "http.response.start":
            self._start_response(cycle, message)
        elif kind == "http.response.body":
            await self._response_body(cycle, message)

    def _start_response(self, cycle: _Cycle, message: Message) -> None:
        if cycle.started:
            raise RuntimeError("http.response.start sent twice")
        cycle.started = True
        status = int(message["status"])
        parts = [_STATUS_LINES.get(status) or _status_line(status), self.server.clock.date_header()]
        has_length = False
        for name, value in message.get("headers", ()):
            lname = bytes(name).lower()
            if lname == b"content-length":
                has_length = True
            elif lname == b"connection" and bytes(value).lower() == b"close":
                cycle.keep_alive = False
            parts.append(b"%s: %s\r\n" % (bytes(name), bytes(value)))
        if not has_length and not cycle.head:
            cycle.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        if self.closing or self.server.draining or not cycle.complete:
            cycle.keep_alive = False
        if not cycle.keep_alive:
            parts.append(b"connection: close\r\n")
        elif cycle.http10:
            # An HTTP/1.0 client keeps the connection only when told to (RFC 9112 appendix C.2.2).
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self._pending_head = b"".join(parts)

    async def _response_body(self, cycle: _Cycle, message: Message) -> None:
        if not cycle.started or cycle.finished:
            raise RuntimeError("http.response.body outside a response")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        head, self._pending_head = self._pending_head, b""
        if cycle.head:
            out = head
        elif cycle.chunked:
            out = head + (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"" if more else b"0\r\n\r\n")
        else:
            out = head + body if head else body
        if out:
            self._write(out)
        if not more:
            cycle.finished = True
        elif self.write_paused:
            if self.write_ready is None:
                self.write_ready = asyncio.Event()
            self.write_ready.clear()
            await self.write_ready.wait()

    def _write(self, data: bytes) -> None:
        """Hand ``data`` to the transport: at once when no other request is running and no answer is
        waiting, else at the end of this loop turn, with the other answers written in it.

        The answers of one batch are finished one after another in one turn. Handed to
        the kernel together, the client (woken on its socket by the first) finds the
        rest there; handed over one by one between the others' Python, each answer
        would wake it alone, and waking a task on another CPU (``sock_def_readable``)
        is a cost the server pays per write (its share under load: BENCHMARKS.md). With
        nothing else running no answer can join this one, and waiting for the turn's
        end would only delay a lone client, so it goes at once. One turn holds at most
        ``write_buffer_bytes`` of a connection's answers: past that they go at once, and
        the transport's flow control (``pause_writing``) takes over.
        """
        if self.transport is None or self.closed:
            return
        if not self._out:
            if self.server.running <= 1 and not self.server.unsent:
                self.transport.write(data)
                return
            self.server.send_soon(self)
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes > self.limits.write_buffer_bytes:
            self.send_out()

    def send_out(self) -> None:
        """Hand what was written to the transport now."""
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_bytes = 0
        if self.transport is not None and not self.closed:
            self.transport.write(data)


class _PipelineFull(Exception):
    """Not an error to answer: the connection has read as many requests ahead as it holds."""
