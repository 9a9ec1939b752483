"""Large-model benchmark (not a test): publishing and loading a 1 GiB ONNX model, time and peak memory.

    venv/bin/python bench/large_model.py                       # 1 GiB, 3 starts each
    venv/bin/python bench/large_model.py --mib 256 --starts 2
    venv/bin/python bench/large_model.py --baseline-app ../old/app   # also an older server, same bytes

The model is one MatMul whose weight is a single FP32 initializer of --mib MiB (a square matrix),
written once into bench/.work. It is published with ``python -m mlapp.publish`` (timed, its peak RSS
read from the kernel), then served by ``python -m mlapp.serve`` from start until ready, several
times; each start's peak RSS (VmHWM) and its RSS once ready (VmRSS) come from /proc. The peer, run
the same number of times on the same file: ONNX Runtime alone (``onnxruntime.InferenceSession(path)``
and one run), what ONNX Runtime itself needs to load and run the model. With --baseline-app, the
server as it was before it read models through a memory file, on a copy of the same bytes under the
metadata it reads.

Before anything is timed, the server's answer for one row must equal ONNX Runtime's on the file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "large"
USER, PASSWORD = "bench", "bench-password"
NAME, VERSION = "large", "1"
AUTH = "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode()

# ONNX Runtime alone: load the file, run one row, report the process's peak and current memory (KiB).
ORT_ALONE = """
import sys, time, numpy as np, onnxruntime as ort
start = time.monotonic()
options = ort.SessionOptions(); options.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
n = s.get_inputs()[0].shape[2]
s.run(None, {"x": np.zeros((1, 1, n, 1), dtype=np.float32)})
ready = time.monotonic() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(ready, int(status["VmHWM"].split()[0]), int(status["VmRSS"].split()[0]))
"""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def make_model(path: Path, mib: int) -> int:
    """``y = flatten(x) @ W``, W an n x n FP32 matrix of ``mib`` MiB; returns n. ``x`` is shaped [batch, 1, n, 1]:
    the one shape of input the server before the generic one could load (a grey picture), so both load it."""
    import onnx  # noqa: PLC0415 - the dev venv's, only to write the file
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    n = int((mib * (1 << 20) / 4) ** 0.5)
    if path.exists():
        return n
    log(f"writing a {n} x {n} FP32 MatMul ({n * n * 4 / (1 << 20):.0f} MiB) to {path}")
    weights = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32) / n
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["y"])],
        "large",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, n, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def memory_kib(pid: int) -> tuple[int, int]:
    """Peak (VmHWM) and current (VmRSS) resident memory of ``pid``, KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])


def memory_files_kib(pid: int) -> int:
    """What ``pid``'s open anonymous memory files hold (memfd_create's, which mlapp reads models into).

    Their pages count against a pod's memory limit like any other (tmpfs pages are charged to the
    cgroup: https://docs.kernel.org/admin-guide/cgroup-v2.html, "Memory", shmem), but appear in a
    process's RSS only where mapped, which mlapp's never are: so RSS alone would flatter it.
    """
    sizes: dict[int, int] = {}  # by inode: ONNX Runtime opens the same memory file again by its path
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith("/memfd:"):
                info = fd.stat()
                sizes[info.st_ino] = info.st_size
        except OSError:
            continue  # closed meanwhile
    return sum(sizes.values()) // 1024


