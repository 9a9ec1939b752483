"""The trainer, run for real: artifact, gate, exit codes, atomic publish, resume."""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from mlapp import contract, store
from mlapp.data import DataError, load_idx_dataset, read_idx

from . import gcsfuse_sim
from .helpers import (
    MODEL_NAME,
    SEED,
    TRAIN_ARGS,
    VERSION,
    HeldOut,
    TrainedModel,
    app_env,
    run_trainer,
)


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_trained_model_is_published_with_metadata(trained: TrainedModel, held_out: HeldOut) -> None:
    assert sorted(p.name for p in trained.directory.iterdir()) == ["metadata.json", "model.onnx"]
    meta = json.loads((trained.directory / "metadata.json").read_text(encoding="utf-8"))
    assert meta["model_name"] == MODEL_NAME
    assert meta["version"] == VERSION
    assert meta["dataset"] == {"name": "sklearn-digits", "train_examples": 1438,
                               "test_examples": 359}  # fmt: skip
    assert meta["parameters"]["epochs"] == 6
    assert meta["parameters"]["seed"] == SEED
    assert meta["parameters"]["min_accuracy"] == 0.9
    assert meta["num_classes"] == 10
    assert meta["input"]["shape"] == [-1, 1, 8, 8]
    assert meta["input"]["preprocessing"]["pixel_max"] == 16.0
    assert meta["output"] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}
    assert meta["created_at"].endswith("+00:00")
    assert meta["trainer_image"] is None  # MLAPP_TRAINER_IMAGE unset in tests
    # The accuracy it reports is the accuracy of the artifact it published.
    probs = session(trained.directory / "model.onnx").run(None, {"input": held_out.images})[0]
    onnx_accuracy = float((probs.argmax(1) == held_out.labels).mean())
    assert meta["accuracy"] >= 0.9
    assert abs(onnx_accuracy - meta["accuracy"]) <= 1 / len(held_out.labels)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # No checkpoint is left behind once the version is published.
    assert not store.checkpoint_path(trained.store, MODEL_NAME, VERSION).exists()


def test_training_logs_progress_and_held_out_accuracy(trained: TrainedModel) -> None:
    assert re.search(r"step 20 epoch 1 loss \d+\.\d+ running accuracy \d\.\d+", trained.log)
    assert re.search(r"Accuracy at step 270: 0\.9\d+", trained.log)  # 6 epochs x 45 steps
    assert "held-out accuracy" in trained.log


def test_onnx_export_matches_torch(tmp_path: Path, held_out: HeldOut) -> None:
    import torch

    from mlapp.fit import export_onnx
    from mlapp.model import DigitCNN, WithSoftmax

    torch.manual_seed(0)
    net = DigitCNN(8, 8, 10).eval()
    export_onnx(net, 8, 8, tmp_path / "m.onnx")
    x = held_out.images[:16]
    with torch.no_grad():
        expected = WithSoftmax(net)(torch.from_numpy(x)).numpy()
    got = session(tmp_path / "m.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_rerun_of_a_published_version_is_a_no_op(trained: TrainedModel) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in trained.directory.iterdir()}
    result = run_trainer(trained.store, VERSION, *TRAIN_ARGS, "--min-accuracy", "0.9")
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert "already in the store" in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in trained.directory.iterdir()} == before


def test_accuracy_under_the_gate_exits_2_and_publishes_nothing(tmp_path: Path) -> None:
    result = run_trainer(
        tmp_path, "gate", "--epochs", "1", "--batch-size", "512", "--learning-rate", "0.0001",
        "--min-accuracy", "1.0",
    )  # fmt: skip
    assert result.returncode == contract.EXIT_GATE, result.stdout + result.stderr
    assert "is under --min-accuracy 1.0000" in result.stdout
    assert not (tmp_path / MODEL_NAME / "gate").exists()


