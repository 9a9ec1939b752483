"""Every bound of the server's HTTP layer, broken on loopback by a client that would grow it without one.

Each test is written so that, with its bound removed, it fails instead of
hanging: every loop stops by itself (a byte budget, a deadline) and the
assertion names what an unbounded server did. The servers here run with small
limits (a second, a few connections) so the suite stays fast; the defaults are
in ``mlapp.settings.Limits``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlapp import contract
from mlapp.serve import http
from mlapp.settings import Limits
from tools.devcert import Certificates

from .helpers import MODEL_NAME, PASSWORD, USER, HeldOut, Server, TrainedModel, app_env, png_of

TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BODY_LIMIT = 64 * 1024
TIGHT = {
    "MLAPP_HEADER_TIMEOUT": "1",
    "MLAPP_BODY_TIMEOUT": "1",
    "MLAPP_KEEP_ALIVE_TIMEOUT": "1",
    "MLAPP_MAX_CONNECTIONS": "20",
    "MLAPP_MAX_BODY_BYTES": str(BODY_LIMIT),
    "MLAPP_MAX_BODY_BYTES_HELD": str(3 * BODY_LIMIT),
    "MLAPP_FAILED_LOGIN_BURST": "100000",
}
DEFAULTS = Limits()


@pytest.fixture(scope="module")
def tight(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("tight"), trained.store, None, None, **TIGHT)
    try:
        srv.wait_for("/v2/health/ready")
        yield srv
    finally:
        srv.stop()


@contextlib.contextmanager
def connect(srv: Server, timeout: float = 5, source: str = "127.0.0.1") -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout, source_address=(source, 0)) as conn:
        yield conn


def read_all(conn: socket.socket, limit: int = 4 << 20) -> bytes:
    """What the server sends until it closes (or the socket's timeout), at most ``limit`` bytes."""
    out = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while len(out) < limit and (chunk := conn.recv(65536)):
            out += chunk
    return out


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def send_until_refused(conn: socket.socket, first: bytes, piece: bytes, budget: int) -> int:
    """Send ``first`` then ``piece`` repeatedly, up to ``budget`` bytes; the bytes sent before the server stopped us."""
    sent = 0
    try:
        conn.sendall(first)
        sent += len(first)
        while sent < budget:
            conn.sendall(piece)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


def still_open(conns: list[socket.socket]) -> int:
    """How many of ``conns`` the server has not closed (nothing to read and no EOF: still open)."""
    count = 0
    for conn in conns:
        conn.setblocking(False)
        try:
            count += conn.recv(1) != b""
        except BlockingIOError:
            count += 1
        except ConnectionResetError:
            pass
    return count


def live(srv: Server) -> None:
    assert httpx.get(srv.url + contract.LIVE_PATH, timeout=5).status_code == 200


# --- the head ---------------------------------------------------------------------------


def test_endless_header_lines_are_refused_431_without_reading_on(tight: Server) -> None:
    with connect(tight) as conn:
        sent = send_until_refused(
            conn, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n", b"X-a: " + b"a" * 1000 + b"\r\n", 8 << 20
        )
        response = read_all(conn)
    assert status_of(response) == 431, response
    assert sent < 4 << 20, f"the server read {sent} bytes of headers before refusing"
    live(tight)


def test_one_header_value_without_end_is_refused_431(tight: Server) -> None:
    with connect(tight) as conn:
        first = b"GET /v2/health/live HTTP/1.1\r\nX-big: "
        sent = send_until_refused(conn, first, b"v" * 16384, 32 << 20)
        response = read_all(conn)
    assert status_of(response) == 431, response
    assert sent < 16 << 20, f"the server read {sent} bytes of one header value before refusing"


def test_too_many_header_fields_are_431(tight: Server) -> None:
    head = b"GET /v2/health/live HTTP/1.1\r\n" + b"".join(
        b"X-%d: 1\r\n" % i for i in range(DEFAULTS.max_header_count + 1)
    )
    with connect(tight) as conn:
        conn.sendall(head + b"\r\n")
        assert status_of(read_all(conn)) == 431


def test_a_long_url_is_414(tight: Server) -> None:
    with connect(tight) as conn:
        conn.sendall(b"GET /" + b"a" * (DEFAULTS.max_url_bytes + 1) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(read_all(conn)) == 414


def test_headers_that_never_finish_are_408_after_the_header_timeout(tight: Server) -> None:
    with connect(tight, timeout=10) as conn:
        conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        response = read_all(conn)
    assert response, "the server kept a connection whose headers never finished"
    assert status_of(response) == 408
    assert time.monotonic() - started < 9  # the socket's own timeout is 10 s


def test_a_slow_drip_of_header_bytes_is_cut_at_the_header_timeout(tight: Server) -> None:
    """Bytes that keep arriving do not extend the deadline: it runs from the request's first byte."""
    with connect(tight, timeout=10) as conn:
        conn.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        deadline = time.monotonic() + 8
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                conn.sendall(b"X: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            time.sleep(0.2)
        assert closed or status_of(read_all(conn)) == 408, "a slow drip kept the request open for 8 s"


def test_a_connection_that_sends_nothing_is_closed(tight: Server) -> None:
    with connect(tight, timeout=10) as conn:
        started = time.monotonic()
        assert read_all(conn) == b""
        assert time.monotonic() - started < 9, "an idle connection stayed open"


def test_an_idle_kept_alive_connection_is_closed_after_its_answer(tight: Server) -> None:
    with connect(tight, timeout=10) as conn:
        conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_all(conn)  # the answer, then the close after the keep-alive timeout
    assert status_of(response) == 200
    assert response.count(b"HTTP/1.1 ") == 1


def test_malformed_requests_are_400(tight: Server) -> None:
    with connect(tight) as conn:
        conn.sendall(b"NOT-HTTP\r\n\r\n")
        assert status_of(read_all(conn)) == 400


# --- bodies -----------------------------------------------------------------------------


def _post_head(length: int | None, path: str = f"/v2/models/{MODEL_NAME}/infer") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {TOKEN}\r\n"
        f"Content-Type: application/json\r\n{size}\r\n"
    ).encode()


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(tight: Server) -> None:
    with connect(tight) as conn:
        conn.sendall(_post_head(BODY_LIMIT + 1))
        assert status_of(read_all(conn)) == 413


def test_a_chunked_body_over_the_limit_is_413(tight: Server) -> None:
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    with connect(tight) as conn:
        sent = send_until_refused(conn, _post_head(None), chunk, 32 << 20)
        response = read_all(conn)
    assert status_of(response) == 413, response
    # Loopback's socket buffers take a few MiB the server never reads.
    assert sent < 16 << 20, f"the server read {sent} bytes of a chunked body over a {BODY_LIMIT}-byte limit"


def test_a_body_that_never_completes_is_408_after_the_body_timeout(tight: Server) -> None:
    with connect(tight, timeout=10) as conn:
        conn.sendall(_post_head(1000) + b"{")
        started = time.monotonic()
        response = read_all(conn)
    assert response, "the server waited for the rest of the body for 10 s"
    assert status_of(response) == 408
    assert time.monotonic() - started < 9


def test_bodies_held_at_once_are_bounded_503(tight: Server) -> None:
    """Three bodies fill the budget (3 x the body limit): the fourth is told to retry, not buffered."""
    conns = [socket.create_connection(("127.0.0.1", tight.port), timeout=5) for _ in range(4)]
    try:
        for conn in conns[:3]:
            conn.sendall(_post_head(BODY_LIMIT) + b"[")
        time.sleep(0.3)  # the three are admitted and hold their share
        conns[3].sendall(_post_head(BODY_LIMIT) + b"[")
        response = read_all(conns[3])
        assert status_of(response) == 503, response
        assert b"retry-after: 1" in response.lower()
    finally:
        for conn in conns:
            conn.close()


def test_a_stranger_cannot_hold_a_body_without_credentials(tight: Server) -> None:
    head = (f"POST /v2/models/{MODEL_NAME}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY_LIMIT}\r\n\r\n").encode()
    with connect(tight) as conn:
        conn.sendall(head + b"{")
        response = read_all(conn)
    assert status_of(response) == 401  # answered at once, and the connection closed: the body is never read


# --- after the body ----------------------------------------------------------------------


def vm_kib(pid: int, field: str = "VmRSS") -> int:
    """``field`` of process ``pid`` in KiB, from Linux's /proc."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_a_trailer_value_that_never_ends_is_431_and_the_server_stays_flat(
    trained: TrainedModel, tmp_path: Path
) -> None:
    """After a chunked body's last chunk come trailer fields, which the parser reads as header fields and
    holds while one is unfinished: one value streamed for the body timeout (60 s, the default, kept here)
    grew the server by what was sent and kept its loop copying it, while the kubelet's probes waited."""
    srv = Server(tmp_path, trained.store, MLAPP_FAILED_LOGIN_BURST="100000")
    budget = 32 << 20
    probes: list[int | str] = []
    done = threading.Event()

    def probe_the_internal_port() -> None:
        while True:
            try:
                probes.append(httpx.get(srv.metrics_url + contract.LIVE_PATH, timeout=10).status_code)
            except httpx.HTTPError as e:
                probes.append(type(e).__name__)
            if done.wait(0.1):
                return

    try:
        srv.wait_for("/v2/health/ready")
        # Trailer fields a client may send (a checksum) are read past: the request is answered.
        with connect(srv) as conn:
            conn.sendall(_post_head(None) + b"2\r\n{}\r\n0\r\nX-Checksum: 1\r\n\r\n")
            assert status_of(read_all(conn, limit=4096)) == 400  # "{}" has no inputs: read, and answered
        before = vm_kib(srv.proc.pid)
        prober = threading.Thread(target=probe_the_internal_port)
        prober.start()
        try:
            with connect(srv, timeout=10) as conn:
                sent = send_until_refused(conn, _post_head(None) + b"0\r\nX-Trailer: ", b"v" * 16384, budget)
                grown = vm_kib(srv.proc.pid) - before  # the connection still open: what it holds is held
                response = read_all(conn)
        finally:
            done.set()
            prober.join(30)
    finally:
        srv.stop()
    assert grown < 8 << 10, f"the server grew {grown} KiB while {sent} bytes of one trailer value came"
    assert status_of(response) == 431, response
    assert sent < 16 << 20, f"the server read {sent} bytes of one trailer value before refusing"
    assert set(probes) == {200}, f"the internal port's liveness answered {probes}"


# --- connections and pipelining -------------------------------------------------------


def test_pipelined_requests_are_answered_up_to_the_cap_then_the_connection_closes(tight: Server) -> None:
    requests = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n" * 7000
    with connect(tight, timeout=5) as conn:
        send_until_refused(conn, requests, b"", len(requests))
        answers = read_all(conn, limit=16 << 20).count(b"HTTP/1.1 200")
    assert 1 <= answers <= DEFAULTS.max_pipelined, f"{answers} pipelined requests were read ahead and answered"
    live(tight)


def test_connections_are_capped_and_the_idle_longest_make_room(tight: Server) -> None:
    cap = int(TIGHT["MLAPP_MAX_CONNECTIONS"])
    conns = []
    try:
        for _ in range(cap * 3):
            conns.append(socket.create_connection(("127.0.0.1", tight.port), timeout=2))
            time.sleep(0.005)
        time.sleep(0.3)
        open_ = still_open(conns)
        assert open_ <= cap, f"{open_} idle connections held open with a cap of {cap}"
        # A newcomer (a probe) still gets in: the idle longest made room for it.
        live(tight)
    finally:
        for conn in conns:
            conn.close()


def test_expect_100_continue_and_head(tight: Server) -> None:
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 64}]})
    head = _post_head(len(body)).replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    with connect(tight) as conn:
        conn.sendall(head)
        assert conn.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(body.encode() + b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = read_all(conn)
    first, _, rest = response.partition(b"\r\n\r\n")
    assert status_of(first) == 200
    second = rest[rest.index(b"HTTP/1.1 ") :]
    assert status_of(second) == 200
    assert second.endswith(b"\r\n\r\n"), "a HEAD answer carried a body"


# --- failed logins --------------------------------------------------------------------


def test_failed_logins_are_throttled_per_client_without_locking_out_others(
    trained: TrainedModel, tmp_path: Path
) -> None:
    srv = Server(tmp_path, trained.store, MLAPP_FAILED_LOGIN_BURST="3")
    try:
        srv.wait_for("/v2/health/ready")
        url = f"/v2/models/{MODEL_NAME}"
        guesser = httpx.Client(base_url=srv.url, transport=httpx.HTTPTransport(local_address="127.0.0.1"))
        user = httpx.Client(base_url=srv.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        statuses = [guesser.get(url, auth=(USER, f"guess-{i}")).status_code for i in range(6)]
        assert statuses[:3] == [401, 401, 401]
        assert set(statuses[3:]) == {429}, statuses
        throttled = guesser.get(url, auth=(USER, PASSWORD))
        assert throttled.status_code == 429  # not even checked: a guess would learn nothing
        assert int(throttled.headers["retry-after"]) >= 1
        # The real user, from another address, is neither slowed nor locked out.
        assert user.get(url, auth=(USER, PASSWORD)).status_code == 200
        assert user.get(url, auth=(USER, "typo")).status_code == 401
        # No credentials at all is a challenge, not a failed login.
        assert guesser.get(url).status_code == 401
    finally:
        srv.stop()


# --- shutdown --------------------------------------------------------------------------


def test_shutdown_finishes_inside_the_grace_period_even_with_a_request_held(
    trained: TrainedModel, tmp_path: Path
) -> None:
    """A request whose body never completes cannot hold the process past the drain."""
    srv = Server(tmp_path, trained.store, MLAPP_DRAIN_SECONDS="2", MLAPP_BODY_TIMEOUT="600")
    srv.wait_for("/v2/health/ready")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as held:
        held.sendall(_post_head(1000) + b"{")
        time.sleep(0.3)
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(timeout=15)
        took = time.monotonic() - started
    srv.stop()
    assert code == 0
    assert took < 2 + 3, f"shutdown took {took:.1f} s with a 2 s drain"
    assert "still open after the 2 s drain" in srv.log


def test_the_drain_fits_the_grace_period_with_its_margin() -> None:
    assert (
        contract.PRESTOP_SECONDS + contract.DRAIN_SECONDS + contract.SHUTDOWN_MARGIN_SECONDS <= contract.GRACE_SECONDS
    )
    assert Limits().header_timeout < contract.DRAIN_SECONDS  # a request being read can finish arriving


# --- TLS -------------------------------------------------------------------------------


def test_tls_end_to_end_verified_against_the_ca(tls_server: Server, certificates: Certificates) -> None:
    context = ssl.create_default_context(cafile=str(certificates.ca))
    body = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 64}]}
    with httpx.Client(verify=context) as client:
        for host in ("127.0.0.1", "localhost"):
            url = tls_server.url.replace("127.0.0.1", host)
            response = client.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=body, auth=(USER, PASSWORD))
            assert response.status_code == 200, response.text
            assert len(response.json()["outputs"][0]["data"]) == 10
    # The metrics port stays plain HTTP, inside the cluster.
    assert httpx.get(tls_server.metrics_url + contract.METRICS_PATH).status_code == 200


