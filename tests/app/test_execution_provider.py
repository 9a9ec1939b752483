"""MLAPP_EXECUTION_PROVIDER: the server runs the model on the CPU, or on CUDA when asked, and never on the CPU in
CUDA's place.

This machine has no GPU and its onnxruntime is the CPU-only package, so a server asked for cuda here is the
server of a pod whose image or node cannot give it CUDA: it must stay alive and never become ready, saying why.
onnxruntime-gpu without a usable GPU builds the session on the CPU alone (mlapp/serve/model.py, check_session);
that is simulated in-process with a real CPU session standing in for the one it builds. What the GPU image
installs: app/requirements-server-gpu.txt, checked here against requirements-server.txt; which GPUs and drivers
run it: tests/pure/test_server_cuda.py.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import onnxruntime as ort
import pytest

from mlapp import contract
from mlapp.serve import model
from mlapp.serve.app import App
from mlapp.serve.errors import NotReady
from mlapp.settings import Settings, SettingsError, from_env

from .helpers import APP, MODEL_NAME, PASSWORD, USER, VERSION, Server, TrainedModel, app_env

AUTH = (USER, PASSWORD)
BASE_ENV = {contract.ENV_AUTH_USERNAME: USER, contract.ENV_AUTH_PASSWORD: PASSWORD, contract.ENV_PLAIN_HTTP: "1"}
ROW = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}


# --- the setting ----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [(None, "cpu"), ("", "cpu"), ("cpu", "cpu"), ("cuda", "cuda"),
                                            (" CUDA ", "cuda")])  # fmt: skip
def test_the_setting_defaults_to_the_cpu(raw: str | None, value: str) -> None:
    env = BASE_ENV if raw is None else {**BASE_ENV, contract.ENV_EXECUTION_PROVIDER: raw}
    assert from_env(env).execution_provider == value


@pytest.mark.parametrize("raw", ["gpu", "tensorrt", "CUDAExecutionProvider", "cuda,cpu"])
def test_a_bad_setting_is_refused_naming_what_is_allowed(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        from_env({**BASE_ENV, contract.ENV_EXECUTION_PROVIDER: raw})
    assert str(caught.value).startswith(f"{contract.ENV_EXECUTION_PROVIDER} must be one of cpu, cuda ")
    assert str(caught.value).endswith(f"got {raw!r}")


def test_the_server_refuses_to_start_with_a_bad_setting() -> None:
    env = app_env(**BASE_ENV, **{contract.ENV_EXECUTION_PROVIDER: "gpu"})
    done = subprocess.run([sys.executable, "-m", "mlapp.serve"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"refusing to start: {contract.ENV_EXECUTION_PROVIDER} must be one of cpu, cuda" in done.stderr


# --- cuda asked, on a machine that cannot give it: a real server ----------------------------


def test_cuda_without_cuda_is_alive_never_ready_and_says_why(tmp_path: Path, trained: TrainedModel) -> None:
    srv = Server(tmp_path, trained.store, MLAPP_EXECUTION_PROVIDER="cuda")
    try:
        srv.wait_for(contract.LIVE_PATH)
        srv.wait_for_log("cannot serve")
        ready = httpx.get(srv.metrics_url + contract.READY_PATH)
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert ready.json() == {"ready": False, "reason": reason}
        available = ort.get_available_providers()
        assert "CUDAExecutionProvider" not in available, "this test needs the CPU-only onnxruntime"
        assert reason.startswith(f"{contract.ENV_EXECUTION_PROVIDER}=cuda, but onnxruntime {ort.__version__} ")
        assert f"offers only {available}" in reason
        assert "app/requirements-server-gpu.txt" in reason
        public = httpx.get(srv.url + contract.READY_PATH)
        assert (public.status_code, public.json()) == (503, ready.json()), "both ports answer readiness alike"

        # Every request that needs the model is refused 503, with the reason; credentials are still checked first.
        infer = httpx.post(f"{srv.url}/v2/models/{MODEL_NAME}/infer", auth=AUTH, json=ROW)
        assert infer.status_code == 503, infer.text
        assert infer.json()["error"] == f"the server cannot serve the model: {reason}"
        assert httpx.post(f"{srv.url}/v2/models/{MODEL_NAME}/infer", json=ROW).status_code == 401
        metadata = httpx.get(f"{srv.url}/v2/models/{MODEL_NAME}", auth=AUTH)
        assert metadata.status_code == 503, metadata.text
        predict = httpx.post(f"{srv.url}/predict", auth=AUTH, content=b"x", headers={"content-type": "image/png"})
        assert predict.status_code == 503, predict.text
        model_ready = httpx.get(f"{srv.url}/v2/models/{MODEL_NAME}/ready", auth=AUTH)
        assert (model_ready.status_code, model_ready.json()) == (503, {"name": MODEL_NAME, "ready": False})

        metrics = httpx.get(srv.metrics_url + contract.METRICS_PATH).text
        assert re.search(r"^mlapp_model_ready 0\.0$", metrics, re.MULTILINE), "reported ready"
        assert "mlapp_execution_provider_info{" not in metrics

        # Nothing retries (neither a retry nor a restart brings CUDA): said once, and the process stays up.
        time.sleep(1.5)
        assert httpx.get(srv.metrics_url + contract.LIVE_PATH).status_code == 200
        assert srv.log.count(reason) == 1, srv.log
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0, srv.log


# --- cpu: the default, and asked for ---------------------------------------------------------


def test_the_default_server_runs_on_the_cpu(server: Server) -> None:
    metrics = httpx.get(server.metrics_url + contract.METRICS_PATH).text
    assert re.search(r'^mlapp_execution_provider_info\{provider="CPUExecutionProvider"\} 1\.0$', metrics, re.MULTILINE)
    assert httpx.get(server.metrics_url + contract.READY_PATH).json() == {"ready": True}


def test_cpu_asked_for_serves(tmp_path: Path, trained: TrainedModel) -> None:
    srv = Server(tmp_path, trained.store, MLAPP_EXECUTION_PROVIDER="cpu")
    try:
        srv.wait_for(contract.READY_PATH)
        answer = httpx.post(f"{srv.url}/v2/models/{MODEL_NAME}/infer", auth=AUTH, json=ROW)
        assert answer.status_code == 200, answer.text
        (output,) = answer.json()["outputs"]
        assert output["shape"] == [1, 10]
        assert "cannot serve" not in srv.log
    finally:
        assert srv.stop() == 0, srv.log


# --- onnxruntime-gpu without a usable GPU: the session it builds, in-process ----------------------


def settings_for(trained: TrainedModel, execution_provider: str) -> Settings:
    return Settings(model_name=MODEL_NAME, model_dir=trained.store, model_version=VERSION, username=USER,
                    password=PASSWORD, execution_provider=execution_provider)  # fmt: skip


def offer_cuda(monkeypatch: pytest.MonkeyPatch, printed: str = "") -> list[str]:
    """onnxruntime-gpu's view of this machine: CUDA offered (it lists it with no GPU at all), and a
    preload_dlls that prints what it could not load, as it does. The calls to preload_dlls are recorded."""
    preloaded: list[str] = []

    def preload_dlls() -> None:
        preloaded.append("called")
        if printed:
            print(printed)

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "preload_dlls", preload_dlls)
    return preloaded


def run_app(app: App, until: Callable[[tuple[int, bytes]], bool], timeout: float = 30) -> tuple[int, bytes]:
    """Start ``app``, answer readiness until ``until`` holds for (status, body), shut it down; the last answer."""

    async def scenario() -> tuple[int, bytes]:
        await app.startup()
        try:
            deadline = time.monotonic() + timeout
            while True:
                status, body, _, _ = await app.endpoints.ready({}, _no_body)
                if until((status, body)) or time.monotonic() > deadline:
                    return status, body
                await asyncio.sleep(0.05)
        finally:
            await app.shutdown()

    return asyncio.run(scenario())


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_a_session_that_fell_back_to_the_cpu_fails_readiness(
    trained: TrainedModel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """onnxruntime-gpu that cannot load its CUDA provider logs it and builds the session on the CPU alone: the
    server must not serve on that session."""
    preloaded = offer_cuda(monkeypatch, printed="Failed to load libcudnn.so.9: cannot open shared object file")
    real_session = ort.InferenceSession
    asked: list[list[str]] = []

    def fell_back(source: Any, options: Any, providers: list[str]) -> Any:
        asked.append(providers)
        return real_session(source, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", fell_back)
    app = App(settings_for(trained, "cuda"), None)
    status, body = run_app(app, lambda answer: b"reason" in answer[1])
    assert preloaded == ["called"], "the CUDA libraries were not preloaded"
    assert asked == [["CUDAExecutionProvider", "CPUExecutionProvider"]], "the session was not asked for CUDA first"
    assert status == 503
    reason = f"{contract.ENV_EXECUTION_PROVIDER}=cuda, but ONNX Runtime could not start its CUDA provider"
    assert body.decode().startswith('{"ready":false,"reason":"' + reason), body
    assert "would run on ['CPUExecutionProvider']" in body.decode()
    with pytest.raises(NotReady, match=re.escape(f"the server cannot serve the model: {reason}")):
        asyncio.run(app.endpoints.model_metadata({}, _no_body))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name == "mlapp.serve"]
    assert len(errors) == 1, errors
    assert reason in errors[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "mlapp.serve"]
    assert warnings == ["onnxruntime.preload_dlls: Failed to load libcudnn.so.9: cannot open shared object file"]
    assert "Failed to load" not in capsys.readouterr().out, "preload_dlls printed on stdout, among the JSON lines"


class CudaSession:
    """A session onnxruntime-gpu built on the GPU: CUDA first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.fallback = True

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def disable_fallback(self) -> None:
        self.fallback = False


