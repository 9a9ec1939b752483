"""Serving benchmark (not a test): mlapp.serve against KServe's Python model server.

    venv/bin/python bench/serve.py                      # everything, ~3 minutes
    venv/bin/python bench/serve.py --skip-sizes --concurrency 1,16 --duration 5
    venv/bin/python bench/serve.py --baseline-app ../old/app --skip-kserve --rounds 3   # before/after a change

Both servers get the same ONNX model (trained here once, into bench/.work) and
the same Open Inference Protocol v2 request (one 8x8 digit), over loopback
only, one worker process each, in two bodies: `json` (the tensor as JSON
numbers, the answer as JSON) and `binary` (the binary tensor data extension
both ways, as tritonclient's defaults send it: the JSON header, then the 256
raw bytes of the FP32 tensor, and the answer's 40 bytes raw after its header). Every server's answer is checked (the
digit is a zero) before anything is timed; then the servers run side by side
and the load runs interleave: each round visits every concurrency level, and at
each level every server in turn, so drift on the machine hits them alike.
Figures are medians over --rounds. --baseline-app adds a second mlapp.serve,
run from another checkout's app/ (e.g. a git worktree of the last release). Load comes from `wrk`
(`apt-get install wrk`), a separate C process with one thread, bounded by
--duration per run. Also measured: process start to /v2/health/ready, and the
installed size of the server's dependencies against a torch install.

The KServe peer runs from its own venv, bench/.venv-kserve, created from
bench/requirements-kserve.txt on first use (its protobuf pin differs from ours).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

REPO = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is on the path but not the repository (tools.devcert).
sys.path.insert(0, str(REPO))
from tools.devcert import make_certificates  # noqa: E402

BENCH = REPO / "bench"
WORK = BENCH / ".work"
KSERVE_VENV = BENCH / ".venv-kserve"
MODEL = "digits"
VERSION = "bench"
USER, PASSWORD = "bench", "bench-password"
# The rows one request may carry on our server's defaults (mlapp/settings.py max_batch 64 times
# mlapp/serve/handlers.py ROWS_PER_MAX_BATCH 16).
MAX_ROWS = 64 * 16
BASIC_AUTH = "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@dataclass
class Run:
    server: str
    body: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def app_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAPP_")}
    env["PYTHONPATH"] = str(REPO / "app")
    env.update(extra)
    return env


def ensure_model() -> Path:
    store = WORK / "store"
    # Always through the trainer: it does nothing when the version is completely
    # published, and trains again when it is not (or was written before checksums).
    log("training the benchmark model unless it is published (digits, 10 epochs)")
    subprocess.run(
        [sys.executable, "-m", "mlapp.train", "--model-dir", str(store), "--model-name", MODEL,
         "--version", VERSION, "--epochs", "10", "--batch-size", "32",
         "--learning-rate", "0.003", "--min-accuracy", "0.9"],
        env=app_env(OMP_NUM_THREADS="1"), check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return store


def ensure_kserve_venv() -> Path:
    python = KSERVE_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {KSERVE_VENV} from bench/requirements-kserve.txt")
        subprocess.run([sys.executable, "-m", "venv", str(KSERVE_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r",
             str(BENCH / "requirements-kserve.txt")],
            check=True,
        )  # fmt: skip
    return python


def get(url: str, timeout: float = 1.0, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:  # noqa: S310 - loopback only
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0


class Server:
    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], port: int, context: ssl.SSLContext | None = None
    ) -> None:
        self.name = name
        self.port = port
        # With a context the server speaks TLS, and readiness is checked against that context's CA.
        self.context = context
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{port}"
        self.infer_url = f"{self.url}/v2/models/{MODEL}/infer"
        self.log_path = WORK / f"{name}-{port}.log"
        self._log = self.log_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from process start to the first 200 on /v2/health/ready."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            if get(self.url + "/v2/health/ready", timeout=0.5, context=self.context) == 200:
                return time.perf_counter() - self.started
            time.sleep(0.002)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if the process has not exited after ``timeout`` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_ours(
    store: Path,
    name: str = "mlapp",
    app_dir: Path = REPO / "app",
    *,
    context: ssl.SSLContext | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Server:
    """mlapp.serve from ``app_dir`` on a free port; ``extra_env`` adds variables (TLS files, a metrics port)."""
    port = free_port()
    env = app_env(
        PYTHONPATH=str(app_dir),
        MLAPP_HOST="127.0.0.1", MLAPP_PORT=str(port), MLAPP_MODEL_DIR=str(store),
        MLAPP_MODEL_NAME=MODEL, MLAPP_MODEL_VERSION=VERSION,
        MLAPP_AUTH_USERNAME=USER, MLAPP_AUTH_PASSWORD=PASSWORD,
        **{"MLAPP_METRICS_PORT": str(free_port()), **(extra_env or {})},  # several servers side by side
    )  # fmt: skip
    return Server(name, [sys.executable, "-m", "mlapp.serve"], env, port, context)


def start_kserve(python: Path, store: Path) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_MODEL_NAME": MODEL,
        "BENCH_MODEL_PATH": str(store / MODEL / VERSION / "model.onnx"),
    }
    cmd = [str(python), str(BENCH / "kserve_model.py"), "--http_port", str(port),
           "--grpc_port", str(free_port()), "--enable_grpc", "false", "--workers", "1"]  # fmt: skip
    return Server("kserve", cmd, env, port)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def lua_string(data: bytes) -> str:
    """``data`` as a Lua string literal, every byte a three-digit decimal escape (wrk's LuaJIT reads
    "\\ddd"), so raw tensor bytes arrive exactly."""
    return '"' + "".join(f"\\{b:03d}" for b in data) + '"'


def wrk(url: str, body: Body, auth: bool, concurrency: int, duration: float) -> tuple[float, ...]:
    script = WORK / "request.lua"
    headers = dict(body.headers)
    if auth:
        headers["Authorization"] = BASIC_AUTH
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(body.data)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seconds = max(1, round(duration))
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "10s",
           "-s", str(script), url]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return rps, p50, p99, float(total), float(errors)


# sklearn's digits.images[0] (a zero), values 0-16.
DIGIT = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0,
         0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0,
         0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip


@dataclass(frozen=True)
class Body:
    name: str
    data: bytes
    headers: Mapping[str, str]


def json_body(rows: int = 1) -> Body:
    """``rows`` copies of the digit as JSON numbers, answered as JSON."""
    tensor = {"name": "input", "shape": [rows, 1, 8, 8], "datatype": "FP32",
              "data": [v / 16 for v in DIGIT] * rows}  # fmt: skip
    return Body("json", json.dumps({"inputs": [tensor]}).encode(), {"Content-Type": "application/json"})


def binary_body(rows: int = 1) -> Body:
    """The same rows as tritonclient sends them by default: ``set_data_from_numpy`` puts the tensor's
    little-endian FP32 bytes after the JSON header, and an ``infer`` naming no outputs asks for all of
    them raw (``binary_data_output``). The header length travels in Inference-Header-Content-Length."""
    raw = struct.pack(f"<{len(DIGIT) * rows}f", *(v / 16 for v in DIGIT * rows))
    tensor = {"name": "input", "shape": [rows, 1, 8, 8], "datatype": "FP32",
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    head = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
    return Body("binary", head + raw, headers)


BODIES: Final = {"json": json_body, "binary": binary_body}


def measure_startup(start: object, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        server: Server = start()  # type: ignore[operator]
        try:
            times.append(server.wait_ready())
        finally:
            server.stop()
    return times


def scores_of(data: bytes, header_length: str | None) -> list[float]:
    """The FP32 scores of an answer: JSON ``data``, or raw bytes after a header of ``header_length``."""
    if header_length is None:
        answer = json.loads(data)
        return [float(v) for v in next(o for o in answer["outputs"] if o["datatype"] == "FP32")["data"]]
    answer = json.loads(data[: int(header_length)])
    (output,) = answer["outputs"]
    raw = data[int(header_length) :]
    if output["datatype"] != "FP32" or output["parameters"]["binary_data_size"] != len(raw):
        raise RuntimeError(f"unexpected binary answer {answer} with {len(raw)} raw bytes")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def check_answer(server: Server, body: Body, auth: bool, rows: int) -> None:
    """The server answers the benchmark's request correctly (every row class 0, in the form asked) before it
    is timed."""
    request = urllib.request.Request(  # noqa: S310 - loopback only
        server.infer_url, data=body.data, method="POST", headers=dict(body.headers)
    )
    if auth:
        request.add_header("Authorization", BASIC_AUTH)
    with urllib.request.urlopen(request, timeout=10, context=server.context) as response:  # noqa: S310
        data, header_length = response.read(), response.headers.get("Inference-Header-Content-Length")
    if (header_length is not None) != (body.name == "binary"):
        raise RuntimeError(f"{server.name} answered the {body.name} request with header length {header_length}")
    scores = scores_of(data, header_length)
    if len(scores) != 10 * rows:
        raise RuntimeError(f"{server.name} answered {len(scores)} scores for {rows} rows ({body.name})")
    for row in range(rows):
        row_scores = scores[10 * row : 10 * row + 10]
        best = max(range(10), key=row_scores.__getitem__)
        if best != 0:
            raise RuntimeError(f"{server.name} classifies the benchmark's zero as {best} ({body.name}): {row_scores}")


def load_runs(
    servers: list[tuple[Server, bool]],
    bodies: list[Body],
    *,
    levels: list[int],
    duration: float,
    warmup: float,
    rounds: int,
    rows: int,
) -> list[Run]:
    """Every (server, body, level) ``rounds`` times, interleaved; one Run each, the median round's figures."""
    for server, auth in servers:
        for body in bodies:
            check_answer(server, body, auth, rows)
            wrk(server.infer_url, body, auth, max(levels), warmup)  # warm caches, allocator
    samples: dict[tuple[str, str, int], list[Run]] = {}
    for round_ in range(rounds):
        for c in levels:
            for body in bodies:
                for server, auth in servers:
                    rps, p50, p99, total, errors = wrk(server.infer_url, body, auth, c, duration)
                    samples.setdefault((server.name, body.name, c), []).append(
                        Run(server.name, body.name, c, rps, p50, p99, int(total), int(errors))
                    )
                    log(f"round {round_ + 1} {server.name} {body.name} c={c}: {rps:.0f} req/s p50 {p50:.2f} ms "
                        f"p99 {p99:.2f} ms errors {int(errors)}")  # fmt: skip
    runs = []
    for (name, body_name, c), rs in samples.items():
        runs.append(Run(
            name, body_name, c, statistics.median(r.rps for r in rs), statistics.median(r.p50_ms for r in rs),
            statistics.median(r.p99_ms for r in rs), sum(r.requests for r in rs), sum(r.errors for r in rs),
        ))  # fmt: skip
    return runs


