"""examples/tabular-text: a PyTorch model with two inputs of two datatypes, run as the training Job runs it,
with its stack-config.yaml's parameters; its outputs, checkpoints and signals checked against the contract."""

from __future__ import annotations

import math
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mlapp import contract

from .trainers import (
    OUTPUT_FILES,
    Run,
    Running,
    contract_env,
    gate_holds,
    load_trainer,
    run_trainer,
    signature,
    stack_config,
)

EXAMPLE = "tabular-text"
CONFIG = stack_config(EXAMPLE)
PARAMS: dict[str, Any] = {
    "epochs": CONFIG["mlstack:trainEpochs"],
    "batch_size": CONFIG["mlstack:trainBatchSize"],
    "learning_rate": CONFIG["mlstack:trainLearningRate"],
    "seed": CONFIG["mlstack:trainSeed"],
}
INPUTS = [("features", "tensor(float)", ["batch", 8]), ("token_ids", "tensor(int64)", ["batch", 12])]
OUTPUTS = [("probabilities", "tensor(float)", ["batch", 3])]
CHECKPOINT = "checkpoint.pt"
# Within the pod's grace period (docs/trainer-contract.md: save and exit within 30 s of SIGTERM).
SIGTERM_GRACE_SECONDS = 30


@dataclass(frozen=True)
class Trained:
    run: Run
    log: str


def train(root: Path, **params: Any) -> tuple[Run, subprocess.CompletedProcess[str]]:
    run = Run.under(root, "tabular-text")
    return run, run_trainer(EXAMPLE, contract_env(run, **(PARAMS | params)), cwd=root)


def held_out() -> Any:
    return load_trainer(EXAMPLE).make_data(int(PARAMS["seed"]))  # the trainer's own rows for the same seed


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The run the read-only tests share: the stack config's parameters."""
    run, result = train(tmp_path_factory.mktemp("tabular"))
    assert result.returncode == contract.EXIT_OK, result.stderr
    return Trained(run, result.stderr)


def test_the_run_writes_the_contract_files_and_a_checkpoint(trained: Trained) -> None:
    assert trained.run.files() == OUTPUT_FILES, trained.log
    assert {p.name for p in trained.run.checkpoint_dir.iterdir()} == {CHECKPOINT}


def test_the_model_takes_two_inputs_of_two_datatypes_with_a_dynamic_batch(trained: Trained) -> None:
    assert signature(trained.run.session()) == (INPUTS, OUTPUTS)


def test_the_model_scores_the_held_out_rows_as_metrics_json_says(trained: Trained) -> None:
    data = held_out()
    (probabilities,) = trained.run.session().run(None, {"features": data.features_test, "token_ids": data.tokens_test})
    metrics = trained.run.metrics()
    assert set(metrics) == {"accuracy", "loss"}
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert float(np.mean(probabilities.argmax(axis=1) == data.y_test)) == metrics["accuracy"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    picked = probabilities[np.arange(len(data.y_test)), data.y_test].astype(np.float64)
    assert float(-np.mean(np.log(picked))) == pytest.approx(metrics["loss"], rel=1e-3)
    # Well above the 0.5 that the commonest class, or either input alone, scores (make_data's docstring).
    assert metrics["accuracy"] > 0.9


def test_each_row_is_answered_on_its_own_as_serving_json_declares(trained: Trained) -> None:
    assert trained.run.serving() == {"batchable": True}
    session, data = trained.run.session(), held_out()
    x, t = data.features_test[:6], data.tokens_test[:6]
    together = session.run(None, {"features": x, "token_ids": t})[0]
    alone = np.concatenate(
        [session.run(None, {"features": x[i : i + 1], "token_ids": t[i : i + 1]})[0] for i in range(6)]
    )
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


def test_an_id_outside_the_vocabulary_reads_as_padding(trained: Trained) -> None:
    """The served model answers any INT64 ids instead of failing its Gather on an index out of range."""
    session, data = trained.run.session(), held_out()
    x, t = data.features_test[:8], data.tokens_test[:8]
    assert (t == 0).any(), "the rows hold no padding to replace"
    strange = np.where(t == 0, np.where(np.arange(t.shape[1]) % 2 == 0, 10**9, -7), t).astype(np.int64)
    padded = session.run(None, {"features": x, "token_ids": t})[0]
    np.testing.assert_allclose(session.run(None, {"features": x, "token_ids": strange})[0], padded, rtol=0, atol=1e-6)


def test_labels_name_each_class_of_the_probabilities(trained: Trained) -> None:
    assert trained.run.labels() == ["low", "medium", "high"]
    assert len(trained.run.labels()) == trained.run.session().get_outputs()[0].shape[1]


def test_the_stack_configs_gate_passes_with_its_parameters(trained: Trained) -> None:
    assert gate_holds(trained.run.metrics(), CONFIG), (trained.run.metrics(), CONFIG)


def test_a_published_version_exits_0_without_training(tmp_path: Path) -> None:
    run = Run.under(tmp_path, "tabular-text")
    run.record.parent.mkdir(parents=True)
    run.record.write_text("{}")
    result = run_trainer(EXAMPLE, contract_env(run, **PARAMS), cwd=tmp_path)
    assert result.returncode == contract.EXIT_OK, result.stderr
    assert "already published" in result.stderr
    assert not run.output_dir.exists()
    assert not run.checkpoint_dir.exists()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ten", "MLAPP_EPOCHS must be an integer >= 1, got 'ten'"),
        ("0", "MLAPP_EPOCHS must be an integer >= 1, got 0"),
        (None, "MLAPP_EPOCHS is not set"),
    ],
)
def test_a_missing_or_bad_epochs_exits_1_naming_it(tmp_path: Path, value: str | None, says: str) -> None:
    run = Run.under(tmp_path, "tabular-text")
    env = contract_env(run, **PARAMS)
    if value is None:
        del env[contract.ENV_EPOCHS]
    else:
        env[contract.ENV_EPOCHS] = value
    result = run_trainer(EXAMPLE, env, cwd=tmp_path)
    assert result.returncode == contract.EXIT_ERROR, result.stderr
    assert says in result.stderr
    assert not run.output_dir.exists()
    assert not run.checkpoint_dir.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda would train")
