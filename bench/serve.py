"""Serving benchmark (not a test): mlapp.serve against its peers and against its floor.

    venv/bin/python bench/serve.py                      # everything, ~15 minutes
    venv/bin/python bench/serve.py --servers mlapp-plain,floor --concurrency 1,16 --duration 5
    venv/bin/python bench/serve.py --baseline-app ../old/app --servers mlapp-plain,floor --rounds 3   # before/after

Every model server gets the same ONNX model (trained here once, into bench/.work) and the same Open
Inference Protocol v2 request (one 8x8 digit, or --rows of them), over loopback only, one worker
process each, in two bodies: `json` (the tensor as JSON numbers, the answer as JSON) and `binary`
(the binary tensor data extension both ways, as tritonclient's defaults send it). The peers
(SERVERS): mlapp over TLS and plain HTTP; the floor, a no-op under the same HTTP server
(bench/noop_server.py), plain, over TLS and under uvicorn; KServe with its defaults and with its
per-request logging off; Triton through PyTriton (bench/triton_model.py).

Before anything is timed, every model server's scores must equal a direct ONNX Runtime call on the
same rows, and the machine must be quiet (or the report says it was not). The load runs interleave:
each round visits every concurrency level, and at each level every body and server in turn, so drift
on the machine hits them alike; figures are medians over --rounds. Beside wrk's req/s and latencies,
each run reports the server's CPU per request (its process tree, from /proc), mlapp's average batch
(from its own histogram) and the cores the rest of the machine kept busy. Load comes from `wrk`
(`apt-get install wrk`), a separate C process with one thread, bounded by --duration per run. Also
measured: process start to ready, and the installed size of the server's dependencies against torch.

KServe and Triton run from their own venvs, bench/.venv-kserve and bench/.venv-triton, created from
bench/requirements-kserve.txt and bench/requirements-triton.txt on first use (their pins are not ours).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Mapping
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
TRITON_VENV = BENCH / ".venv-triton"
# bench/triton_model.py's max_batch_size: Triton answers 400 to a request with more rows.
TRITON_MAX_ROWS: Final = 64
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
    # The server's CPU (its whole process tree) per answered request, and the cores the rest of the
    # machine (not the server, not wrk) kept busy during the run: the noise each figure carries.
    cpu_us: float = 0.0
    others_cores: float = 0.0
    # Rows per ONNX Runtime run during the run, from mlapp's own mlapp_inference_batch_size (0: not mlapp).
    avg_batch: float = 0.0


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def tree_cpu_seconds(root: int) -> float:
    """User and system CPU of ``root`` and every live descendant (Triton runs its server and backend
    stubs as child processes; a child's CPU only reaches its parent's counters once it is reaped)."""
    children: dict[str, list[str]] = {}
    fields: dict[str, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (f := _stat_fields(entry)) is not None:
            fields[entry] = f
            children.setdefault(f[1], []).append(entry)  # f[1] is the parent's pid
    total, todo = 0, [str(root)]
    while todo:
        pid = todo.pop()
        if pid in fields:
            total += int(fields[pid][11]) + int(fields[pid][12])  # utime, stime (proc(5) fields 14, 15)
            todo.extend(children.get(pid, ()))
    return total / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far (/proc/stat's first line; idle and iowait
    count as not busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text(encoding="utf-8").split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def wait_quiet(max_wait: float, threshold: float) -> str:
    """Wait (at most ``max_wait`` seconds) until the machine's busy share stays under ``threshold`` for
    3 consecutive seconds; what was found, in words, for the report."""
    deadline = time.monotonic() + max_wait
    quiet = 0
    busy_share = 1.0
    while True:
        busy0, total0 = machine_cpu()
        time.sleep(1.0)
        busy1, total1 = machine_cpu()
        busy_share = (busy1 - busy0) / max(total1 - total0, 1e-9)
        quiet = quiet + 1 if busy_share < threshold else 0
        if quiet >= 3:
            return f"quiet: under {threshold:.0%} busy for 3 s before the load runs"
        if time.monotonic() > deadline:
            return (
                f"NOT quiet: after {max_wait:.0f} s the machine was still {busy_share:.0%} busy "
                f"(threshold {threshold:.0%}); figures carry that noise (see each run's other-CPU column)"
            )
        log(f"waiting for a quiet machine: {busy_share:.0%} busy")


def app_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAPP_")}
    env["PYTHONPATH"] = str(REPO / "app")
    env.update(extra)
    return env


def ensure_model() -> Path:
    store = WORK / "store"
    # Always through the trainer and the publisher, as the training and publish Jobs run them: the
    # trainer (the digits example) does nothing when the version's commit record exists, and the
    # publisher does nothing when the version is completely published.
    log("training and publishing the benchmark model unless it is published (digits, 10 epochs)")
    run = store / MODEL / ".runs" / VERSION
    subprocess.run(
        [sys.executable, "-m", "digits.train", "--output-dir", str(run),
         "--checkpoint-dir", str(store / MODEL / ".checkpoints" / VERSION),
         "--model-record", str(store / MODEL / VERSION / "metadata.json"),
         "--epochs", "10", "--batch-size", "32", "--learning-rate", "0.003", "--gate", "accuracy>=0.9"],
        env=app_env(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "examples" / "digits")), check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "mlapp.publish", "--run", str(run), "--model-dir", str(store), "--model-name", MODEL,
         "--version", VERSION, "--gate", "accuracy>=0.9"],
        env=app_env(), check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return store


def _store_format(app_dir: Path) -> int:
    """The metadata format the app in ``app_dir`` reads (its mlapp/store.py FORMAT_VERSION)."""
    match = re.search(r"^FORMAT_VERSION(?:: Final)? = (\d+)", (app_dir / "mlapp" / "store.py").read_text(), re.M)
    return int(match[1]) if match else 0


def baseline_store(store: Path, app_dir: Path) -> Path:
    """The store an older app serves the benchmark model from: ``store`` itself when it reads today's
    metadata, else a copy of the same model file under the metadata format 2 it reads (the digits
    CNN's own record, from before the server read any model's signature from the model), so that a
    before/after comparison runs the same bytes."""
    if _store_format(app_dir) != 2:
        return store
    source = store / MODEL / VERSION
    meta = json.loads((source / "metadata.json").read_text(encoding="utf-8"))
    old = WORK / "store-format-2"
    target = old / MODEL / VERSION
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "model.onnx", target / "model.onnx")
    (_, _, height, width) = meta["signature"]["inputs"][0]["shape"]
    classes = meta["signature"]["outputs"][0]["shape"][1]
    record = {
        "format_version": 2,
        "model": meta["model"],
        "model_name": MODEL,
        "version": VERSION,
        "accuracy": meta["metrics"]["accuracy"],
        "num_classes": classes,
        "input": {"name": "input", "datatype": "FP32", "shape": [-1, 1, height, width],
                  "preprocessing": {"height": height, "width": width, "color": "grayscale", "foreground": "light",
                                    "pixel_max": 16.0, "range": [0.0, 1.0]}},
        "output": {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
    }  # fmt: skip
    (target / "metadata.json").write_text(json.dumps(record), encoding="utf-8")
    return old


def ensure_venv(venv: Path, requirements: Path) -> Path:
    """The python of ``venv``, created from ``requirements`` on first use: a peer whose pins are not ours."""
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"creating {venv} from {requirements.relative_to(REPO)}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
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
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        port: int,
        context: ssl.SSLContext | None = None,
        *,
        ready_path: str = "/v2/health/ready",
    ) -> None:
        self.name = name
        self.ready_path = ready_path
        self.metrics_url = ""  # mlapp's internal port, where it counts its batches
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
        """Seconds from process start to the first 200 on its ready path."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            if get(self.url + self.ready_path, timeout=0.5, context=self.context) == 200:
                return time.perf_counter() - self.started
            time.sleep(0.002)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

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
    model: str = MODEL,
    version: str = VERSION,
) -> Server:
    """mlapp.serve from ``app_dir`` on a free port, serving ``model`` at ``version`` from ``store`` (the
    benchmark's digits model by default); ``extra_env`` adds variables (TLS files, a metrics port)."""
    port = free_port()
    env = app_env(
        PYTHONPATH=str(app_dir),
        MLAPP_HOST="127.0.0.1", MLAPP_PORT=str(port), MLAPP_MODEL_DIR=str(store),
        MLAPP_MODEL_NAME=model, MLAPP_MODEL_VERSION=version,
        MLAPP_AUTH_USERNAME=USER, MLAPP_AUTH_PASSWORD=PASSWORD,
        **{"MLAPP_METRICS_PORT": str(free_port()), **(extra_env or {})},  # several servers side by side
    )  # fmt: skip
    server = Server(name, [sys.executable, "-m", "mlapp.serve"], env, port, context)
    server.metrics_url = f"http://127.0.0.1:{env['MLAPP_METRICS_PORT']}/metrics"
    return server