def test_tls_refuses_clients_that_do_not_trust_the_ca(tls_server: Server) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_server.url + contract.LIVE_PATH)


def test_plain_http_to_the_tls_port_is_told_to_use_https(tls_server: Server, certificates: Certificates) -> None:
    """Bug: plain HTTP to the TLS port got an empty reply (the failed handshake closed the connection), which
    says nothing to a person who typed http://. It is answered 400 naming the https URL, then closed."""
    plain = tls_server.url.replace("https://", "http://")
    response = httpx.get(plain + contract.LIVE_PATH, timeout=5)
    assert response.status_code == 400
    assert response.headers["connection"] == "close"
    assert response.json() == {"error": f"this port speaks HTTPS; use https://127.0.0.1:{tls_server.port}/"}
    with connect(tls_server) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: a browser\r\n\r\n")
        started = time.monotonic()
        answer = read_all(conn)  # to the server's close
        assert time.monotonic() - started < http.PLAIN_LINGER_SECONDS + 2
    assert status_of(answer) == 400
    assert answer.endswith(b'{"error":"this port speaks HTTPS; use https://localhost:8080/"}')
    # TLS clients on the same port are served as before.
    context = ssl.create_default_context(cafile=str(certificates.ca))
    assert httpx.get(tls_server.url + contract.LIVE_PATH, verify=context, timeout=5).status_code == 200


