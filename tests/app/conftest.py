"""Fixtures for the app tests: one trained model per session, real server processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from mlapp.data import load_digits_dataset
from tools.devcert import Certificates, make_certificates

from .helpers import (
    LABELS,
    SEED,
    TRAIN_ARGS,
    VERSION,
    Direct,
    HeldOut,
    Server,
    TrainedModel,
    run_trainer,
)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The model every read-only test shares, trained once per session."""
    store = tmp_path_factory.mktemp("store")
    result = run_trainer(store, VERSION, *TRAIN_ARGS, "--min-accuracy", "0.9", "--seed", str(SEED))
    assert result.returncode == 0, result.stdout + result.stderr
    return TrainedModel(store, store / "digits" / VERSION, result.stdout + result.stderr)


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