def start_floor(name: str, extra: list[str], context: ssl.SSLContext | None = None) -> Server:
    """The no-op floor (bench/noop_server.py) under the same HTTP server, limits and TLS as mlapp.serve."""
    port = free_port()
    cmd = [sys.executable, str(BENCH / "noop_server.py"), "--port", str(port), *extra]
    return Server(name, cmd, app_env(), port, context)


def start_kserve(python: Path, store: Path, name: str = "kserve", *, quiet: bool = False) -> Server:
    """KServe's model server with its defaults, or (``quiet``) with its two per-request log lines off:
    the latency line (``--enable_latency_logging false``) and uvicorn's access line (a logging config with
    ``uvicorn.access`` at WARNING, bench/kserve-quiet-logging.json)."""
    port = free_port()
    env = {
        **os.environ,
        "BENCH_MODEL_NAME": MODEL,
        "BENCH_MODEL_PATH": str(store / MODEL / VERSION / "model.onnx"),
    }
    cmd = [str(python), str(BENCH / "kserve_model.py"), "--http_port", str(port),
           "--grpc_port", str(free_port()), "--enable_grpc", "false", "--workers", "1"]  # fmt: skip
    if quiet:
        cmd += ["--enable_latency_logging", "false", "--log_config_file", str(BENCH / "kserve-quiet-logging.json")]
    return Server(name, cmd, env, port)


