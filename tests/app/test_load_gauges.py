"""The load gauges an autoscaler reads: ``mlapp_requests_in_flight`` and ``mlapp_batch_queue_requests``,
and ``mlapp_requests_in_flight_seconds_total``, the in-flight count integrated over time.

Real clients on loopback against a real server process. The slow server's ONNX Runtime runs take
``RUN_SECONDS`` (tests/app/slow_runs.py), so requests can be seen running and queued; the gauges
must count exactly those, and come back to 0 whatever way a request ends: answered, refused, its
model failing, its body timing out, its client gone before or after its body arrived.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlapp.serve.metrics import Occupancy

from .helpers import MODEL_NAME, PASSWORD, USER, Server, TrainedModel
from .slow_runs import FAIL_VALUE

SLOW_RUNS = [str(Path(__file__).resolve().parent / "slow_runs.py")]
RUN_SECONDS = 0.4
BODY_TIMEOUT = 1
INFER = f"/v2/models/{MODEL_NAME}/infer"
IN_FLIGHT = "mlapp_requests_in_flight"
QUEUED = "mlapp_batch_queue_requests"
IN_FLIGHT_SECONDS = "mlapp_requests_in_flight_seconds_total"


def body_of(value: float = 0.5) -> bytes:
    """One 8x8 digit, every pixel ``value``."""
    tensor = {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [value] * 64}
    return json.dumps({"inputs": [tensor]}).encode()


def request(
    body: bytes, *, path: str = INFER, auth: bool = True, content_type: str = "application/json", length: int = -1
) -> bytes:
    """A whole HTTP/1.1 POST; ``length`` declares another Content-Length than the body's."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    head.append(f"Content-Length: {len(body) if length < 0 else length}")
    if auth:
        head.append("Authorization: Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def answer_status(conn: socket.socket) -> int:
    """The status of the one answer on ``conn``, read whole (its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(rest) < length:
        rest += conn.recv(65536)
    return int(head.split(b" ", 2)[1])


def gauges(server: Server) -> tuple[int, int]:
    """(in flight, queued) as the server's metrics port says now."""
    text = httpx.get(server.metrics_url + "/metrics", timeout=5).text
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return int(values[IN_FLIGHT]), int(values[QUEUED])


def in_flight_seconds(server: Server) -> float:
    """``mlapp_requests_in_flight_seconds_total`` as the server's metrics port says now."""
    text = httpx.get(server.metrics_url + "/metrics", timeout=5).text
    (value,) = (s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == IN_FLIGHT_SECONDS)
    return value


def settle(server: Server, want: tuple[int, int], timeout: float = 5) -> None:
    """Wait until the gauges read ``want``; fail naming what they read instead."""
    deadline = time.monotonic() + timeout
    seen = gauges(server)
    while seen != want and time.monotonic() < deadline:
        time.sleep(0.01)
        seen = gauges(server)
    assert seen == want, f"(in flight, queued) is {seen}, expected {want}"


def statuses(server: Server) -> dict[str, float]:
    """Inference answers so far by status, from mlapp_requests_total."""
    text = httpx.get(server.metrics_url + "/metrics", timeout=5).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "mlapp_requests_total" and s.labels["route"].endswith("/infer"):
                counts[s.labels["status"]] = counts.get(s.labels["status"], 0) + s.value
    return counts


@contextlib.contextmanager
def connected(server: Server) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        yield conn


@pytest.fixture(scope="module")
def slow(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("slow"),
        trained.store,
        wrapper=SLOW_RUNS,
        MLAPP_BODY_TIMEOUT=str(BODY_TIMEOUT),
        MLAPP_TEST_RUN_SECONDS=str(RUN_SECONDS),  # slow_runs.SECONDS_VARIABLE
    )
    try:
        srv.wait_for("/v2/health/ready")
        settle(srv, (0, 0))
        yield srv
    finally:
        srv.stop()


def test_requests_running_and_queued_are_counted_until_answered(slow: Server) -> None:
    """One request on the worker thread, then three that arrive meanwhile: four in flight, three queued."""
    with connected(slow) as a, connected(slow) as b, connected(slow) as c, connected(slow) as d:
        a.sendall(request(body_of()))
        settle(slow, (1, 0))  # running, not queued
        for conn in (b, c, d):
            conn.sendall(request(body_of()))
        settle(slow, (4, 3))
        assert [answer_status(conn) for conn in (a, b, c, d)] == [200] * 4
        settle(slow, (0, 0))


def test_clients_gone_mid_run_and_mid_queue_are_counted_until_their_runs_end(slow: Server) -> None:
    """The run of a caller who left still happens (the batcher does not cancel it): counted until it ends,
    then never again."""
    a, b = (socket.create_connection(("127.0.0.1", slow.port)) for _ in range(2))
    a.sendall(request(body_of()))
    settle(slow, (1, 0))
    b.sendall(request(body_of()))
    settle(slow, (2, 1))
    for conn in (a, b):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        conn.close()
    settle(slow, (0, 0), timeout=3 * RUN_SECONDS + 5)
    with connected(slow) as conn:  # and the server goes on answering
        conn.sendall(request(body_of()))
        assert answer_status(conn) == 200
    settle(slow, (0, 0))


def test_a_client_gone_mid_body_is_never_counted(slow: Server) -> None:
    full = request(body_of())
    with connected(slow) as conn:
        conn.sendall(full[: len(full) - 100])
        time.sleep(0.2)
        assert gauges(slow) == (0, 0), "a request still sending its body was counted"
    time.sleep(0.2)
    assert gauges(slow) == (0, 0)


def test_a_body_that_times_out_is_never_counted(slow: Server) -> None:
    full = request(body_of())
    with connected(slow) as conn:
        conn.sendall(full[: len(full) - 100])
        assert answer_status(conn) == 408
    assert gauges(slow) == (0, 0)


def test_refused_and_failed_requests_leave_nothing_counted(slow: Server) -> None:
    """401, 404, 415, 413, 400 (bad JSON, wrong shape) and a model that raises: each answered, none left behind."""
    before = statuses(slow)
    refusals = [
        (request(body_of(), auth=False), 401),
        (request(body_of(), path="/v2/models/another/infer"), 404),
        (request(body_of(), content_type="text/plain"), 415),
        (request(b"", length=9 << 20), 413),
        (request(b"{not json"), 400),
        (request(body_of().replace(b"[1, 1, 8, 8]", b"[1, 1, 8, 9]")), 400),
        (request(body_of(FAIL_VALUE)), 400),
    ]
    for raw, status in refusals:
        with connected(slow) as conn:
            conn.sendall(raw)
            assert answer_status(conn) == status, raw[:80]
    settle(slow, (0, 0))
    after = statuses(slow)
    assert after.get("400", 0) - before.get("400", 0) == 3
    assert after.get("401", 0) - before.get("401", 0) == 1


def test_a_failing_request_sharing_a_run_leaves_nothing_counted(slow: Server) -> None:
    """A shared run that fails is run again alone, request by request: 400 for the one at fault, 200 for the rest."""
    with connected(slow) as a, connected(slow) as bad, connected(slow) as good:
        a.sendall(request(body_of()))
        settle(slow, (1, 0))
        bad.sendall(request(body_of(FAIL_VALUE)))
        good.sendall(request(body_of()))
        settle(slow, (3, 2))  # the two share the next run
        assert [answer_status(conn) for conn in (a, bad, good)] == [200, 400, 200]
    settle(slow, (0, 0))


def test_a_server_not_ready_counts_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "store"
    empty.mkdir()
    srv = Server(tmp_path, empty)
    try:
        srv.wait_for("/v2/health/live")
        for _ in range(3):
            with connected(srv) as conn:
                conn.sendall(request(body_of()))
                assert answer_status(conn) == 503
        assert gauges(srv) == (0, 0)
    finally:
        srv.stop()


CLIENTS = 24
REQUESTS_EACH = 30


async def _client(port: int, first: int) -> tuple[int, int]:
    """REQUESTS_EACH requests, each on a new connection; two in eight are abandoned, one with its body half
    sent, one once sent whole. (answered 200, abandoned)."""
    raw = request(body_of(0.25))
    answered = abandoned = 0
    for i in range(first, first + REQUESTS_EACH):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw[: len(raw) // 2] if i % 8 == 0 else raw)
        await writer.drain()
        if i % 8 in (0, 1):
            writer.transport.abort()
            abandoned += 1
            continue
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        await reader.readexactly(length)
        answered += head.startswith(b"HTTP/1.1 200 ")
        writer.close()
        await writer.wait_closed()
    return answered, abandoned


async def _hammer(server: Server) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    clients = asyncio.gather(*(_client(server.port, first) for first in range(CLIENTS)))
    samples: list[tuple[int, int]] = []
    async with httpx.AsyncClient() as scraper:
        while not clients.done():
            text = (await scraper.get(server.metrics_url + "/metrics")).text
            values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
            samples.append((int(values[IN_FLIGHT]), int(values[QUEUED])))
            await asyncio.sleep(0.005)
    return await clients, samples


def test_concurrent_clients_some_leaving_keep_the_gauges_bounded_and_back_to_zero(server: Server) -> None:
    """Clients at once on the fast model, a quarter of them leaving mid-body or mid-request; scraped meanwhile."""
    results, samples = asyncio.run(_hammer(server))
    answered = sum(r[0] for r in results)
    assert answered == sum(REQUESTS_EACH - r[1] for r in results), "a request that was waited for failed"
    assert samples, "the gauges were never scraped during the load"
    for in_flight, queued in samples:
        assert 0 <= queued <= in_flight <= CLIENTS, f"(in flight, queued) read {(in_flight, queued)}"
    settle(server, (0, 0))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_occupancy_integrates_the_count_over_time_exactly() -> None:
    """Each count times how long it was held, the time since the last change included at every read."""
    clock = Clock()
    occupancy = Occupancy(clock)
    clock.now += 5  # nothing in flight: nothing added
    assert occupancy.integral() == 0
    occupancy.set(1)
    clock.now += 2
    assert occupancy.integral() == 2, "1 in flight for 2 s, read before the next change"
    occupancy.set(3)
    clock.now += 0.5
    occupancy.set(2)
    clock.now += 1
    assert occupancy.integral() == 2 + 3 * 0.5 + 2 * 1
    occupancy.set(0)
    clock.now += 10
    assert occupancy.integral() == 5.5, "back to 0: the integral stays where it was"
    assert occupancy.level == 0


def test_in_flight_seconds_is_a_counter(slow: Server) -> None:
    text = httpx.get(slow.metrics_url + "/metrics", timeout=5).text
    assert f"# TYPE {IN_FLIGHT_SECONDS} counter" in text.splitlines()
    (family,) = (f for f in text_string_to_metric_families(text) if f.name + "_total" == IN_FLIGHT_SECONDS)
    assert family.type == "counter"


def test_in_flight_seconds_grows_by_each_requests_time_in_flight_and_only_then(slow: Server) -> None:
    """Four requests held in flight for at least one slow run each (one run, then three sharing the next): the
    counter grows by their request-seconds, between 4 x one run and 4 x the time between the two reads; idle,
    it does not grow; read meanwhile, it never decreases."""
    settle(slow, (0, 0))
    idle = in_flight_seconds(slow)
    time.sleep(0.2)
    assert in_flight_seconds(slow) == idle, "the counter grew with nothing in flight"
    start = time.monotonic()
    before = in_flight_seconds(slow)
    readings = [before]
    with connected(slow) as a, connected(slow) as b, connected(slow) as c, connected(slow) as d:
        a.sendall(request(body_of()))
        settle(slow, (1, 0))
        for conn in (b, c, d):
            conn.sendall(request(body_of()))
        settle(slow, (4, 3))
        readings.append(in_flight_seconds(slow))
        assert [answer_status(conn) for conn in (a, b, c, d)] == [200] * 4
    settle(slow, (0, 0))
    after = in_flight_seconds(slow)
    elapsed = time.monotonic() - start
    readings.append(after)
    assert readings == sorted(readings), f"the counter decreased: {readings}"
    grown = after - before
    assert 0.9 * 4 * RUN_SECONDS <= grown <= 4 * elapsed, (
        f"grew by {grown:.3f} request-seconds for 4 requests each in flight at least {RUN_SECONDS} s, "
        f"within {elapsed:.3f} s"
    )