def test_a_cuda_session_is_kept_and_never_falls_back_at_run_time(
    trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    offer_cuda(monkeypatch)
    monkeypatch.setattr(ort, "InferenceSession", CudaSession)
    session = model.create_session(b"model bytes", settings_for(trained, "cuda"))
    assert isinstance(session, CudaSession)
    assert session.fallback is False, "a failed CUDA run would silently switch the session to the CPU"


@pytest.mark.parametrize(
    ("providers", "refused"),
    [(["CUDAExecutionProvider", "CPUExecutionProvider"], False), (["CUDAExecutionProvider"], False),
     (["CPUExecutionProvider"], True), (["CPUExecutionProvider", "CUDAExecutionProvider"], True), ([], True)],
)  # fmt: skip
def test_cuda_must_come_first_in_the_session(providers: list[str], refused: bool) -> None:
    if refused:
        with pytest.raises(model.ProviderUnavailable, match=r"could not start its CUDA provider"):
            model.check_session("cuda", providers)
    else:
        model.check_session("cuda", providers)
    model.check_session("cpu", providers)  # the CPU asked for: nothing to judge


def test_the_onnxruntime_api_the_server_relies_on_is_there() -> None:
    """preload_dlls and InferenceSession.disable_fallback are onnxruntime's Python wrapper, the same file in the
    CPU package as in onnxruntime-gpu 1.31.1 (onnxruntime/__init__.py, capi/onnxruntime_inference_collection.py)."""
    assert list(inspect.signature(ort.preload_dlls).parameters)[:2] == ["cuda", "cudnn"]
    assert callable(ort.InferenceSession.disable_fallback)
    assert ort.__version__ == "1.31.1", "the facts in mlapp/serve/model.py were read for 1.31.1: read them again"


def test_the_cpu_settings_ask_onnxruntime_for_the_cpu_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    preloaded = offer_cuda(monkeypatch)
    model.prepare_execution_provider("cpu")
    assert preloaded == [], "CUDA libraries loaded for a server on the CPU"
    assert model.SESSION_PROVIDERS["cpu"] == ("CPUExecutionProvider",)


# --- what the GPU image installs ----------------------------------------------------------------


def pins(name: str) -> dict[str, str]:
    found = {}
    for raw in (APP / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][\w.+]*", line), f"{name}: {line} is not pinned"
            package, version = line.split("==")
            found[package.lower().replace("_", "-")] = version
    return found


def test_the_gpu_requirements_are_the_cpu_ones_with_onnxruntime_gpu_and_nvidias_wheels() -> None:
    cpu, gpu = pins("requirements-server.txt"), pins("requirements-server-gpu.txt")
    assert "onnxruntime" not in gpu, "onnxruntime and onnxruntime-gpu both install the onnxruntime module"
    assert gpu["onnxruntime-gpu"] == cpu["onnxruntime"], "the GPU server would run another ONNX Runtime"
    others = {p: v for p, v in cpu.items() if p != "onnxruntime"}
    assert {p: gpu.get(p) for p in others} == others, "a pin not about ONNX Runtime differs between the images"
    added = set(gpu) - set(cpu) - {"onnxruntime-gpu"}
    assert added, "no CUDA wheels"
    assert all(p.startswith("nvidia-") for p in added), sorted(added)
