"""examples/iris-forest: a scikit-learn forest converted with skl2onnx, run as the training Job runs it,
with the flags its stack-config.yaml passes, and its outputs checked against the trainer contract."""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from mlapp import contract

from .trainers import OUTPUT_FILES, Run, contract_env, gate_holds, load_trainer, run_trainer, signature, stack_config

EXAMPLE = "iris-forest"
CONFIG = stack_config(EXAMPLE)
SEED = int(CONFIG["mlstack:trainSeed"])
# trainerCommand is the container's command: ["python", "/app/train.py", *flags].
FLAGS = [str(arg) for arg in CONFIG["mlstack:trainerCommand"][2:]]
INPUTS = [("float_input", "tensor(float)", ["batch", 4])]
OUTPUTS = [("label", "tensor(int64)", ["batch"]), ("probabilities", "tensor(float)", ["batch", 3])]
SPECIES = ["setosa", "versicolor", "virginica"]


@dataclass(frozen=True)
class Trained:
    run: Run
    log: str


def train(root: Path, *flags: str, seed: int) -> tuple[Run, subprocess.CompletedProcess[str]]:
    run = Run.under(root, "iris")
    return run, run_trainer(EXAMPLE, contract_env(run, seed=seed), *flags, cwd=root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The run the read-only tests share: the stack config's seed and flags."""
    run, result = train(tmp_path_factory.mktemp("iris"), *FLAGS, seed=SEED)
    assert result.returncode == contract.EXIT_OK, result.stderr
    return Trained(run, result.stderr)


def test_the_run_writes_the_contract_files_and_nothing_else(trained: Trained) -> None:
    assert trained.run.files() == OUTPUT_FILES, trained.log
    assert not trained.run.checkpoint_dir.exists(), "a forest trains in one go: it keeps no checkpoint"


def test_the_model_takes_fp32_features_and_answers_tensors_with_a_dynamic_batch(trained: Trained) -> None:
    assert signature(trained.run.session()) == (INPUTS, OUTPUTS)
    model = onnx.load(str(trained.run.output_dir / contract.TRAINER_MODEL_FILE), load_external_data=False)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert not external, f"model.onnx keeps tensors outside itself: {external}"


def test_the_model_scores_the_held_out_flowers_as_metrics_json_says(trained: Trained) -> None:
    data = load_trainer(EXAMPLE).split(SEED)  # the trainer's own split for the same seed
    label, probabilities = trained.run.session().run(None, {"float_input": data.x_test})
    metrics = trained.run.metrics()
    assert set(metrics) == {"accuracy", "loss"}
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert float(np.mean(label == data.y_test)) == metrics["accuracy"]
    assert np.array_equal(probabilities.argmax(axis=1), label), "the label is not the likeliest class"
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    picked = probabilities[np.arange(len(label)), data.y_test].astype(np.float64)
    log_loss = float(-np.mean(np.log(np.clip(picked, np.finfo(np.float64).eps, 1.0))))
    assert log_loss == pytest.approx(metrics["loss"], rel=1e-4)


def test_each_flower_is_answered_on_its_own_as_serving_json_declares(trained: Trained) -> None:
    assert trained.run.serving() == {"batchable": True}
    session = trained.run.session()
    x = load_trainer(EXAMPLE).split(SEED).x_test[:6]
    together = session.run(["probabilities"], {"float_input": x})[0]
    alone = np.concatenate([session.run(["probabilities"], {"float_input": x[i : i + 1]})[0] for i in range(len(x))])
    # Equal up to FP32 rounding: ONNX Runtime's tree ensemble answers a row alone and within a batch up
    # to 2.4e-7 apart (measured); another row's influence would show as a whole tree's vote, 0.01.
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


def test_labels_name_each_class_of_the_probabilities(trained: Trained) -> None:
    assert trained.run.labels() == SPECIES
    width = trained.run.session().get_outputs()[1].shape[1]
    assert len(trained.run.labels()) == width


def test_the_stack_configs_gate_passes_with_its_seed(trained: Trained) -> None:
    assert gate_holds(trained.run.metrics(), CONFIG), (trained.run.metrics(), CONFIG)


def test_a_rerun_of_the_version_writes_the_same_model(trained: Trained, tmp_path: Path) -> None:
    """The publisher refuses a version that already holds other bytes: a retried Job must write the same."""
    run, result = train(tmp_path, *FLAGS, seed=SEED)
    assert result.returncode == contract.EXIT_OK, result.stderr
    model = contract.TRAINER_MODEL_FILE
    assert (run.output_dir / model).read_bytes() == (trained.run.output_dir / model).read_bytes()


def test_a_published_version_exits_0_without_training(tmp_path: Path) -> None:
    run = Run.under(tmp_path, "iris")
    run.record.parent.mkdir(parents=True)
    run.record.write_text("{}")
    result = run_trainer(EXAMPLE, contract_env(run, seed=SEED), cwd=tmp_path)
    assert result.returncode == contract.EXIT_OK, result.stderr
    assert "already published" in result.stderr
    assert not run.output_dir.exists()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MLAPP_SEED", "forty-two", "MLAPP_SEED must be an integer"),
        ("MLAPP_SEED", "-1", "MLAPP_SEED must be an integer"),
        ("MLAPP_SEED", None, "MLAPP_SEED is not set"),
        ("MLAPP_DEVICE", "tpu", "MLAPP_DEVICE must be cuda or cpu"),
        ("MLAPP_OUTPUT_DIR", None, "MLAPP_OUTPUT_DIR is not set"),
    ],
)
def test_a_missing_or_bad_variable_exits_1_naming_it(
    tmp_path: Path, variable: str, value: str | None, says: str
) -> None:
    run = Run.under(tmp_path, "iris")
    env = contract_env(run, seed=SEED)
    if value is None:
        del env[variable]
    else:
        env[variable] = value
    result = run_trainer(EXAMPLE, env, cwd=tmp_path)
    assert result.returncode == contract.EXIT_ERROR, result.stderr
    assert says in result.stderr
    assert not run.output_dir.exists()


def test_a_bad_flag_exits_1_not_the_gates_2(tmp_path: Path) -> None:
    """argparse exits 2 on its own, which the Job would read as "under the gate" and never retry."""
    run = Run.under(tmp_path, "iris")
    result = run_trainer(EXAMPLE, contract_env(run, seed=SEED), "--n-estimators", "0", cwd=tmp_path)
    assert result.returncode == contract.EXIT_ERROR, result.stderr
    assert "--n-estimators" in result.stderr


def test_cuda_trains_on_the_cpu_and_says_so(tmp_path: Path) -> None:
    """scikit-learn's forests have no GPU code: a pod given a GPU still trains, on the CPU, with a warning."""
    run = Run.under(tmp_path, "iris")
    result = run_trainer(EXAMPLE, contract_env(run, device="cuda", seed=SEED), *FLAGS, cwd=tmp_path)
    assert result.returncode == contract.EXIT_OK, result.stderr
    assert "scikit-learn has no GPU support: training on the CPU" in result.stderr
    assert run.files() == OUTPUT_FILES