def start_triton(python: Path, store: Path) -> Server:
    """Triton through PyTriton (bench/triton_model.py): ready once the model is, not the server."""
    port = free_port()
    libdir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    env = {
        **os.environ,
        "BENCH_MODEL_NAME": MODEL,
        "BENCH_MODEL_PATH": str(store / MODEL / VERSION / "model.onnx"),
        # PyTriton's Python-backend stub loads the system's libpython unless pointed at this one.
        "LD_LIBRARY_PATH": ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p),
    }
    cmd = [str(python), str(BENCH / "triton_model.py"), "--http-port", str(port),
           "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]  # fmt: skip
    # /v2/health/ready answers before the model is loaded.
    return Server("triton", cmd, env, port, ready_path=f"/v2/models/{MODEL}/ready")


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


def batch_totals(server: Server) -> tuple[float, float]:
    """mlapp's rows and runs so far (its mlapp_inference_batch_size sum and count); zeros for a peer."""
    if not server.metrics_url:
        return 0.0, 0.0
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:  # noqa: S310 - loopback only
        text = response.read().decode()
    rows = re.search(r"^mlapp_inference_batch_size_sum (\S+)$", text, re.M)
    runs = re.search(r"^mlapp_inference_batch_size_count (\S+)$", text, re.M)
    if rows is None or runs is None:
        raise RuntimeError(f"{server.name}: no mlapp_inference_batch_size in {server.metrics_url}")
    return float(rows.group(1)), float(runs.group(1))


@dataclass(frozen=True)
class Load:
    """What one wrk run reports."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def wrk_load(url: str, body: Body, auth: bool, concurrency: int, duration: float) -> Load:
    """``wrk -t1`` against ``url`` with ``body`` for ``duration`` seconds, and its figures.

    Each call writes its own request script, so runs may go side by side (bench/dashboard_plot.py)."""
    headers = dict(body.headers)
    if auth:
        headers["Authorization"] = BASIC_AUTH
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(body.data)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=WORK, delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    script = Path(f.name)
    seconds = max(1, round(duration))
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "10s",
           "-s", str(script), url]  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60)
    finally:
        script.unlink(missing_ok=True)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return Load(rps, p50, p99, total, errors)


def wrk(server: Server, body: Body, auth: bool, concurrency: int, duration: float) -> Run:
    """One load run against ``server``: wrk's figures, the server's CPU per request and the other load."""
    batches0 = batch_totals(server)
    server_cpu0, (busy0, _), wrk0 = server.cpu_seconds(), machine_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    load = wrk_load(server.infer_url, body, auth, concurrency, duration)
    wall = time.monotonic() - started
    server_cpu1, (busy1, _), wrk1 = server.cpu_seconds(), machine_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
    batches1 = batch_totals(server)
    runs = batches1[1] - batches0[1]
    server_cpu = server_cpu1 - server_cpu0
    wrk_cpu = (wrk1.ru_utime + wrk1.ru_stime) - (wrk0.ru_utime + wrk0.ru_stime)
    others = max(0.0, (busy1 - busy0) - server_cpu - wrk_cpu) / wall
    return Run(server.name, body.name, concurrency, load.rps, load.p50_ms, load.p99_ms, load.requests, load.errors,
               cpu_us=server_cpu / max(load.requests, 1) * 1e6, others_cores=others,
               avg_batch=(batches1[0] - batches0[0]) / runs if runs else 0.0)  # fmt: skip


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


def measure_startup(start: Callable[[], Server], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        server = start()
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


def reference_scores(store: Path, rows: int) -> list[float]:
    """The scores a direct ONNX Runtime call gives for the benchmark's rows: what every server must answer."""
    import numpy as np  # noqa: PLC0415 - the dev venv has both; only this check needs them
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(str(store / MODEL / VERSION / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.array([v / 16 for v in DIGIT] * rows, dtype=np.float32).reshape(rows, 1, 8, 8)
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    return [float(v) for v in np.asarray(out, dtype=np.float32).ravel()]


def check_answer(server: Server, body: Body, auth: bool, expected: list[float] | None) -> None:
    """The server answers the benchmark's request, in the form asked, with the scores of a direct ONNX
    Runtime call (``expected``; None for the floor, whose answer is a constant of the same shape)."""
    request = urllib.request.Request(  # noqa: S310 - loopback only
        server.infer_url, data=body.data, method="POST", headers=dict(body.headers)
    )
    if auth:
        request.add_header("Authorization", BASIC_AUTH)
    with urllib.request.urlopen(request, timeout=10, context=server.context) as response:  # noqa: S310
        data, header_length = response.read(), response.headers.get("Inference-Header-Content-Length")
    if expected is None:
        return
    if (header_length is not None) != (body.name == "binary"):
        raise RuntimeError(f"{server.name} answered the {body.name} request with header length {header_length}")
    scores = scores_of(data, header_length)
    if len(scores) != len(expected) or any(abs(a - b) > 1e-5 for a, b in zip(scores, expected, strict=True)):
        raise RuntimeError(
            f"{server.name} answers {scores[:10]}... ({len(scores)} scores, {body.name}) where ONNX Runtime "
            f"gives {expected[:10]}... ({len(expected)})"
        )


@dataclass(frozen=True)
class Running:
    server: Server
    auth: bool
    floor: bool  # answers a constant: checked for its 200, not its scores


def load_runs(
    servers: list[Running],
    bodies: list[Body],
    *,
    levels: list[int],
    duration: float,
    warmup: float,
    rounds: int,
    expected: list[float],
) -> list[Run]:
    """Every (server, body, level) ``rounds`` times, interleaved; one Run each, the median round's figures."""
    for r in servers:
        for body in bodies:
            check_answer(r.server, body, r.auth, None if r.floor else expected)
            wrk(r.server, body, r.auth, max(levels), warmup)  # warm caches, allocator
    samples: dict[tuple[str, str, int], list[Run]] = {}
    for round_ in range(rounds):
        for c in levels:
            for body in bodies:
                for r in servers:
                    run = wrk(r.server, body, r.auth, c, duration)
                    samples.setdefault((run.server, body.name, c), []).append(run)
                    log(f"round {round_ + 1} {run.server} {body.name} c={c}: {run.rps:.0f} req/s "
                        f"p50 {run.p50_ms:.2f} ms p99 {run.p99_ms:.2f} ms {run.cpu_us:.0f} us CPU/req "
                        f"others {run.others_cores:.2f} cores batch {run.avg_batch:.1f} "
                        f"errors {run.errors}")  # fmt: skip
    runs = []
    for (name, body_name, c), rs in samples.items():
        runs.append(Run(
            name, body_name, c, statistics.median(r.rps for r in rs), statistics.median(r.p50_ms for r in rs),
            statistics.median(r.p99_ms for r in rs), sum(r.requests for r in rs), sum(r.errors for r in rs),
            statistics.median(r.cpu_us for r in rs), max(r.others_cores for r in rs),
            statistics.median(r.avg_batch for r in rs),
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


SERVERS: Final = ("mlapp", "mlapp-plain", "floor", "floor-tls", "floor-uvicorn", "kserve", "kserve-quiet", "triton")
# Each server's floor: the no-op under the same transport.
FLOOR_OF: Final = {"mlapp": "floor-tls", "floor-tls": "floor-tls"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"which, of {', '.join(SERVERS)}")
    parser.add_argument("--skip-sizes", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; figures are medians")
    parser.add_argument("--baseline-app", type=Path, help="also serve from this app/ directory, as mlapp-baseline")
    parser.add_argument("--bodies", default="json,binary", help=f"request bodies, of {', '.join(BODIES)}")
    parser.add_argument("--rows", type=int, default=1, help="digits per request (the tensor's first dimension)")
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--quiet-threshold", type=float, default=0.15, help="busy share counted as quiet")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench/serve.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 1
    levels = [int(c) for c in args.concurrency.split(",")]
    unknown = [b for b in args.bodies.split(",") if b not in BODIES]
    if unknown:
        parser.error(f"--bodies: unknown {', '.join(unknown)}; choose from {', '.join(BODIES)}")
    chosen = args.servers.split(",")
    unknown = [name for name in chosen if name not in SERVERS]
    if unknown:
        parser.error(f"--servers: unknown {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    if not 1 <= args.rows <= MAX_ROWS:
        parser.error(f"--rows must be between 1 and {MAX_ROWS}, got {args.rows}")
    bodies = [BODIES[b](args.rows) for b in args.bodies.split(",")]
    WORK.mkdir(exist_ok=True)
    store = ensure_model()
    expected = reference_scores(store, args.rows)
    results: dict[str, object] = {"concurrency": levels, "duration_s": args.duration, "rows": args.rows}

    # mlapp as a pod runs it (HTTPS, a certificate from a throwaway CA: tools/devcert.py), and
    # mlapp-plain, the same server over plain HTTP like the peers, so TLS's own cost shows.
    tls = make_certificates(WORK / "tls")
    tls_env = {"MLAPP_TLS_CERT_FILE": str(tls.cert), "MLAPP_TLS_KEY_FILE": str(tls.key)}
    tls_args = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    context = ssl.create_default_context(cafile=str(tls.ca))
    plain = {"MLAPP_PLAIN_HTTP": "1"}
    # name -> (start, sends basic auth, is a floor)
    available: dict[str, tuple[Callable[[], Server], bool, bool]] = {
        "mlapp": (lambda: start_ours(store, context=context, extra_env=tls_env), True, False),
        "mlapp-plain": (lambda: start_ours(store, "mlapp-plain", extra_env=plain), True, False),
        "floor": (lambda: start_floor("floor", []), False, True),
        "floor-tls": (lambda: start_floor("floor-tls", tls_args, context), False, True),
        "floor-uvicorn": (lambda: start_floor("floor-uvicorn", ["--uvicorn"]), False, True),
    }
    if "kserve" in chosen or "kserve-quiet" in chosen:
        python = ensure_venv(KSERVE_VENV, BENCH / "requirements-kserve.txt")
        available["kserve"] = (lambda: start_kserve(python, store), False, False)
        available["kserve-quiet"] = (lambda: start_kserve(python, store, "kserve-quiet", quiet=True), False, False)
    if "triton" in chosen and args.rows > TRITON_MAX_ROWS:
        log(f"triton left out: its model takes at most {TRITON_MAX_ROWS} rows a request (bench/triton_model.py)")
        chosen.remove("triton")
    if "triton" in chosen:
        triton_python = ensure_venv(TRITON_VENV, BENCH / "requirements-triton.txt")
        available["triton"] = (lambda: start_triton(triton_python, store), False, False)
    servers = [(name, *available[name]) for name in chosen]
    if args.baseline_app:
        baseline = args.baseline_app.resolve()
        # An app from before TLS ignores the variable and serves plain HTTP.
        servers.append(
            (
                "mlapp-baseline",
                lambda: start_ours(baseline_store(store, baseline), "mlapp-baseline", baseline, extra_env=plain),
                True,
                False,
            )
        )

    startup: dict[str, list[float]] = {}
    for name, start, _auth, floor in servers:
        if not floor and args.startup_runs > 0:  # --startup-runs 0: not measured
            startup[name] = measure_startup(start, args.startup_runs)
            log(f"{name} start to ready: median {statistics.median(startup[name]):.3f}s")
    running: list[Running] = []
    try:
        for _name, start, auth, floor in servers:
            server = start()
            running.append(Running(server, auth, floor))
            server.wait_ready()
        quiet = wait_quiet(args.quiet_wait, args.quiet_threshold)
        log(quiet)
        results["machine"] = quiet
        runs = load_runs(
            running,
            bodies,
            levels=levels,
            duration=args.duration,
            warmup=args.warmup,
            rounds=args.rounds,
            expected=expected,
        )
    finally:
        for r in running:
            r.server.stop()
    results["runs"] = [asdict(r) for r in runs]
    results["startup_s"] = startup

    sizes: dict[str, float] = {}
    if not args.skip_sizes:
        sizes["server requirements"] = venv_size_mb(
            "size-server", ["-r", str(REPO / "app" / "requirements-server.txt")]
        )
        sizes["torch==2.13.0"] = venv_size_mb("size-torch", ["torch==2.13.0"])
        results["sizes_mb"] = sizes
    report(runs, [b.name for b in bodies], levels, [name for name, *_ in servers], quiet)
    for name, times in startup.items():
        print(f"start to ready, {name}: median {statistics.median(times):.3f}s, "
              f"max {max(times):.3f}s over {len(times)} starts")  # fmt: skip
    for name, mb in sizes.items():
        print(f"installed size, {name}: {mb:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def report(runs: list[Run], bodies: list[str], levels: list[int], names: list[str], machine: str) -> None:
    """The table, then each server's throughput against its floor (same transport) and mlapp's against
    each peer."""
    print(f"machine: {machine}\n")
    print("| server | body | concurrency | req/s | p50 ms | p99 ms | p99/p50 | CPU us/req | avg batch "
          "| other cores | requests | errors |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        batch = f"{r.avg_batch:.1f}" if r.avg_batch else "-"
        print(f"| {r.server} | {r.body} | {r.concurrency} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
              f"| {r.p99_ms / r.p50_ms:.1f} | {r.cpu_us:.0f} | {batch} | {r.others_cores:.2f} | {r.requests} "
              f"| {r.errors} |")  # fmt: skip
    by = {(r.server, r.body, r.concurrency): r.rps for r in runs}
    pairs: list[tuple[str, str]] = []
    for name in names:
        floor = FLOOR_OF.get(name, "floor")
        if name != floor and floor in names:
            pairs.append((name, floor))
    for ours in ("mlapp", "mlapp-plain"):
        peers = [p for p in names if p not in ("mlapp", "mlapp-plain") and not p.startswith("floor")]
        pairs += [(ours, peer) for peer in peers if ours in names]
    if "mlapp" in names and "mlapp-plain" in names:
        pairs.append(("mlapp", "mlapp-plain"))
    print()
    for body in bodies:
        for ours, peer in pairs:
            ratios = [
                f"c={c} {by[(ours, body, c)] / by[(peer, body, c)]:.2f}x"
                for c in levels
                if by.get((peer, body, c), 0) > 0 and (ours, body, c) in by
            ]
            if ratios:
                print(f"throughput {ours} / {peer} ({body}): {', '.join(ratios)}")
        if "binary" in bodies and "json" in bodies and body == "binary":
            for name in names:
                ratios = [
                    f"c={c} {by[(name, 'binary', c)] / by[(name, 'json', c)]:.2f}x"
                    for c in levels
                    if by.get((name, "json", c), 0) > 0 and (name, "binary", c) in by
                ]
                if ratios:
                    print(f"throughput {name} binary / json: {', '.join(ratios)}")


if __name__ == "__main__":
    sys.exit(main())
