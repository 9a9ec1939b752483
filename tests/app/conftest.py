"""Fixtures for the app tests: one trained model per session, real server processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from digits.data import load_digits_dataset
from mlapp.gate import Gate
from mlapp.publish import publish_run
from tools.devcert import Certificates, make_certificates

from .helpers import (
    DIGITS,
    GATE,
    LABELS,
    MODEL_NAME,
    SEED,
    TRAIN_ARGS,
    VERSION,
    Direct,
    HeldOut,
    Server,
    TrainedModel,
    app_env,
)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The model every read-only test shares, trained once per session by the digits example
    (examples/digits) into a run directory, as the training Job does, then published from it."""
    store = tmp_path_factory.mktemp("store")
    run = store / MODEL_NAME / ".runs" / VERSION
    env = app_env(PYTHONPATH=str(DIGITS))
    cmd = [sys.executable, "-m", "digits.train", "--output-dir", str(run), *TRAIN_ARGS, "--seed", str(SEED),
           "--gate", GATE]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    published = publish_run(run, store, MODEL_NAME, VERSION, gate=Gate.parse(GATE))
    return TrainedModel(store, published.directory, result.stdout + result.stderr)


@pytest.fixture(scope="session")
def direct(trained: TrainedModel) -> Direct:
    """The published model file run by ONNX Runtime itself, to compare the server's answers with."""
    session = ort.InferenceSession(str(trained.directory / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]

    def run(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(session.run(["probabilities"], {"input": x})[0], dtype=np.float32)

    return run


@pytest.fixture(scope="session")
def held_out() -> HeldOut:
    data = load_digits_dataset(SEED)  # the trainer's own split for the same seed
    return HeldOut(data.x_test, data.y_test)


@pytest.fixture(scope="session")
def labels_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def server(trained: TrainedModel, labels_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ready server shared by the read-only tests; body limit lowered to test 413.

    Its tests fail logins on purpose, all from 127.0.0.1: the failed-login
    throttle gets a burst they never reach (test_limits.py tests the throttle).
    """
    srv = Server(
        tmp_path_factory.mktemp("server"),
        trained.store,
        MLAPP_LABELS_FILE=str(labels_file),
        MLAPP_MAX_BODY_BYTES=str(256 * 1024),
        MLAPP_FAILED_LOGIN_BURST="100000",
    )
    try:
        srv.wait_for("/v2/health/ready")
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and the server certificate it signs for loopback, as a stack's own CA would."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_server(
    trained: TrainedModel, certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The server as its image starts it in a pod: ``python -m mlapp.serve``, HTTPS, basic auth."""
    srv = Server(tmp_path_factory.mktemp("tls-server"), trained.store, tls=(certificates.cert, certificates.key))
    try:
        srv.wait_for("/v2/health/ready")
        yield srv
    finally:
        srv.stop()