def test_unreadable_data_exits_1(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    result = run_trainer(
        tmp_path / "store", "x", *TRAIN_ARGS, "--min-accuracy", "0", "--data-dir",
        str(tmp_path / "data"),
    )  # fmt: skip
    assert result.returncode == contract.EXIT_ERROR, result.stdout + result.stderr
    assert "cannot load training data" in result.stdout
    assert "train-images-idx3-ubyte.gz" in result.stdout


def test_unwritable_store_exits_1(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_trainer(not_a_dir, "x", *TRAIN_ARGS, "--min-accuracy", "0")
    assert result.returncode == contract.EXIT_ERROR, result.stdout + result.stderr
    assert "cannot write to the model store" in result.stdout


MODEL_DIR_RULE = (
    "argument --model-dir: --model-dir must be a directory path that is not empty, not the filesystem root, "
    "without a NUL byte and without a '..' component"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be a positive integer"),
        (["--learning-rate", "-1"], "argument --learning-rate: must be a positive number"),
        (["--min-accuracy", "1.5"], "argument --min-accuracy: must be a number in [0, 1]"),
        (["--version", "../escape"], "argument --version: --version must be"),
        # Bug: --model-dir "" published into the current directory with exit 0.
        (["--model-dir", ""], f"{MODEL_DIR_RULE}; got ''"),
        (["--model-dir", "store/../elsewhere"], f"{MODEL_DIR_RULE}; got 'store/../elsewhere'"),
    ],
)
def test_bad_arguments_exit_1_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--model-dir": str(tmp_path), "--epochs": "1", "--batch-size": "8", "--learning-rate": "0.1",
            "--min-accuracy": "0", "--version": "v"}  # fmt: skip
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    cmd = [sys.executable, "-m", "mlapp.train", "--model-name", MODEL_NAME,
           *[x for kv in base.items() for x in kv]]  # fmt: skip
    # In tmp_path, so that a relative --model-dir that is not refused lands where the test looks.
    result = subprocess.run(cmd, env=app_env(), capture_output=True, text=True, check=False, cwd=tmp_path)
    assert result.returncode == contract.EXIT_ERROR, result.stdout + result.stderr
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model_dir", ["/", "//", "/.", "models\0"])
def test_model_dir_root_or_with_a_nul_byte_exits_1(capsys: pytest.CaptureFixture[str], model_dir: str) -> None:
    """Parsed in-process: no process can be given a NUL, and a trainer run on "/" would write there."""
    from mlapp import train

    parser = train.build_parser()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--model-dir", model_dir, "--model-name", MODEL_NAME, "--version", "v", "--epochs", "1",
                           "--batch-size", "8", "--learning-rate", "0.1", "--min-accuracy", "0"])  # fmt: skip
    assert exited.value.code == contract.EXIT_ERROR
    assert f"{MODEL_DIR_RULE}; got {model_dir!r}" in capsys.readouterr().err


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


def test_trains_on_idx_files_writing_only_to_the_store(tmp_path: Path) -> None:
    synthetic_idx(tmp_path / "data", 300, 60, gz=True)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    result = run_trainer(
        tmp_path / "store", "idx", "--epochs", "3", "--batch-size", "32", "--learning-rate",
        "0.01", "--min-accuracy", "0.9", "--data-dir", str(tmp_path / "data"),
        env={"MLAPP_TRAINER_IMAGE": "registry.example/mlapp-trainer@sha256:abc",
             "HOME": str(home)},
        cwd=cwd,
    )  # fmt: skip
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    # The pod's root filesystem is read-only: nothing may land in $HOME or the cwd.
    assert list(home.iterdir()) == []
    assert list(cwd.iterdir()) == []
    model_store = tmp_path / "store"
    written = sorted(str(p.relative_to(model_store)) for p in model_store.rglob("*"))
    assert written == ["digits", "digits/.checkpoints", "digits/idx", "digits/idx/metadata.json",
                       "digits/idx/model.onnx"]  # fmt: skip
    meta = json.loads((tmp_path / "store" / MODEL_NAME / "idx" / "metadata.json").read_text())
    assert meta["dataset"] == {"name": "idx:data", "train_examples": 300, "test_examples": 60}
    assert meta["input"]["shape"] == [-1, 1, 12, 12]
    assert meta["input"]["preprocessing"]["pixel_max"] == 255.0
    assert meta["num_classes"] == 4
    assert meta["accuracy"] >= 0.9
    assert meta["trainer_image"] == "registry.example/mlapp-trainer@sha256:abc"


