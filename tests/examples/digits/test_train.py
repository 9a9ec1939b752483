"""The digits trainer, run for real as the Job runs it: its outputs, the gate, exit codes, resume."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

from digits import contract, files
from digits.data import DataError, load_idx_dataset, read_idx

from .conftest import HeldOut, TrainedRun
from .helpers import REPO, SEED, TRAIN_ARGS, Run, run_trainer, trainer_env

OUTPUTS = ["labels.txt", "metrics.json", "model.onnx", "serving.json"]
SERVING = {
    "batchable": True,
    "plugin": {"name": "image-classifier", "input": "input", "output": "probabilities", "height": 8, "width": 8,
               "foreground": "light", "scores": "probabilities"},
}  # fmt: skip


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def metrics_of(run: Run) -> dict[str, Any]:
    metrics: dict[str, Any] = json.loads((run.output_dir / "metrics.json").read_text(encoding="utf-8"))
    return metrics


def test_the_run_writes_the_contracts_outputs(trained_run: TrainedRun, held_out: HeldOut) -> None:
    run = trained_run.run
    assert sorted(p.name for p in run.output_dir.iterdir()) == OUTPUTS
    metrics = metrics_of(run)
    assert sorted(metrics) == ["accuracy", "loss", "steps"]
    assert all(type(v) in (int, float) for v in metrics.values()), metrics
    assert metrics["steps"] == 6 * 45
    assert 0 < metrics["loss"] < 1
    assert metrics["accuracy"] >= 0.9
    # The accuracy it reports is the accuracy of the model it wrote.
    probs = session(run.output_dir / "model.onnx").run(None, {"input": held_out.images})[0]
    onnx_accuracy = float((probs.argmax(1) == held_out.labels).mean())
    assert abs(onnx_accuracy - metrics["accuracy"]) <= 1 / len(held_out.labels)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (run.output_dir / "labels.txt").read_text(encoding="utf-8") == "".join(f"{i}\n" for i in range(10))
    assert json.loads((run.output_dir / "serving.json").read_text(encoding="utf-8")) == SERVING
    # The checkpoint is left for the publisher, which removes it once the version is published.
    assert run.checkpoint.is_file()
    assert sorted(p.name for p in run.checkpoint_dir.iterdir()) == ["checkpoint.pt"]


def test_the_model_has_the_interface_serving_json_names(trained_run: TrainedRun) -> None:
    """One file, tensors inside, input FP32 [-1, 1, 8, 8] and output FP32 [-1, 10], the batch dynamic."""
    model = onnx.load(str(trained_run.run.output_dir / "model.onnx"), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)

    def interface(values: Any) -> list[tuple[str, int, list[int | str]]]:
        return [
            (v.name, v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in values
        ]

    fp32 = onnx.TensorProto.FLOAT
    assert interface(model.graph.input) == [("input", fp32, ["batch", 1, 8, 8])]
    assert interface(model.graph.output) == [("probabilities", fp32, ["batch", 10])]


def test_training_logs_progress_and_held_out_accuracy(trained_run: TrainedRun) -> None:
    assert re.search(r"step 20 epoch 1 loss \d+\.\d+ running accuracy \d\.\d+", trained_run.log)
    assert re.search(r"Accuracy at step 270: 0\.9\d+", trained_run.log)  # 6 epochs x 45 steps
    assert "held-out accuracy" in trained_run.log


def test_onnx_export_matches_torch(tmp_path: Path, held_out: HeldOut) -> None:
    import torch

    from digits.fit import export_onnx
    from digits.model import DigitCNN, WithSoftmax

    torch.manual_seed(0)
    net = DigitCNN(8, 8, 10).eval()
    export_onnx(net, 8, 8, tmp_path / "m.onnx")
    x = held_out.images[:16]
    with torch.no_grad():
        expected = WithSoftmax(net)(torch.from_numpy(x)).numpy()
    got = session(tmp_path / "m.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_an_already_published_version_exits_0_without_training(tmp_path: Path) -> None:
    run = Run.under(tmp_path, "done")
    run.record.parent.mkdir(parents=True)
    run.record.write_text("{}", encoding="utf-8")
    result = run_trainer(run, *TRAIN_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert f"is already published ({run.record} exists); nothing to do" in result.stdout
    assert "data set" not in result.stdout  # it did not even load the data
    assert not run.output_dir.exists()
    assert not run.checkpoint_dir.exists()


def test_accuracy_under_the_gate_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    run = Run.under(tmp_path, "gate")
    result = run_trainer(
        run, "--epochs", "1", "--batch-size", "512", "--learning-rate", "0.0001", "--gate", "accuracy>=1.0"
    )
    assert result.returncode == contract.EXIT_GATE, result.stdout + result.stderr
    assert re.search(r"accuracy 0\.\d{4} misses the gate accuracy>=1; writing no outputs", result.stdout)
    assert list(run.output_dir.iterdir()) == []


def test_a_gate_on_the_loss_is_judged_too(tmp_path: Path) -> None:
    """The gate is a metric, a direction and a threshold: the trainer judges any metric it writes."""
    run = Run.under(tmp_path, "loss")
    result = run_trainer(run, *QUICK_ARGS, env=gate_env("loss", "minimize", "0.000001"))
    assert result.returncode == contract.EXIT_GATE, result.stdout + result.stderr
    assert re.search(r"loss \d+\.\d{4} misses the gate loss<=1e-06; writing no outputs", result.stdout)
    assert list(run.output_dir.iterdir()) == []


def test_a_gate_on_a_metric_it_does_not_write_is_left_to_the_publisher(tmp_path: Path) -> None:
    run = Run.under(tmp_path, "f1")
    result = run_trainer(run, *QUICK_ARGS, env=gate_env("f1", "maximize", "0.99"))
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert "the gate's metric 'f1' is not one this trainer reports (accuracy, loss, steps)" in result.stdout
    assert sorted(p.name for p in run.output_dir.iterdir()) == OUTPUTS


def gate_env(metric: str, direction: str, threshold: str) -> dict[str, str]:
    return {
        contract.ENV_GATE_METRIC: metric,
        contract.ENV_GATE_DIRECTION: direction,
        contract.ENV_GATE_THRESHOLD: threshold,
    }


def test_unreadable_data_exits_1(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    result = run_trainer(Run.under(tmp_path / "store", "x"), *TRAIN_ARGS, "--data-dir", str(tmp_path / "data"))
    assert result.returncode == contract.EXIT_ERROR, result.stdout + result.stderr
    assert "cannot load training data" in result.stdout
    assert "train-images-idx3-ubyte.gz" in result.stdout


def test_an_output_directory_that_cannot_be_written_exits_1(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_trainer(None, *TRAIN_ARGS, "--output-dir", str(not_a_dir))
    assert result.returncode == contract.EXIT_ERROR, result.stdout + result.stderr
    assert f"cannot write to the output directory {not_a_dir}" in result.stdout


# ---------------------------------------------------------------- inputs: flags over the environment

DIRECTORY_RULE = (
    "must be a directory path that is not empty, not the filesystem root, without a NUL byte "
    "and without a '..' component"
)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--epochs", "0"], {}, "argument --epochs: must be a positive integer"),
        (["--learning-rate", "-1"], {}, "argument --learning-rate: must be a positive number"),
        (["--gate", "accuracy>>0.9"], {}, "argument --gate: the gate must read METRIC>=THRESHOLD"),
        (["--device", "gpu"], {}, "argument --device: must be one of auto, cuda, cpu"),
        # Bug: --model-dir "" (as the flag was then) published into the current directory with exit 0.
        (["--output-dir", ""], {}, f"argument --output-dir: {DIRECTORY_RULE}; got ''"),
        (["--output-dir", "a/../b"], {}, f"argument --output-dir: {DIRECTORY_RULE}; got 'a/../b'"),
        # The same rules hold for what the environment gives, and the message names the variable.
        (["--epochs", "-"], {"MLAPP_EPOCHS": "0"}, "MLAPP_EPOCHS (or --epochs): must be a positive integer, got 0"),
        ([], {"MLAPP_DEVICE": "gpu"}, "MLAPP_DEVICE (or --device): must be one of auto, cuda, cpu"),
        ([], {"MLAPP_GATE_METRIC": "accuracy", "MLAPP_GATE_DIRECTION": "up", "MLAPP_GATE_THRESHOLD": "0.9"},
         "MLAPP_GATE_DIRECTION must be one of maximize, minimize, got 'up'"),
        ([], {"MLAPP_GATE_METRIC": "accuracy", "MLAPP_GATE_DIRECTION": "maximize", "MLAPP_GATE_THRESHOLD": "nan"},
         "MLAPP_GATE_THRESHOLD must be a finite number"),
        # A required value that neither gives.
        (["--output-dir", "-"], {"MLAPP_OUTPUT_DIR": ""}, "--output-dir or MLAPP_OUTPUT_DIR is required"),
        (["--epochs", "-"], {"MLAPP_EPOCHS": ""}, "--epochs or MLAPP_EPOCHS is required"),
    ],
)  # fmt: skip
def test_bad_or_missing_inputs_exit_1_naming_the_flag_or_the_variable(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """Exit 1, not argparse's 2: 2 tells the Job the model is under the gate."""
    base = {"--output-dir": "out", "--epochs": "1", "--batch-size": "8", "--learning-rate": "0.1"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [x for flag, value in base.items() if value != "-" for x in (flag, value)]
    # In tmp_path, so that a relative --output-dir that is not refused lands where the test looks.
    result = run_trainer(None, *argv, env=env, cwd=tmp_path)
    assert result.returncode == contract.EXIT_ERROR, result.stdout + result.stderr
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("output_dir", ["/", "//", "/.", "runs\0"])
def test_an_output_dir_at_the_root_or_with_a_nul_byte_exits_1(
    capsys: pytest.CaptureFixture[str], output_dir: str
) -> None:
    """Parsed in-process: no process can be given a NUL, and a trainer run on "/" would write there."""
    from digits import train

    with pytest.raises(SystemExit) as exited:
        train.parse_args(["--output-dir", output_dir, "--epochs", "1", "--batch-size", "8", "--learning-rate", "0.1"],
                         env={})  # fmt: skip
    assert exited.value.code == contract.EXIT_ERROR
    assert f"{DIRECTORY_RULE}; got {output_dir!r}" in capsys.readouterr().err


def parsed(argv: list[str], env: dict[str, str]) -> argparse.Namespace:
    from digits import train

    return train.parse_args(argv, env=env)


def test_the_environment_gives_every_input_and_a_flag_overrides_its_variable(tmp_path: Path) -> None:
    env = {
        "MLAPP_OUTPUT_DIR": str(tmp_path / "out"), "MLAPP_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "MLAPP_MODEL_RECORD": str(tmp_path / "record"), "MLAPP_MODEL_NAME": "m", "MLAPP_MODEL_VERSION": "v9",
        "MLAPP_DEVICE": "cpu", "MLAPP_EPOCHS": "3", "MLAPP_BATCH_SIZE": "16", "MLAPP_LEARNING_RATE": "0.01",
        "MLAPP_SEED": "5", **gate_env("accuracy", "maximize", "0.8"),
    }  # fmt: skip
    from_env = parsed([], env)
    assert (from_env.output_dir, from_env.checkpoint_dir, from_env.model_record) == (
        tmp_path / "out", tmp_path / "ckpt", tmp_path / "record",
    )  # fmt: skip
    assert (from_env.model_name, from_env.model_version, from_env.device) == ("m", "v9", "cpu")
    assert (from_env.epochs, from_env.batch_size, from_env.learning_rate, from_env.seed) == (3, 16, 0.01, 5)
    assert str(from_env.gate) == "accuracy>=0.8"
    flags = parsed(["--epochs", "7", "--seed", "0", "--device", "auto", "--gate", "loss<=0.5",
                    "--output-dir", str(tmp_path / "mine")], env)  # fmt: skip
    assert (flags.epochs, flags.seed, flags.device, str(flags.gate)) == (7, 0, "auto", "loss<=0.5")
    assert (flags.output_dir, flags.batch_size) == (tmp_path / "mine", 16)


def test_a_run_by_hand_needs_only_the_output_dir_and_the_training_parameters(tmp_path: Path) -> None:
    args = parsed(["--output-dir", str(tmp_path), *TRAIN_ARGS], {})
    assert (args.checkpoint_dir, args.model_record, args.gate) == (None, None, None)
    assert (args.model_name, args.model_version, args.device, args.seed) == ("digits", "local", "auto", 0)


# ---------------------------------------------------------------- IDX files


def idx_bytes(array: npt.NDArray[np.uint8]) -> bytes:
    return (
        bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + (array.astype(">u1").tobytes())
    )


def synthetic_idx(directory: Path, n_train: int, n_test: int, *, gz: bool) -> None:
    """4 classes of 12x12 images: a bright 6x6 block in one quadrant plus noise."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 4, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 12, 12)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, col = divmod(int(c), 2)
            images[i, r * 6 : r * 6 + 6, col * 6 : col * 6 + 6] = 250
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(arr)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (directory / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (directory / name).write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_reads_plain_and_gzipped_files(tmp_path: Path, gz: bool) -> None:
    synthetic_idx(tmp_path, 40, 10, gz=gz)
    data = load_idx_dataset(tmp_path)
    assert data.x_train.shape == (40, 1, 12, 12)
    assert data.x_test.shape == (10, 1, 12, 12)
    assert data.x_train.dtype == np.float32
    assert float(data.x_train.max()) == pytest.approx(250 / 255)
    assert data.num_classes == 4
    assert data.pixel_max == 255.0
    raw = read_idx(tmp_path / ("train-labels-idx1-ubyte" + (".gz" if gz else "")))
    np.testing.assert_array_equal(data.y_train, raw.astype(np.int64))


def test_idx_loader_rejects_corrupt_files(tmp_path: Path) -> None:
    synthetic_idx(tmp_path, 20, 5, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(good[:-7])  # truncated
    with pytest.raises(DataError, match="header says"):
        load_idx_dataset(tmp_path)
    images.write_bytes(b"\x01\x02" + good[2:])  # bad magic
    with pytest.raises(DataError, match="bad magic"):
        load_idx_dataset(tmp_path)
    images.write_bytes(good)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="no t10k labels"):
        load_idx_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(DataError, match="5 images but 4 labels"):
        load_idx_dataset(tmp_path)


def test_trains_on_idx_files_writing_only_its_output_and_checkpoint_directories(tmp_path: Path) -> None:
    synthetic_idx(tmp_path / "data", 300, 60, gz=True)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    model_store = tmp_path / "store"
    result = run_trainer(
        Run.under(model_store, "idx"), "--epochs", "3", "--batch-size", "32", "--learning-rate", "0.01",
        "--gate", "accuracy>=0.9", "--data-dir", str(tmp_path / "data"),
        env={"MLAPP_TRAINER_IMAGE": "registry.example/digits-trainer@sha256:abc", "HOME": str(home)},
        cwd=cwd,
    )  # fmt: skip
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert "trainer image registry.example/digits-trainer@sha256:abc" in result.stdout
    # The pod's root filesystem is read-only: nothing may land in $HOME or the cwd.
    assert list(home.iterdir()) == []
    assert list(cwd.iterdir()) == []
    written = sorted(str(p.relative_to(model_store)) for p in model_store.rglob("*"))
    assert written == [
        "digits", "digits/.checkpoints", "digits/.checkpoints/idx", "digits/.checkpoints/idx/checkpoint.pt",
        "digits/.runs", "digits/.runs/idx", *(f"digits/.runs/idx/{name}" for name in OUTPUTS),
    ]  # fmt: skip
    run = Run.under(model_store, "idx")
    assert metrics_of(run)["accuracy"] >= 0.9
    assert (run.output_dir / "labels.txt").read_text(encoding="utf-8") == "0\n1\n2\n3\n"
    serving = json.loads((run.output_dir / "serving.json").read_text(encoding="utf-8"))
    assert (serving["plugin"]["height"], serving["plugin"]["width"]) == (12, 12)
    probs = session(run.output_dir / "model.onnx").run(None, {"input": np.zeros((2, 1, 12, 12), np.float32)})[0]
    assert probs.shape == (2, 4)


def test_the_trainer_writes_where_directories_cannot_be_renamed(tmp_path: Path) -> None:
    """gcsfuse refuses to rename a non-empty directory on a flat bucket: the checkpoint and the outputs
    are written file by file (tests/app/gcsfuse_sim.py makes this process's os refuse as gcsfuse does)."""
    run = Run.under(tmp_path, "fuse")
    simulated = [str(REPO / "tests" / "app" / "gcsfuse_sim.py")]
    result = run_trainer(run, *QUICK_ARGS, "--checkpoint-every", "5", wrapper=simulated)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert "checkpoint saved at step 5" in result.stdout
    assert sorted(p.name for p in run.output_dir.iterdir()) == OUTPUTS


# ---------------------------------------------------------------- the export


def test_a_crash_during_the_export_writes_nothing_and_keeps_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from digits import fit, train

    def explode(net: object, height: int, width: int, path: Path) -> None:
        path.write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    run = Run.under(tmp_path, "crash")
    monkeypatch.setattr(fit, "export_onnx", explode)
    code = train.main(["--output-dir", str(run.output_dir), "--checkpoint-dir", str(run.checkpoint_dir), *QUICK_ARGS])
    crashed = capsys.readouterr().out
    assert code == contract.EXIT_ERROR, crashed
    (epoch,) = [json.loads(line[line.index("{") :]) for line in crashed.splitlines() if '"event":"epoch"' in line]
    # The model is exported outside the output directory first: nothing of it lands there.
    assert list(run.output_dir.iterdir()) == []
    # The checkpoint after the last epoch survives, so the retry does not train again...
    assert run.checkpoint.is_file()
    monkeypatch.undo()
    again = run_trainer(run, *QUICK_ARGS, version="crash")
    assert again.returncode == contract.EXIT_OK, again.stdout + again.stderr
    assert f"resuming from checkpoint {run.checkpoint} at step 23" in again.stdout
    assert "step 20 epoch" not in again.stdout
    # ...and writes what the crashed run would have, the last epoch's loss included (the checkpoint carries it).
    assert metrics_of(run) == {"accuracy": epoch["heldout_accuracy"], "loss": epoch["loss"], "steps": 23}


# ---------------------------------------------------------------- resume

# The session run's arguments: an interrupted and resumed run must end with exactly its weights.
# --checkpoint-every changes when state is saved, not what is learned.
RESUME_ARGS = [*TRAIN_ARGS, "--gate", "accuracy>=0.9", "--seed", str(SEED), "--checkpoint-every", "10"]


def kill_after_first_checkpoint(run: Run, sig: signal.Signals) -> str:
    cmd = [sys.executable, "-m", "digits.train", *RESUME_ARGS]
    env = trainer_env(run, "r")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "checkpoint saved at step" in line:
            proc.send_signal(sig)
            break
    seen.extend(proc.stdout)
    proc.wait(timeout=60)
    output = "".join(seen)
    assert proc.returncode != 0, output
    return output


def test_resumes_from_checkpoint_after_a_hard_kill(tmp_path: Path, held_out: HeldOut, trained_run: TrainedRun) -> None:
    run = Run.under(tmp_path, "r")
    kill_after_first_checkpoint(run, signal.SIGKILL)
    assert run.checkpoint.is_file()
    assert not (run.output_dir / "model.onnx").exists()

    resumed = run_trainer(run, *RESUME_ARGS, version="r")
    assert resumed.returncode == contract.EXIT_OK, resumed.stdout + resumed.stderr
    match = re.search(r"resuming from checkpoint \S+ at step (\d+)", resumed.stdout)
    assert match, resumed.stdout
    resumed_at = int(match.group(1))
    assert resumed_at >= 10
    # It carried on from there: no step at or before the checkpoint is trained again.
    steps = [int(n) for n in re.findall(r"step (\d+) epoch", resumed.stdout)]
    assert steps
    assert min(steps) > resumed_at

    # Resuming is exact: the same weights and metrics as the session's run, never interrupted.
    assert metrics_of(run) == metrics_of(trained_run.run)
    assert metrics_of(run)["steps"] == 6 * 45
    x = held_out.images[:32]
    out_r = session(run.output_dir / "model.onnx").run(None, {"input": x})[0]
    out_s = session(trained_run.run.output_dir / "model.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(out_r, out_s, atol=1e-6)


def test_sigterm_saves_a_checkpoint_and_exits_1(tmp_path: Path) -> None:
    run = Run.under(tmp_path, "t")
    output = kill_after_first_checkpoint(run, signal.SIGTERM)
    assert "stopped by SIGTERM at step" in output
    assert run.checkpoint.is_file()
    assert not (run.output_dir / "model.onnx").exists()


# One quick epoch (23 steps of 64), seed 0, no gate: for the checkpoint tests, where the model's quality
# does not matter.
QUICK_ARGS = ["--epochs", "1", "--batch-size", "64", "--learning-rate", "0.01"]


def zip_archive(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("write", "says"),
    [
        (lambda path: path.write_bytes(b"\x80\x04 torn write"), "it carries no size and SHA-256 at its end"),
        # Whole by its checksum, but no torch archive: torch.load's refusal is the reason.
        (lambda path: files.write_checked(path, zip_archive({"notes.txt": b"not a checkpoint"})), "unreadable"),
    ],
    ids=["foreign bytes", "checked, but not torch's"],
)
def test_damaged_or_foreign_checkpoint_is_ignored(tmp_path: Path, write: Callable[[Path], None], says: str) -> None:
    run = Run.under(tmp_path, "d")
    run.checkpoint_dir.mkdir(parents=True)
    write(run.checkpoint)
    result = run_trainer(run, *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    warning = next(line for line in result.stdout.splitlines() if "WARNING digits.train ignoring" in line)
    assert says in warning
    assert warning.endswith("; training from scratch")
    assert "resuming" not in result.stdout
    assert (run.output_dir / "model.onnx").is_file()


@pytest.fixture(scope="module")
def quick_from_scratch(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """What a QUICK_ARGS run writes with no checkpoint, and no gate: what an ignored checkpoint must end in."""
    run = Run.under(tmp_path_factory.mktemp("scratch"), "s")
    result = run_trainer(run, *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert '"event":"gate"' not in result.stdout  # no gate, no verdict: the outputs are written
    return run


def quick_checkpoint(defect: str) -> dict[str, Any]:
    """What a QUICK_ARGS run saves after step 5, but with weights of another seed, and with ``defect``."""
    import torch

    from digits.fit import Params
    from digits.model import DigitCNN

    def trained_one_step(net: torch.nn.Module) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        net(torch.zeros(2, 1, 8, 8)).sum().backward()
        optimizer.step()  # Adam keeps its moments only once it has stepped
        return net, optimizer

    torch.manual_seed(SEED)  # not the run's seed 0: a resumed net differs from a fresh one
    net, optimizer = trained_one_step(DigitCNN(8, 8, 10))
    state: dict[str, Any] = {
        "params": Params(1, 64, 0.01, 0, "sklearn-digits").as_dict(),
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": {},  # what a disabled (CPU) GradScaler saves
        "rng": torch.get_rng_state(),
        "epoch": 0,
        "batch": 5,
        "step": 5,
        "loss_sum": 5 * 64 * 2.0,
        "seen": 5 * 64,
    }
    if defect == "no optimizer":
        del state["optimizer"]
    elif defect == "step a string":
        state["step"] = "5"
    elif defect == "step not at its batch":
        state["step"] = 6
    elif defect == "no loss":
        del state["loss_sum"]
    elif defect == "examples seen negative":
        state["seen"] = -1
    elif defect == "model of another architecture":
        state["model"] = torch.nn.Linear(64, 10).state_dict()
    elif defect == "model of 3 classes":
        state["model"] = DigitCNN(8, 8, 3).state_dict()  # all but the last layer fit, and load
    elif defect == "optimizer of 3 classes":
        state["optimizer"] = trained_one_step(DigitCNN(8, 8, 3))[1].state_dict()
    elif defect == "rng of another generator":
        state["rng"] = torch.zeros(16, dtype=torch.uint8)  # fails after model and optimizer loaded
    else:
        assert defect == "none"
    return state


@pytest.mark.parametrize(
    ("defect", "reason"),
    [
        ("no optimizer", "it has no 'optimizer'"),
        ("step a string", "its 'step' is str, not int"),
        ("step not at its batch", "its position (epoch 0, batch 5, step 6, 320 examples seen) is not one this run"),
        ("no loss", "it has no 'loss_sum'"),
        ("examples seen negative", "its position (epoch 0, batch 5, step 5, -1 examples seen) is not one this run"),
        ("model of another architecture", "its state does not fit this model (Error(s) in loading state_dict"),
        ("model of 3 classes", "size mismatch for head.4.weight"),
        ("optimizer of 3 classes", "optimizer state 'exp_avg' has shape (3, 64), its parameter (10, 64)"),
        ("rng of another generator", "its state does not fit this model"),
    ],
)
def test_a_checkpoint_that_loads_but_cannot_resume_is_ignored(
    tmp_path: Path, quick_from_scratch: Run, held_out: HeldOut, defect: str, reason: str
) -> None:
    """Bug: a checkpoint with this run's params but missing or misfit state failed every retry of the Job."""
    from digits import fit

    run = Run.under(tmp_path, "c")
    run.checkpoint_dir.mkdir(parents=True)
    fit.save_checkpoint(run.checkpoint, quick_checkpoint(defect))
    result = run_trainer(run, *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    warnings = [
        line
        for line in result.stdout.splitlines()
        if f"WARNING digits.train ignoring checkpoint {run.checkpoint}" in line
    ]
    assert len(warnings) == 1, result.stdout
    assert reason in warnings[0]
    assert warnings[0].endswith("training from scratch")
    assert "resuming" not in result.stdout
    # From scratch means from scratch: nothing of a half-loaded checkpoint is kept.
    x = held_out.images[:32]
    got = session(run.output_dir / "model.onnx").run(None, {"input": x})[0]
    want = session(quick_from_scratch.output_dir / "model.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert metrics_of(run) == metrics_of(quick_from_scratch)


def test_the_checkpoint_of_the_unusable_checkpoint_tests_resumes_when_whole(tmp_path: Path) -> None:
    """quick_checkpoint without a defect is one a run resumes from: the tests above fail on their defect only."""
    from digits import fit

    run = Run.under(tmp_path, "c")
    run.checkpoint_dir.mkdir(parents=True)
    fit.save_checkpoint(run.checkpoint, quick_checkpoint("none"))
    result = run_trainer(run, *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert f"resuming from checkpoint {run.checkpoint} at step 5" in result.stdout
    assert "WARNING" not in result.stdout


# ---------------------------------------------------------------- checkpoint integrity


def flip_tensor_bytes(saved: bytes, tensor: Any, count: int = 32) -> bytes:
    """``saved`` with ``count`` bytes in the middle of ``tensor``'s data inverted: the archive stores each tensor's
    bytes as they are, uncompressed, so they are found by value."""
    raw = tensor.numpy().tobytes()
    assert saved.count(raw) == 1, "the tensor's bytes are not in the checkpoint once"
    at = saved.index(raw) + len(raw) // 2
    return saved[:at] + bytes(b ^ 0xFF for b in saved[at : at + count]) + saved[at + count :]


CHECKPOINT_DAMAGE: dict[str, tuple[Callable[[bytes, dict[str, Any]], bytes] | None, str]] = {
    "32 bytes of a tensor flipped": (
        lambda saved, state: flip_tensor_bytes(saved, state["model"]["head.4.weight"]),
        "it is damaged (its {size} bytes have SHA-256 {flipped}…, its end names {size} bytes with SHA-256 {sha}…)",
    ),
    "truncated": (lambda saved, _: saved[: len(saved) // 2], "it carries no size and SHA-256 at its end"),
    "its SHA-256 changed": (
        lambda saved, _: saved[:-64] + b"0" * 64,
        "it is damaged (its {size} bytes have SHA-256 {sha}…, its end names {size} bytes with SHA-256 000000000000…)",
    ),
    "zero-filled": (lambda saved, _: bytes(len(saved)), "it carries no size and SHA-256 at its end"),
    "saved before checkpoints carried a SHA-256": (None, "it carries no size and SHA-256 at its end"),
}


@pytest.mark.parametrize("damage", CHECKPOINT_DAMAGE)
def test_a_damaged_or_unverifiable_checkpoint_is_not_resumed(
    tmp_path: Path, quick_from_scratch: Run, held_out: HeldOut, damage: str
) -> None:
    """Bug: 32 flipped bytes in a checkpoint's tensor data were resumed from: torch.load checks nothing.

    A checkpoint without a size and SHA-256 (one saved before they were recorded) is refused too, since
    nothing says it is whole; that costs one run from scratch after the upgrade."""
    import torch

    from digits import fit

    run = Run.under(tmp_path, "k")
    run.checkpoint_dir.mkdir(parents=True)
    state = quick_checkpoint("none")
    change, says = CHECKPOINT_DAMAGE[damage]
    if change is None:
        torch.save(state, run.checkpoint)
    else:
        fit.save_checkpoint(run.checkpoint, state)
        saved = run.checkpoint.read_bytes()
        damaged = change(saved, state)
        if damage == "32 bytes of a tensor flipped":
            # What torch alone would have resumed from: it loads, with other weights.
            loaded = torch.load(io.BytesIO(damaged), weights_only=True)
            assert not torch.equal(loaded["model"]["head.4.weight"], state["model"]["head.4.weight"])
        run.checkpoint.write_bytes(damaged)
        body = len(saved) - files.CHECKED_COMMENT_BYTES
        sha, flipped = (hashlib.sha256(data[:body]).hexdigest()[:12] for data in (saved, damaged))
        says = says.format(size=body, sha=sha, flipped=flipped)

    result = run_trainer(run, *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.stdout
    assert f"WARNING digits.train ignoring checkpoint {run.checkpoint}: {says}" in warnings[0]
    assert warnings[0].endswith("; training from scratch")
    assert "resuming" not in result.stdout
    # From scratch: the same model and metrics as a run that never had a checkpoint.
    x = held_out.images[:32]
    got = session(run.output_dir / "model.onnx").run(None, {"input": x})[0]
    want = session(quick_from_scratch.output_dir / "model.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert metrics_of(run) == metrics_of(quick_from_scratch)
    # The run saved checkpoints of its own over it, which verify.
    files.read_checked(run.checkpoint)


def test_a_checked_checkpoint_is_still_a_torch_archive(tmp_path: Path) -> None:
    """The size and SHA-256 live in the zip's comment: torch.load, and any zip reader, read the file as before."""
    import torch

    from digits import fit

    state = quick_checkpoint("none")
    path = tmp_path / "checkpoint.pt"
    fit.save_checkpoint(path, state)
    data = path.read_bytes()
    assert files.read_checked(path) == data
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["model"]["head.4.weight"], state["model"]["head.4.weight"])
    comment = zipfile.ZipFile(path).comment
    assert re.fullmatch(rb"digits-checkpoint 1 (\d{15}) ([0-9a-f]{64})", comment), comment
    assert int(comment.split()[2]) == len(data) - len(comment)
    assert comment.split()[3].decode() == hashlib.sha256(data[: -len(comment)]).hexdigest()


# ---------------------------------------------------------------- staging leftovers


def killed_run_leftovers(run: Run) -> tuple[list[Path], list[Path]]:
    """What writers killed between writing and renaming leave, and files beside them that are not that."""
    run.output_dir.mkdir(parents=True)
    run.checkpoint_dir.mkdir(parents=True)
    out, ckpt = run.output_dir, run.checkpoint_dir
    leftovers = [
        out / ".model.onnx.0f1e2d3c4b5a6978.tmp",
        out / ".metrics.json.00112233aabbccdd.tmp",
        out / ".labels.txt.00112233aabbccdd.tmp",
        out / ".serving.json.00112233aabbccdd.tmp",
        ckpt / ".checkpoint.pt.9a8b7c6d5e4f3021.tmp",
    ]
    others = [
        out / "notes.txt",
        out / ".model.onnx.tmp",
        out / "model.onnx.0f1e2d3c4b5a6978.tmp",
        out / ".model.onnx.0f1e2d3c4b5a6978.tmp.keep",
        out / ".other.onnx.0f1e2d3c4b5a6978.tmp",
        ckpt / ".checkpoint.pt.x.0f1e2d3c4b5a6978.tmp",
        ckpt / "notes.pt",
    ]
    for path in leftovers + others:
        path.write_bytes(b"half")
    return leftovers, others


def test_remove_staging_removes_only_the_named_files_leftovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run.under(tmp_path, "v1")
    leftovers, others = killed_run_leftovers(run)
    (run.output_dir / ".model.onnx.aaaaaaaaaaaaaaaa.tmp").mkdir()  # named so, but a directory
    outputs = {"model.onnx", "metrics.json", "labels.txt", "serving.json"}
    assert files.remove_staging(run.output_dir, outputs) == 4
    assert files.remove_staging(run.checkpoint_dir, {"checkpoint.pt"}) == 1
    assert [p for p in leftovers if p.exists()] == []
    assert [p for p in others if not p.exists()] == []
    assert (run.output_dir / ".model.onnx.aaaaaaaaaaaaaaaa.tmp").is_dir()
    assert files.remove_staging(run.output_dir, outputs) == 0
    assert files.remove_staging(tmp_path / "missing", outputs) == 0

    # The names write_file_atomic stages under are the ones remove_staging recognises.
    staged: list[str] = []

    def killed(src: str, dst: str) -> None:
        staged.append(Path(src).name)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    for path in (run.output_dir / "model.onnx", run.checkpoint):
        with pytest.raises(KeyboardInterrupt):
            files.write_file_atomic(path, b"data")
    assert [files.staging_target(name) for name in staged] == ["model.onnx", "checkpoint.pt"], staged
    # ...and a write killed before its rename removes its staging file on the way out.
    assert not [name for name in staged if (run.output_dir / name).exists() or (run.checkpoint_dir / name).exists()]


def test_staging_files_of_a_killed_run_are_removed_before_training(tmp_path: Path) -> None:
    """Bug: staging files of a write killed before its rename stayed in the store forever."""
    run = Run.under(tmp_path, "k")
    leftovers, others = killed_run_leftovers(run)
    result = run_trainer(run, *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert f"removed {len(leftovers)} staging file(s) that an interrupted run of this version left" in result.stdout
    assert [p for p in leftovers if p.exists()] == []
    assert [p for p in others if not p.exists()] == []
    assert (run.output_dir / "model.onnx").is_file()