class Sampler(threading.Thread):
    """The most ``pid`` held at once, RSS plus memory files, read every few milliseconds until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.stopped = pid, 0, threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopped.wait(0.002):
            try:
                rss = memory_kib(self.pid)[1]
                self.peak_kib = max(self.peak_kib, rss + memory_files_kib(self.pid))
            except (OSError, KeyError, ValueError):
                continue  # the process is starting or gone

    def stop(self) -> float:
        self.stopped.set()
        self.join()
        return self.peak_kib / 1024


@dataclass
class Start:
    seconds: float
    peak_mib: float  # the kernel's peak RSS (VmHWM)
    ready_mib: float
    footprint_mib: float = 0.0  # the most RSS plus memory files seen at once (Sampler)


def app_env(app: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAPP_")}
    env.update(PYTHONPATH=str(app), OMP_NUM_THREADS="1", **extra)
    return env


def publish(model: Path, store: Path) -> Start:
    """``python -m mlapp.publish`` on the model, timed; its peak RSS from wait4's rusage (KiB on Linux)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlapp.publish", str(model), "--model-dir", str(store), "--model-name", NAME,
         "--version", VERSION, "--batchable"],
        env=app_env(REPO / "app"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    sampler = Sampler(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    footprint = sampler.stop()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"publish failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return Start(seconds, usage.ru_maxrss / 1024, 0.0, max(footprint, usage.ru_maxrss / 1024))


def serve_once(app: Path, store: Path, n: int) -> tuple[Start, list[float]]:
    """Start a server, wait until ready, read its memory, ask it one row; stop it."""
    port, metrics = free_port(), free_port()
    env = app_env(
        app, MLAPP_PLAIN_HTTP="1", MLAPP_HOST="127.0.0.1", MLAPP_PORT=str(port), MLAPP_METRICS_PORT=str(metrics),
        MLAPP_MODEL_DIR=str(store), MLAPP_MODEL_NAME=NAME, MLAPP_MODEL_VERSION=VERSION,
        MLAPP_AUTH_USERNAME=USER, MLAPP_AUTH_PASSWORD=PASSWORD, MLAPP_LOG_LEVEL="WARNING",
    )  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "mlapp.serve"], env=env)
    sampler = Sampler(proc.pid)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.02)
        seconds = time.monotonic() - start
        footprint = sampler.stop()
        peak, ready = memory_kib(proc.pid)
        x = [1.0 / (i + 1) for i in range(n)]
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, n, 1], "data": x}]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/{NAME}/infer", data=body, method="POST",
            headers={"Authorization": AUTH, "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as r:  # noqa: S310
            answer = json.loads(r.read())["outputs"][0]["data"]
        return Start(seconds, peak / 1024, ready / 1024, max(footprint, peak / 1024)), answer
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def ort_alone(model: Path) -> Start:
    done = subprocess.run(
        [sys.executable, "-c", ORT_ALONE, str(model)], env=app_env(REPO / "app"), capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    seconds, peak, ready = done.stdout.split()
    return Start(float(seconds), int(peak) / 1024, int(ready) / 1024, int(peak) / 1024)


def baseline_store(store: Path, target: Path, n: int) -> Path:
    """The same model file under format 2 metadata (what servers before format 3 read), for --baseline-app."""
    meta = json.loads((store / NAME / VERSION / "metadata.json").read_text())
    version = target / NAME / VERSION
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store / NAME / VERSION / "model.onnx", version / "model.onnx")
    # Format 2 described an image classifier: the model's input is one n x 1 grey "picture", its output n classes.
    record = {
        "format_version": 2, "model": meta["model"], "num_classes": n,
        "input": {"name": "x", "preprocessing": {"height": n, "width": 1}},
        "output": {"name": "y"},
    }  # fmt: skip
    (version / "metadata.json").write_text(json.dumps(record))
    return target


def summary(name: str, starts: list[Start]) -> str:
    def median(field: str) -> float:
        return float(statistics.median(getattr(s, field) for s in starts))

    return (
        f"| {name} | {median('seconds'):.2f} | {median('peak_mib'):.0f} | {median('footprint_mib'):.0f} | "
        f"{median('ready_mib'):.0f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="the weight's size")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--baseline-app", type=Path, help="also an older server (app/ directory) on the same bytes")
    args = parser.parse_args()
    model = WORK / f"matmul-{args.mib}.onnx"
    n = make_model(model, args.mib)
    size = model.stat().st_size
    store = WORK / "store"
    shutil.rmtree(store, ignore_errors=True)
    published = publish(model, store)
    log(f"published {size / (1 << 20):.0f} MiB in {published.seconds:.1f}s, peak {published.footprint_mib:.0f} MiB")

    import onnxruntime as ort  # noqa: PLC0415 - the reference answer, before any timing

    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.array([1.0 / (i + 1) for i in range(n)], dtype=np.float32).reshape(1, 1, n, 1)}
    )[0][0]
    rows: dict[str, list[Start]] = {"ONNX Runtime alone (the file's path)": [], "mlapp.serve": []}
    old_store = baseline_store(store, WORK / "store-format-2", n) if args.baseline_app else None
    if args.baseline_app:
        rows["mlapp.serve before (bytes to ONNX Runtime)"] = []
    for _ in range(args.starts):  # interleaved, so drift hits each alike
        rows["ONNX Runtime alone (the file's path)"].append(ort_alone(model))
        start, answer = serve_once(REPO / "app", store, n)
        np.testing.assert_allclose(answer, want, rtol=1e-5, atol=1e-6)
        rows["mlapp.serve"].append(start)
        if args.baseline_app and old_store is not None:
            start, answer = serve_once(args.baseline_app.resolve(), old_store, n)
            np.testing.assert_allclose(answer, want, rtol=1e-5, atol=1e-6)
            rows["mlapp.serve before (bytes to ONNX Runtime)"].append(start)
    print(f"\nmodel: one FP32 MatMul weight, {size / (1 << 20):.0f} MiB file; medians of {args.starts} starts\n")
    print(
        f"publish (mlapp.publish --batchable): {published.seconds:.1f}s, peak RSS {published.peak_mib:.0f} MiB, "
        f"peak RSS + memory files {published.footprint_mib:.0f} MiB\n"
    )
    print(
        "| process | start to ready s | peak RSS MiB | peak RSS + memory files MiB | RSS when ready MiB |\n"
        "|---|---:|---:|---:|---:|"
    )
    for name, starts in rows.items():
        print(summary(name, starts))
    alone = statistics.median(s.footprint_mib for s in rows["ONNX Runtime alone (the file's path)"])
    ours = statistics.median(s.footprint_mib for s in rows["mlapp.serve"])
    beyond = ours - alone
    print(
        f"\nmlapp.serve's peak beyond ONNX Runtime alone: {beyond:.0f} MiB ({beyond * (1 << 20) / size:.2f}x the file)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