# ---------------------------------------------------------------- publish


def test_publish_failing_midway_leaves_the_store_untouched(tmp_path: Path) -> None:
    def crash(path: Path) -> None:
        path.write_bytes(b"half a model")
        raise RuntimeError("disk full, say")

    with pytest.raises(RuntimeError, match="disk full"):
        store.publish(tmp_path, MODEL_NAME, "v1", crash, {})
    assert not (tmp_path / MODEL_NAME).exists()  # the model is written outside the store first


def test_trainer_crash_during_export_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlapp import fit, train

    def explode(net: object, height: int, width: int, path: Path) -> None:
        path.write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fit, "export_onnx", explode)
    code = train.main(
        ["--model-dir", str(tmp_path), "--model-name", MODEL_NAME, "--version", "crash",
         "--epochs", "1", "--batch-size", "64", "--learning-rate", "0.01", "--min-accuracy", "0"]
    )  # fmt: skip
    assert code == 1
    assert not store.is_complete(tmp_path / MODEL_NAME / "crash")
    assert [p.name for p in (tmp_path / MODEL_NAME).iterdir()] == [".checkpoints"]
    # The checkpoint survives, so the retry does not retrain from scratch.
    assert store.checkpoint_path(tmp_path, MODEL_NAME, "crash").is_file()


