"""Helpers shared by the app tests (fixtures live in conftest.py)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"
# The trainer the app's tests serve the model of: the digits example (examples/digits).
DIGITS = REPO / "examples" / "digits"
# Runs a module in a process whose os refuses directory renames, as gcsfuse does.
GCSFUSE_SIM = [str(Path(__file__).resolve().parent / "gcsfuse_sim.py")]
MODEL_NAME = "digits"
VERSION = "t1"
SEED = 7
USER = "tester"
PASSWORD = "s3cret-Pa55word"
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Small enough to train in a few seconds on 2 cores, good enough for >90% held out.
TRAIN_ARGS = ["--epochs", "6", "--batch-size", "32", "--learning-rate", "0.003"]
GATE = "accuracy>=0.9"


def app_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this interpreter's, with ``app/`` importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAPP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(APP), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # These models are tiny: one intra-op thread is faster than two fighting
    # over a 2-core CI machine, and keeps the suite's time steady.
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def run_trainer(
    model_dir: Path,
    version: str,
    *args: str,
    gate: str = GATE,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    wrapper: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The training Job, then the publish Job, as processes: ``python -m digits.train ARGS`` writes its
    outputs into the store's run directory for ``version``, and ``python -m mlapp.publish --run``
    publishes them under ``gate`` (which removes the run's outputs and checkpoints). The trainer's result
    when it fails, else the publisher's, each with the output of both."""
    model = model_dir / MODEL_NAME
    run, checkpoints = model / ".runs" / version, model / ".checkpoints" / version
    digits_env = app_env(**(env or {}))
    digits_env["PYTHONPATH"] = os.pathsep.join([str(DIGITS), digits_env["PYTHONPATH"]])
    trained = subprocess.run(
        [sys.executable, *(wrapper or []), "-m", "digits.train", "--output-dir", str(run),
         "--checkpoint-dir", str(checkpoints), "--model-name", MODEL_NAME, "--model-version", version, *args],
        env=digits_env, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd,
    )  # fmt: skip
    if trained.returncode != 0:
        return trained
    published = subprocess.run(
        [sys.executable, *(wrapper or []), "-m", "mlapp.publish", "--run", str(run), "--model-dir", str(model_dir),
         "--model-name", MODEL_NAME, "--version", version, "--gate", gate],
        env=app_env(**(env or {})), capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd,
    )  # fmt: skip
    return subprocess.CompletedProcess(
        published.args, published.returncode, trained.stdout + published.stdout, trained.stderr + published.stderr
    )


# The published model file run by ONNX Runtime itself, no server between (the ``direct`` fixture).
Direct = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class TrainedModel:
    store: Path
    directory: Path
    log: str


@dataclass(frozen=True)
class HeldOut:
    images: npt.NDArray[np.float32]  # [N, 1, 8, 8] in [0, 1]
    labels: npt.NDArray[np.int64]


def png_of(image: npt.NDArray[np.float32], scale: int = 4, dark_on_light: bool = False) -> bytes:
    """A PNG of one [1, H, W] digit, enlarged, as a person might draw it."""
    from PIL import Image

    pixels = np.rint(image[0] * 255).astype(np.uint8)
    if dark_on_light:
        pixels = 255 - pixels
    img = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``python -m mlapp.serve`` as a real process on a free loopback port."""

    def __init__(
        self,
        tmp: Path,
        model_dir: Path,
        wrapper: list[str] | None = None,
        tls: tuple[Path, Path] | None = None,
        **env: str,
    ) -> None:
        """Plain HTTP unless ``tls`` gives the certificate and key files (then ``url`` is https)."""
        self.port = free_port()
        self.metrics_port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        self.log_path = tmp / f"server-{self.port}.log"
        self.env = app_env(
            MLAPP_HOST="127.0.0.1",
            MLAPP_PORT=str(self.port),
            MLAPP_METRICS_PORT=str(self.metrics_port),
            **(
                {"MLAPP_TLS_CERT_FILE": str(tls[0]), "MLAPP_TLS_KEY_FILE": str(tls[1])}
                if tls
                else {"MLAPP_PLAIN_HTTP": "1"}
            ),
            MLAPP_MODEL_DIR=str(model_dir),
            MLAPP_MODEL_NAME=MODEL_NAME,
            MLAPP_MODEL_VERSION=VERSION,
            MLAPP_AUTH_USERNAME=USER,
            MLAPP_AUTH_PASSWORD=PASSWORD,
        )
        self.env.update(env)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *(wrapper or []), "-m", "mlapp.serve"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, path: str, status: int = 200, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log}")
            try:
                if httpx.get(self.metrics_url + path, timeout=2).status_code == status:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered {status} within {timeout}s:\n{self.log}")

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in the log within {timeout}s:\n{self.log}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def copy_model_into(store: Path, source: Path) -> None:
    """Place a published model the way the trainer does: the model file, then its metadata."""
    final = store / MODEL_NAME / VERSION
    final.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "model.onnx", final / "model.onnx")
    shutil.copyfile(source / "metadata.json", final / "metadata.json")
