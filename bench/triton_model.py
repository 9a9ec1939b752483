"""The Triton peer for bench/serve.py: the same ONNX model behind NVIDIA Triton Inference Server, via PyTriton.

Runs in its own virtualenv (bench/.venv-triton, see bench/requirements-triton.txt), because
nvidia-pytriton's pins are not ours (numpy<2, tritonclient, gevent, ...):

    LD_LIBRARY_PATH=$(bench/.venv-triton/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))') \
    BENCH_MODEL_PATH=model.onnx BENCH_MODEL_NAME=digits \
        bench/.venv-triton/bin/python bench/triton_model.py --http-port 8000 --grpc-port 8001 --metrics-port 8002

It serves the Open Inference Protocol v2 at POST /v2/models/<name>/infer (JSON bodies, and the binary tensor
data extension both ways) on 127.0.0.1 only, and runs until SIGTERM or SIGINT, which stop tritonserver (and,
through it, the Python backend stub) before this process exits. Ready means GET /v2/models/<name>/ready
answers 200: /v2/health/ready answers 200 before the model is loaded, so it is no readiness check here.

LD_LIBRARY_PATH: PyTriton starts Triton's Python backend stub (a binary it ships per Python version), which
links libpython3.X.so dynamically. Without help the loader finds the system's libpython
(/lib/x86_64-linux-gnu), not the one this interpreter was built with (a pyenv build here), and the stub
fails or mixes two Pythons. So the launcher should put ``sysconfig.get_config_var("LIBDIR")`` of this venv's
python on LD_LIBRARY_PATH (bench/serve.py does). If it is missing, this script re-executes itself once with
it added (same pid, so the launcher's SIGTERM still lands here), at the cost of starting Python twice.

What is measured, honestly: Triton has a native ONNX Runtime backend (triton-inference-server/onnxruntime_backend)
that would run this model inside tritonserver's own process. PyTriton does not use it: it serves only
Python callables. Its high-level design doc (https://triton-inference-server.github.io/pytriton/latest/high_level_design/)
says Triton handles the HTTP/gRPC requests and "batches requests and passes them to the Proxy Backend, which
sends the batched requests to the appropriate Inference Callable"; that proxy is a model of Triton's Python
backend, run by the stub process, which hands each batch (ZeroMQ plus shared memory) on to this process, where
``infer`` calls ONNX Runtime. So Triton's HTTP front end, request parsing and dynamic batcher are real Triton;
each batch then crosses two process boundaries (tritonserver -> stub -> this script) and back. A Triton
deployment with the onnxruntime backend would skip both hops; this peer is "Triton serving a Python model".
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import sysconfig
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pytriton.decorators import batch  # type: ignore[import-not-found,import-untyped,unused-ignore]
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # type: ignore[import-not-found,import-untyped,unused-ignore]
from pytriton.triton import Triton, TritonConfig  # type: ignore[import-not-found,import-untyped,unused-ignore]

# The rows one batch may hold; the same bound as mlapp's default max_batch (mlapp/settings.py).
MAX_BATCH = 64
# 0: the batcher does not hold a request back waiting for company. With one model instance, requests that
# arrive while a batch runs queue up and go together as the next batch, so batches form under load anyway,
# and at concurrency 1 no request pays a delay that mlapp and KServe (which do not wait either) do not.
MAX_QUEUE_DELAY_US = 0


def ensure_libpython_on_path() -> None:
    """Re-exec this script with this interpreter's LIBDIR on LD_LIBRARY_PATH, unless it is there already."""
    libdir = sysconfig.get_config_var("LIBDIR")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if not libdir or libdir in current.split(os.pathsep):
        return
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in (libdir, current) if p)}
    print(f"[triton_model] re-executing with LD_LIBRARY_PATH={env['LD_LIBRARY_PATH']}", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)  # noqa: S606 - this very script, again


def make_session(path: str) -> ort.InferenceSession:
    # The same session options as mlapp.serve and bench/kserve_model.py, so the comparison is the server.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args()
    ensure_libpython_on_path()

    name, path = os.environ["BENCH_MODEL_NAME"], os.environ["BENCH_MODEL_PATH"]
    session = make_session(path)

    # @batch hands over the rows of every request in Triton's batch as one array per input, by the input's name.
    @batch  # type: ignore[untyped-decorator,unused-ignore]
    def infer(input: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        probs = session.run(None, {"input": input.astype(np.float32, copy=False)})[0]
        return {"probabilities": probs.astype(np.float32, copy=False)}

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=name,
            infer_func=infer,
            # Per-row shapes: with max_batch_size > 0 Triton prepends the batch dimension, so a request's
            # "input" is [N, 1, 8, 8] and its "probabilities" [N, 10].
            inputs=[Tensor(name="input", dtype=np.float32, shape=(1, 8, 8))],
            outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(10,))],
            config=ModelConfig(
                max_batch_size=MAX_BATCH,
                batcher=DynamicBatcher(max_queue_delay_microseconds=MAX_QUEUE_DELAY_US),
            ),
        )
        # Triton(...) as a context manager has started tritonserver; bind() loads the model. Wait here,
        # waking once a second to notice a dead tritonserver or proxy; leaving the block stops both.
        while not stop.wait(1.0):
            if not triton.is_alive():
                print("[triton_model] tritonserver or its proxy backend died", file=sys.stderr, flush=True)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