def test_cuda_without_a_gpu_exits_1_saying_why(tmp_path: Path) -> None:
    """The pod asked for a GPU: falling back to its CPU would hide a broken node or image."""
    run = Run.under(tmp_path, "tabular-text")
    result = run_trainer(EXAMPLE, contract_env(run, device="cuda", **PARAMS), cwd=tmp_path)
    assert result.returncode == contract.EXIT_ERROR, result.stderr
    why = "is a CPU-only build" if torch.version.cuda is None else "finds no usable GPU"
    assert f"MLAPP_DEVICE=cuda, but torch {torch.__version__}" in result.stderr
    assert why in result.stderr
    assert not run.output_dir.exists()


def test_a_run_resumes_from_the_checkpoint_and_ends_as_a_straight_run_would(trained: Trained, tmp_path: Path) -> None:
    """A run of fewer epochs, then the same version's full run resumes after them and trains only the rest;
    its model is byte for byte the one the straight run (the shared fixture) made."""
    epochs = int(PARAMS["epochs"])
    resumed, result = train(tmp_path, epochs=epochs - 1)
    assert result.returncode == contract.EXIT_OK, result.stderr
    assert f"epoch {epochs - 1}/{epochs - 1}" in result.stderr
    _, result = train(tmp_path)
    assert result.returncode == contract.EXIT_OK, result.stderr
    checkpoint = resumed.checkpoint_dir / CHECKPOINT
    assert f"resuming from checkpoint {checkpoint} after {epochs - 1} epochs and 0 batches" in result.stderr
    assert f"epoch {epochs}/{epochs}" in result.stderr
    assert f"epoch 1/{epochs}" not in result.stderr
    assert "resuming" not in trained.log
    model = contract.TRAINER_MODEL_FILE
    assert (resumed.output_dir / model).read_bytes() == (trained.run.output_dir / model).read_bytes()
    assert resumed.metrics() == trained.run.metrics()


def test_sigterm_saves_a_checkpoint_and_exits_1_and_the_next_run_resumes_from_it(tmp_path: Path) -> None:
    """A Spot eviction: SIGTERM mid-run, the checkpoint saved within the grace period, then a new pod resumes."""
    run = Run.under(tmp_path, "tabular-text")
    # Far more epochs than it can run before the signal, in big batches so that each epoch is quick.
    trainer = Running(EXAMPLE, contract_env(run, **(PARAMS | {"epochs": 100_000, "batch_size": 256})), cwd=tmp_path)
    trainer.wait_for("epoch 1/100000")
    trainer.process.send_signal(signal.SIGTERM)
    code, log = trainer.finish(timeout=SIGTERM_GRACE_SECONDS)
    # Any error code but the gate's, a peer's or the publisher's (2, 3, 4): the Job retries it.
    assert code == contract.EXIT_ERROR, log
    assert "stopped by SIGTERM" in log
    assert {p.name for p in run.checkpoint_dir.iterdir()} == {CHECKPOINT}, "a temporary file was left behind"
    state = torch.load(run.checkpoint_dir / CHECKPOINT, weights_only=True)
    epoch, batch = state["epoch"], state["batch"]
    assert epoch >= 1
    assert not run.output_dir.exists()

    result = run_trainer(
        EXAMPLE, contract_env(run, **(PARAMS | {"epochs": epoch + 1, "batch_size": 256})), cwd=tmp_path
    )
    assert result.returncode == contract.EXIT_OK, result.stderr
    assert f"after {epoch} epochs and {batch} batches" in result.stderr
    assert run.files() == OUTPUT_FILES
