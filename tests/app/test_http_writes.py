"""When the HTTP layer hands answers to the kernel: together at the end of a loop turn, in order, before a close.

``Connection._write`` queues an answer and the server hands every connection's queue to its
transport once the turn's callbacks have run (one wake-up of the client per batch of
answers, not one per answer). These tests drive ``mlapp.serve.http`` with a transport that
records each call, so what reaches it, when and in which order is seen exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlapp.serve.asgi import Receive, Scope, Send
from mlapp.serve.http import Connection, HttpServer
from mlapp.settings import Limits

REQUEST = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"


class Recording:
    """A transport that records ``write`` and ``close`` calls as ("write", bytes) and ("close", b"")."""

    def __init__(self, log: list[tuple[str, int, bytes]], number: int) -> None:
        self.log = log
        self.number = number

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000 + self.number) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.log.append(("write", self.number, bytes(data)))

    def close(self) -> None:
        self.log.append(("close", self.number, b""))

    def abort(self) -> None:
        self.log.append(("abort", self.number, b""))

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Answering:
    """An application answering ``body`` once ``gate`` opens (as a batch's requests resume together),
    noting in ``marks`` how many calls had reached the transports when each answer was sent, then calling
    what ``after`` holds, in the same turn."""

    def __init__(self, body: bytes, log: list[tuple[str, int, bytes]]) -> None:
        self.body = body
        self.log = log
        self.marks: list[int] = []
        self.after: list[Any] = []
        self.gate: asyncio.Event | None = None
        self.conns: list[Connection] = []  # the connections ``run`` opened, in order

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if self.gate is not None:
            await self.gate.wait()
        length = b"%d" % len(self.body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]})
        await send({"type": "http.response.body", "body": self.body})
        self.marks.append(len(self.log))
        for call in self.after:
            call()


def open_connections(server: HttpServer, count: int, log: list[tuple[str, int, bytes]]) -> list[Connection]:
    conns = []
    for n in range(count):
        conn = Connection(server)
        conn.connection_made(Recording(log, n))  # type: ignore[arg-type]
        conns.append(conn)
    return conns


def run(app: Answering, connections: int, limits: Limits | None = None, gated: bool = True) -> None:
    """Each connection sends one request; with ``gated``, every application runs, then all answer in one turn."""

    async def scenario() -> None:
        server = HttpServer(app, limits or Limits(), None, ("127.0.0.1", 8080))
        app.gate = asyncio.Event() if gated else None
        app.conns = open_connections(server, connections, app.log)
        for conn in app.conns:
            conn.data_received(REQUEST)
        for _ in range(3):
            await asyncio.sleep(0)
        if app.gate is not None:
            assert server.running == connections
            app.gate.set()
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(scenario())


def test_the_answers_of_one_turn_reach_the_transports_together_each_in_one_write() -> None:
    app = Answering(b"hello", [])
    run(app, 4)
    assert app.marks == [0, 0, 0, 0], f"an answer reached its transport before the turn ended: {app.marks}"
    writes = [entry for entry in app.log if entry[0] == "write"]
    assert [n for _, n, _ in writes] == [0, 1, 2, 3]
    for _, _, data in writes:
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
        assert data.endswith(b"\r\n\r\nhello"), data


def test_a_lone_request_is_answered_at_once() -> None:
    app = Answering(b"hello", [])
    run(app, 1, gated=False)
    assert app.marks == [1], "a lone answer waited for the turn's end, with nothing to join it"


def test_a_connection_over_its_write_buffer_in_one_turn_hands_it_over_at_once() -> None:
    limits = Limits()
    app = Answering(b"x" * (limits.write_buffer_bytes + 1), [])
    run(app, 2, limits)
    assert app.marks[0] == 1, "a turn held more than write_buffer_bytes of one connection's answers"
    assert [kind for kind, _, _ in app.log] == ["write", "write"]


def test_a_close_in_the_turn_an_answer_was_written_comes_after_that_answer() -> None:
    app = Answering(b"first", [])

    def malformed() -> None:
        # Bytes that arrive in the turn the answer was written (uvloop calls data_received from its
        # poll phase, between two runs of the ready callbacks): malformed, so the connection closes
        # once the answer under way is out.
        if len(app.marks) == 1:
            app.conns[0].data_received(b"NOT HTTP\r\n\r\n")

    app.after.append(malformed)
    run(app, 2)
    assert app.marks[0] == 0
    first = [(kind, data) for kind, n, data in app.log if n == 0]
    assert [kind for kind, _ in first] == ["write", "close"], f"the close overtook the answer: {app.log}"
    assert first[0][1].endswith(b"first")