def venv_size_mb(name: str, requirements: list[str]) -> float:
    venv = WORK / name
    marker = venv / ".installed"
    if not marker.exists():
        shutil.rmtree(venv, ignore_errors=True)
        log(f"installing {' '.join(requirements)} into {venv} to measure its size")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-compile",
             "--target", str(next(venv.glob("lib/python*/site-packages"))), *requirements],
            check=True,
        )  # fmt: skip
        marker.touch()
    site = next(venv.glob("lib/python*/site-packages"))
    out = subprocess.run(["du", "-sm", str(site)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--skip-kserve", action="store_true")
    parser.add_argument("--skip-sizes", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; figures are medians")
    parser.add_argument("--baseline-app", type=Path, help="also serve from this app/ directory, as mlapp-baseline")
    parser.add_argument("--bodies", default="json,binary", help=f"request bodies, of {', '.join(BODIES)}")
    parser.add_argument("--rows", type=int, default=1, help="digits per request (the tensor's first dimension)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench/serve.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 1
    levels = [int(c) for c in args.concurrency.split(",")]
    unknown = [b for b in args.bodies.split(",") if b not in BODIES]
    if unknown:
        parser.error(f"--bodies: unknown {', '.join(unknown)}; choose from {', '.join(BODIES)}")
    if not 1 <= args.rows <= MAX_ROWS:
        parser.error(f"--rows must be between 1 and {MAX_ROWS}, got {args.rows}")
    bodies = [BODIES[b](args.rows) for b in args.bodies.split(",")]
    WORK.mkdir(exist_ok=True)
    store = ensure_model()
    results: dict[str, object] = {"concurrency": levels, "duration_s": args.duration, "rows": args.rows}

    # mlapp as a pod runs it (HTTPS, a certificate from a throwaway CA: tools/devcert.py), and
    # mlapp-plain, the same server over plain HTTP like the peers, so TLS's own cost shows.
    tls = make_certificates(WORK / "tls")
    tls_env = {"MLAPP_TLS_CERT_FILE": str(tls.cert), "MLAPP_TLS_KEY_FILE": str(tls.key)}
    context = ssl.create_default_context(cafile=str(tls.ca))
    plain = {"MLAPP_PLAIN_HTTP": "1"}
    servers: list[tuple[str, object, bool]] = [
        ("mlapp", lambda: start_ours(store, context=context, extra_env=tls_env), True),
        ("mlapp-plain", lambda: start_ours(store, "mlapp-plain", extra_env=plain), True),
    ]
    if args.baseline_app:
        baseline = args.baseline_app.resolve()
        # An app from before TLS ignores the variable and serves plain HTTP.
        servers.append(("mlapp-baseline", lambda: start_ours(store, "mlapp-baseline", baseline, extra_env=plain), True))
    if not args.skip_kserve:
        python = ensure_kserve_venv()
        servers.append(("kserve", lambda: start_kserve(python, store), False))

    startup: dict[str, list[float]] = {}
    for name, start, _auth in servers:
        startup[name] = measure_startup(start, args.startup_runs)
        log(f"{name} start to ready: median {statistics.median(startup[name]):.3f}s")
    running: list[tuple[Server, bool]] = []
    try:
        for _name, start, auth in servers:
            server: Server = start()  # type: ignore[operator]
            running.append((server, auth))
            server.wait_ready()
        runs = load_runs(
            running,
            bodies,
            levels=levels,
            duration=args.duration,
            warmup=args.warmup,
            rounds=args.rounds,
            rows=args.rows,
        )
    finally:
        for server, _auth in running:
            server.stop()
    results["runs"] = [asdict(r) for r in runs]
    results["startup_s"] = startup

    sizes: dict[str, float] = {}
    if not args.skip_sizes:
        sizes["server requirements"] = venv_size_mb(
            "size-server", ["-r", str(REPO / "app" / "requirements-server.txt")]
        )
        sizes["torch==2.13.0"] = venv_size_mb("size-torch", ["torch==2.13.0"])
        results["sizes_mb"] = sizes

    print("| server | body | concurrency | req/s | p50 ms | p99 ms | requests | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r.server} | {r.body} | {r.concurrency} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
              f"| {r.requests} | {r.errors} |")  # fmt: skip
    by = {(r.server, r.body, r.concurrency): r.rps for r in runs}
    pairs = [((ours, b), (peer, b)) for b in (x.name for x in bodies)
             for ours, peer in (("mlapp", "kserve"), ("mlapp-plain", "kserve"), ("mlapp-plain", "mlapp-baseline"),
                                ("mlapp", "mlapp-plain"))]  # fmt: skip
    pairs += [((name, "binary"), (name, "json")) for name, _start, _auth in servers]
    for (ours, ours_body), (peer, peer_body) in pairs:
        for c in levels:
            if by.get((peer, peer_body, c), 0) > 0 and (ours, ours_body, c) in by:
                ratio = by[(ours, ours_body, c)] / by[(peer, peer_body, c)]
                print(f"\nthroughput ratio {ours} {ours_body} / {peer} {peer_body} at c={c}: {ratio:.2f}x", end="")
    print()
    for name, times in startup.items():
        print(f"\nstart to ready, {name}: median {statistics.median(times):.3f}s, "
              f"max {max(times):.3f}s over {len(times)} starts", end="")  # fmt: skip
    print()
    for name, mb in sizes.items():
        print(f"\ninstalled size, {name}: {mb:.0f} MB", end="")
    print()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
