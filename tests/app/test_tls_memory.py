"""What TLS connections the server refuses leave behind in it: nothing, and no more than its connection limit meanwhile.

Each closed connection used to wait for the cyclic garbage collector (its parser
holds its bound methods), with its TLS transport's buffers; after ``gc.freeze()``
the collector runs rarely, and thousands of them were held at once. And a closed
TLS connection waits for the client's close_notify, which a client that never
reads never sends, without counting against the limit. Both are measured on
``python -m mlapp.serve`` in its own process, in sizes (RSS, file descriptors).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from mlapp.settings import Limits
from tools.devcert import Certificates

from .helpers import Server, TrainedModel

MAX_CONNECTIONS = 64
REFUSED = 2000
# A header value that never ends, past ``max_header_bytes`` (431 from the server's own count), and
# one field too many (431 from inside the parser's callback): the two ways a head is refused.
HEADS = (
    b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-a: " + b"a" * (Limits().max_header_bytes + 4096),
    b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"X-a: 1\r\n" * (Limits().max_header_count + 1) + b"\r\n",
)
# Before the fix these 2,000 grew the server by 39 MiB, and 3,000 by 158 MiB (BENCHMARKS.md, "TLS
# connections refused"); after it, by 1 MiB or less. Room for the allocator, and a fail on ~300 held.
MAX_GROWTH_MIB = 16


@pytest.fixture(scope="module")
def server(
    trained: TrainedModel, certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("tls-memory"),
        trained.store,
        tls=(certificates.cert, certificates.key),
        MLAPP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        MLAPP_LOG_LEVEL="WARNING",
    )
    try:
        srv.wait_for("/v2/health/ready")
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client_context(certificates: Certificates) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificates.ca))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tls_connect(srv: Server, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    # Closing sends RST: thousands of connections leave no TIME_WAIT behind.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        return context.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def refused(srv: Server, context: ssl.SSLContext, count: int, statuses: Counter[bytes]) -> None:
    for i in range(count):
        with tls_connect(srv, context) as conn:
            conn.sendall(HEADS[i % len(HEADS)])
            statuses[conn.recv(12)[9:12]] += 1


def test_tls_connections_refused_431_leave_the_server_flat(server: Server, client_context: ssl.SSLContext) -> None:
    statuses: Counter[bytes] = Counter()
    refused(server, client_context, 50, statuses)  # the first ones' one-off allocations
    before = rss_mib(server.proc.pid)
    threads = [
        threading.Thread(target=refused, args=(server, client_context, REFUSED // 4, statuses)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    growth = rss_mib(server.proc.pid) - before
    assert statuses == {b"431": REFUSED + 50}, statuses
    assert growth < MAX_GROWTH_MIB, f"{REFUSED} TLS connections refused 431 grew the server by {growth:.0f} MiB"


def test_tls_clients_that_never_read_their_431_hold_no_more_than_the_limit(
    server: Server, client_context: ssl.SSLContext
) -> None:
    """Each one is closed, and waits for a close_notify its client never sends: still counted, and evicted first."""
    idle_fds = open_fds(server.proc.pid)
    held: list[ssl.SSLSocket] = []
    with contextlib.ExitStack() as stack:
        for _ in range(5 * MAX_CONNECTIONS):
            conn = stack.enter_context(tls_connect(server, client_context))
            conn.sendall(HEADS[0])
            held.append(conn)
        with tls_connect(server, client_context) as conn:  # a client after them still gets in
            conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(12) == b"HTTP/1.1 200"
        fds = open_fds(server.proc.pid) - idle_fds
    assert fds <= MAX_CONNECTIONS + 1, f"{len(held)} clients that never read their 431 held {fds} connections open"