def test_a_plain_http_client_that_keeps_sending_is_closed_within_the_linger_bound(tls_server: Server) -> None:
    with connect(tls_server, timeout=10) as conn:
        conn.sendall(b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        started = time.monotonic()
        sent = send_until_refused(conn, b"", b"x" * 65536, 100_000_000)
        took = time.monotonic() - started
    assert took < http.PLAIN_LINGER_SECONDS + 5, f"the server read on for {took:.1f} s"
    assert sent < 100_000_000, "the server never stopped reading"


@pytest.mark.parametrize(
    ("head", "hint"),
    [
        (b"GET / HTTP/1.1\r\nHost: model.example:8443\r\n\r\n", "https://model.example:8443/"),
        (b"GET / HTTP/1.1\r\nhost:[::1]:8080\r\n\r\n", "https://[::1]:8080/"),
        (b"GET / HTTP/1.1\r\nHost: a<script>\r\n\r\n", "https://<host>:<port>/"),  # not repeated
        (b"GET / HTTP/1.0\r\n\r\n", "https://<host>:<port>/"),
    ],
)
def test_the_https_hint_repeats_only_a_host_and_port(head: bytes, hint: str) -> None:
    assert http.https_hint(head) == f"this port speaks HTTPS; use {hint}"


def test_a_tls_client_that_closes_its_side_leaves_nothing_in_the_log(
    tls_server: Server, certificates: Certificates
) -> None:
    """A TLS client that sends close_notify after its answer: the server's protocol said "keep the write
    side open" and asyncio's TLS layer, which has no half-close, logged a warning about it for each
    client, so that anyone, without credentials, could fill the log."""
    context = ssl.create_default_context(cafile=str(certificates.ca))
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", tls_server.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(conn.recv(65536)) == 200
            conn.unwrap()  # returns with the server's close_notify: it has handled the client's by then
    assert "eof_received" not in tls_server.log, tls_server.log[-2000:]


def test_a_tls_client_that_never_says_hello_is_closed(tls_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=20) as conn:
        started = time.monotonic()
        assert read_all(conn) == b""
        assert time.monotonic() - started < DEFAULTS.header_timeout + 5


def test_the_client_verifies_the_server_against_the_ca(
    tls_server: Server, certificates: Certificates, held_out: HeldOut, tmp_path: Path
) -> None:
    digit = tmp_path / "digit.png"
    digit.write_bytes(png_of(held_out.images[0], scale=8, dark_on_light=True))
    env = app_env(MLAPP_AUTH_USERNAME=USER, MLAPP_AUTH_PASSWORD=PASSWORD)
    ask = [sys.executable, "-m", "mlapp.client", tls_server.url, str(digit)]
    trusted = subprocess.run(
        [*ask, "--cacert", str(certificates.ca)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert trusted.returncode == 0, trusted.stderr
    untrusted = subprocess.run(ask, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert untrusted.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_connections_that_never_start_tls_cannot_starve_the_probes(
    trained: TrainedModel, certificates: Certificates, tmp_path: Path
) -> None:
    """Half-open connections in their handshake hold slots too; the oldest make room for a newcomer."""
    cap = 20
    srv = Server(tmp_path, trained.store, None, (certificates.cert, certificates.key), MLAPP_MAX_CONNECTIONS=str(cap))
    conns: list[socket.socket] = []
    try:
        srv.wait_for("/v2/health/ready")
        for _ in range(cap * 3):
            conns.append(socket.create_connection(("127.0.0.1", srv.port), timeout=2))
        time.sleep(0.3)
        context = ssl.create_default_context(cafile=str(certificates.ca))
        for _ in range(5):  # the kubelet's probes, each a new connection
            assert httpx.get(srv.url + contract.LIVE_PATH, verify=context, timeout=5).status_code == 200
        open_ = still_open(conns)
        assert open_ <= cap, f"{open_} silent connections held open with a cap of {cap}"
    finally:
        for conn in conns:
            conn.close()
        srv.stop()