def test_metadata_records_the_model_checksum(trained: TrainedModel) -> None:
    meta = json.loads((trained.directory / "metadata.json").read_text(encoding="utf-8"))
    data = (trained.directory / "model.onnx").read_bytes()
    assert meta["format_version"] == store.FORMAT_VERSION
    assert meta["model"] == {"file": "model.onnx", "bytes": len(data),
                             "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip


@pytest.mark.parametrize(
    "damage",
    ["no metadata", "no model", "truncated model", "one byte changed", "metadata of format 1",
     "metadata not JSON"],
)  # fmt: skip
def test_a_half_written_or_damaged_version_is_not_published(tmp_path: Path, trained: TrainedModel, damage: str) -> None:
    """A reader never takes a version whose files do not match its commit record (metadata.json)."""
    directory = tmp_path / MODEL_NAME / VERSION
    directory.mkdir(parents=True)
    model = (trained.directory / "model.onnx").read_bytes()
    meta = json.loads((trained.directory / "metadata.json").read_text(encoding="utf-8"))
    if damage != "no model":
        changed = model[:-1] + bytes([model[-1] ^ 1])
        body = {"truncated model": model[: len(model) // 2], "one byte changed": changed}.get(damage, model)
        (directory / "model.onnx").write_bytes(body)
    if damage == "metadata of format 1":
        meta = {k: v for k, v in meta.items() if k != "model"} | {"format_version": 1}
    if damage == "metadata not JSON":
        (directory / "metadata.json").write_text('{"format_version": 2, ', encoding="utf-8")
    elif damage != "no metadata":
        (directory / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    assert not store.is_complete(directory), damage
    with pytest.raises(store.NotPublished) as refused:
        store.read_published(directory)
    # Only a model that contradicts a valid commit record is damaged; the rest is not there yet.
    assert isinstance(refused.value, store.Damaged) == (damage in {"truncated model", "one byte changed"}), damage


def test_a_damaged_published_version_is_trained_again(tmp_path: Path, trained: TrainedModel) -> None:
    """Bug: with model.onnx truncated, the trainer said "nothing to do" and the server waited forever."""
    directory = tmp_path / MODEL_NAME / VERSION
    directory.mkdir(parents=True)
    model = (trained.directory / "model.onnx").read_bytes()
    (directory / "model.onnx").write_bytes(model[:100])
    shutil.copyfile(trained.directory / "metadata.json", directory / "metadata.json")
    result = run_trainer(tmp_path, VERSION, *TRAIN_ARGS, "--min-accuracy", "0.9", "--seed", str(SEED))
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert "nothing to do" not in result.stdout
    assert store.is_complete(directory)


# ---------------------------------------------------------------- a store like gcsfuse


def test_publish_works_where_directories_cannot_be_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: publishing renamed a staging directory, which gcsfuse refuses on a flat bucket."""
    for name in ("rename", "replace", "link"):
        monkeypatch.setattr(os, name, getattr(os, name))  # restored after the test
    gcsfuse_sim.refuse_directory_renames()
    staging = tmp_path / "a-directory"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"x")
    with pytest.raises(OSError, match="too many objects to be renamed") as refused:
        staging.rename(tmp_path / "elsewhere")  # the simulation does refuse
    assert refused.value.errno == errno.EMFILE

    model = b"onnx bytes"

    def write(content: bytes) -> Callable[[Path], None]:
        def to(path: Path) -> None:
            path.write_bytes(content)

        return to

    assert store.publish(tmp_path, MODEL_NAME, "v1", write(model), {"accuracy": 0.97})
    meta, data = store.read_published(tmp_path / MODEL_NAME / "v1")
    assert (data, meta["accuracy"]) == (model, 0.97)
    assert sorted(p.name for p in (tmp_path / MODEL_NAME / "v1").iterdir()) == ["metadata.json", "model.onnx"]
    # A second publish of a complete version changes nothing.
    assert not store.publish(tmp_path, MODEL_NAME, "v1", write(b"other"), {})
    assert store.read_published(tmp_path / MODEL_NAME / "v1")[1] == model


# ---------------------------------------------------------------- resume

# The session model's arguments: an interrupted and resumed run must end with
# exactly its weights. --checkpoint-every changes when state is saved, not what
# is learned.
RESUME_ARGS = [*TRAIN_ARGS, "--min-accuracy", "0.9", "--seed", str(SEED),
               "--checkpoint-every", "10"]  # fmt: skip


def kill_after_first_checkpoint(store_dir: Path, version: str, sig: signal.Signals) -> str:
    cmd = [sys.executable, "-m", "mlapp.train", "--model-dir", str(store_dir),
           "--model-name", MODEL_NAME, "--version", version, *RESUME_ARGS]  # fmt: skip
    proc = subprocess.Popen(cmd, env=app_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def test_resumes_from_checkpoint_after_a_hard_kill(tmp_path: Path, held_out: HeldOut, trained: TrainedModel) -> None:
    kill_after_first_checkpoint(tmp_path, "r", signal.SIGKILL)
    assert store.checkpoint_path(tmp_path, MODEL_NAME, "r").is_file()
    assert not (tmp_path / MODEL_NAME / "r").exists()

    resumed = run_trainer(tmp_path, "r", *RESUME_ARGS)
    assert resumed.returncode == contract.EXIT_OK, resumed.stdout + resumed.stderr
    match = re.search(r"resuming from checkpoint \S+ at step (\d+)", resumed.stdout)
    assert match, resumed.stdout
    resumed_at = int(match.group(1))
    assert resumed_at >= 10
    # It carried on from there: no step at or before the checkpoint is trained again.
    steps = [int(n) for n in re.findall(r"step (\d+) epoch", resumed.stdout)]
    assert steps
    assert min(steps) > resumed_at

    # Resuming is exact: same weights as the session's run, never interrupted.
    meta_r = json.loads((tmp_path / MODEL_NAME / "r" / "metadata.json").read_text())
    meta_s = json.loads((trained.directory / "metadata.json").read_text())
    assert meta_r["parameters"]["steps"] == meta_s["parameters"]["steps"] == 6 * 45
    assert meta_r["accuracy"] == meta_s["accuracy"]
    x = held_out.images[:32]
    out_r = session(tmp_path / MODEL_NAME / "r" / "model.onnx").run(None, {"input": x})[0]
    out_s = session(trained.directory / "model.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(out_r, out_s, atol=1e-6)


def test_sigterm_saves_a_checkpoint_and_exits_1(tmp_path: Path) -> None:
    output = kill_after_first_checkpoint(tmp_path, "t", signal.SIGTERM)
    assert "stopped by SIGTERM at step" in output
    assert store.checkpoint_path(tmp_path, MODEL_NAME, "t").is_file()
    assert not (tmp_path / MODEL_NAME / "t").exists()


# One quick epoch (23 steps of 64), seed 0: for the checkpoint tests, where the model's quality does not matter.
QUICK_ARGS = ["--epochs", "1", "--batch-size", "64", "--learning-rate", "0.01", "--min-accuracy", "0"]


def test_damaged_or_foreign_checkpoint_is_ignored(tmp_path: Path) -> None:
    ckpt = store.checkpoint_path(tmp_path, MODEL_NAME, "d")
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x80\x04 torn write")
    result = run_trainer(tmp_path, "d", *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert "ignoring unreadable checkpoint" in result.stdout
    assert "resuming" not in result.stdout
    assert (tmp_path / MODEL_NAME / "d" / "model.onnx").is_file()


@pytest.fixture(scope="module")
def quick_from_scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The version a QUICK_ARGS run publishes with no checkpoint: what an ignored checkpoint must end in."""
    model_store = tmp_path_factory.mktemp("scratch")
    result = run_trainer(model_store, "s", *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    return model_store / MODEL_NAME / "s"


def quick_checkpoint(defect: str) -> dict[str, Any]:
    """What a QUICK_ARGS run saves after step 5, but with weights of another seed, and with ``defect``."""
    import torch

    from mlapp.fit import Params
    from mlapp.model import DigitCNN

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
    }
    if defect == "no optimizer":
        del state["optimizer"]
    elif defect == "step a string":
        state["step"] = "5"
    elif defect == "step not at its batch":
        state["step"] = 6
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
        ("step not at its batch", "its position (epoch 0, batch 5, step 6) is not one this run reaches"),
        ("model of another architecture", "its state does not fit this model (Error(s) in loading state_dict"),
        ("model of 3 classes", "size mismatch for head.4.weight"),
        ("optimizer of 3 classes", "optimizer state 'exp_avg' has shape (3, 64), its parameter (10, 64)"),
        ("rng of another generator", "its state does not fit this model"),
    ],
)
def test_a_checkpoint_that_loads_but_cannot_resume_is_ignored(
    tmp_path: Path, quick_from_scratch: Path, held_out: HeldOut, defect: str, reason: str
) -> None:
    """Bug: a checkpoint with this run's params but missing or misfit state failed every retry of the Job."""
    import torch

    ckpt = store.checkpoint_path(tmp_path, MODEL_NAME, "c")
    ckpt.parent.mkdir(parents=True)
    torch.save(quick_checkpoint(defect), ckpt)
    result = run_trainer(tmp_path, "c", *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    warnings = [
        line for line in result.stdout.splitlines() if f"WARNING mlapp.train ignoring checkpoint {ckpt}" in line
    ]
    assert len(warnings) == 1, result.stdout
    assert reason in warnings[0]
    assert warnings[0].endswith("training from scratch")
    assert "resuming" not in result.stdout
    directory = tmp_path / MODEL_NAME / "c"
    assert store.is_complete(directory)
    # From scratch means from scratch: nothing of a half-loaded checkpoint is kept.
    x = held_out.images[:32]
    got = session(directory / "model.onnx").run(None, {"input": x})[0]
    want = session(quick_from_scratch / "model.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_the_checkpoint_of_the_unusable_checkpoint_tests_resumes_when_whole(tmp_path: Path) -> None:
    """quick_checkpoint without a defect is one a run resumes from: the tests above fail on their defect only."""
    import torch

    ckpt = store.checkpoint_path(tmp_path, MODEL_NAME, "c")
    ckpt.parent.mkdir(parents=True)
    torch.save(quick_checkpoint("none"), ckpt)
    result = run_trainer(tmp_path, "c", *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert f"resuming from checkpoint {ckpt} at step 5" in result.stdout
    assert "WARNING" not in result.stdout


# ---------------------------------------------------------------- staging leftovers


def killed_run_leftovers(model_store: Path, version: str) -> tuple[list[Path], list[Path]]:
    """What runs of ``version`` killed between writing and renaming leave, and files beside them that are not that."""
    final = model_store / MODEL_NAME / version
    checkpoints = model_store / MODEL_NAME / ".checkpoints"
    final.mkdir(parents=True)
    checkpoints.mkdir(parents=True)
    leftovers = [
        final / ".model.onnx.0f1e2d3c4b5a6978.tmp",
        final / ".metadata.json.00112233aabbccdd.tmp",
        checkpoints / f".{version}.pt.9a8b7c6d5e4f3021.tmp",
        checkpoints / ".probe-1",  # the write probe of trainers before staging files
    ]
    others = [
        final / "notes.txt",
        final / ".model.onnx.tmp",
        final / "model.onnx.0f1e2d3c4b5a6978.tmp",
        final / ".model.onnx.0f1e2d3c4b5a6978.tmp.keep",
        final / ".other.onnx.0f1e2d3c4b5a6978.tmp",
        checkpoints / f".{version}.pt.x.pt.0f1e2d3c4b5a6978.tmp",  # the checkpoint of version "<version>.pt.x"
        checkpoints / ".v2.pt.0f1e2d3c4b5a6978.tmp",  # a trainer of v2 may be writing it right now
        checkpoints / ".probe-x",
        checkpoints / "v2.pt",
    ]
    for path in leftovers + others:
        path.write_bytes(b"half")
    return leftovers, others


def test_remove_staging_removes_only_this_versions_leftovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    leftovers, others = killed_run_leftovers(tmp_path, "v1")
    (tmp_path / MODEL_NAME / "v1" / ".model.onnx.aaaaaaaaaaaaaaaa.tmp").mkdir()  # named so, but a directory
    assert store.remove_staging(tmp_path, MODEL_NAME, "v1") == len(leftovers)
    assert [p for p in leftovers if p.exists()] == []
    assert [p for p in others if not p.exists()] == []
    assert (tmp_path / MODEL_NAME / "v1" / ".model.onnx.aaaaaaaaaaaaaaaa.tmp").is_dir()
    assert store.remove_staging(tmp_path, MODEL_NAME, "v1") == 0
    assert store.remove_staging(tmp_path / "empty", MODEL_NAME, "v1") == 0

    # The names write_file_atomic stages under are the ones remove_staging recognises.
    staged: list[str] = []

    def killed(src: str, dst: str) -> None:
        staged.append(Path(src).name)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    for path in (tmp_path / MODEL_NAME / "v1" / "model.onnx", store.checkpoint_path(tmp_path, MODEL_NAME, "v1")):
        with pytest.raises(KeyboardInterrupt):
            store.write_file_atomic(path, b"data")
    assert [store.staging_target(name) for name in staged] == ["model.onnx", "v1.pt"], staged


def test_staging_files_of_a_killed_run_are_removed_before_training(tmp_path: Path) -> None:
    """Bug: staging files of a publish or checkpoint killed before its rename stayed in the store forever."""
    leftovers, others = killed_run_leftovers(tmp_path, "k")
    result = run_trainer(tmp_path, "k", *QUICK_ARGS)
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert f"removed {len(leftovers)} staging file(s) that an interrupted run of version k left" in result.stdout
    assert [p for p in leftovers if p.exists()] == []
    assert [p for p in others if not p.exists()] == []
    assert store.is_complete(tmp_path / MODEL_NAME / "k")
